-- The DTP idempotency key of each web task, drawn at random when the web task is created.
--
-- It was `taskpilot-web-task-{id}`, derived from the id alone: two TaskPilots sharing one DTP
-- (each with its own webdb), or one whose webdb was recreated or restored from a backup, reuse
-- ids, and the second bind of an id adopted the first one's DTP task. A random key is unique to
-- the web task and still stored before the bind, so a bind retried after a crash finds the DTP
-- task its first attempt made.
--
-- Web tasks that exist already keep the old key: an interrupted bind of theirs may have made a
-- DTP task with it, which the next bind must still adopt.
alter table web_tasks add column bind_key text;
update web_tasks set bind_key = 'taskpilot-web-task-' || id;
alter table web_tasks
    alter column bind_key set default 'taskpilot-' || gen_random_uuid(),
    alter column bind_key set not null;
