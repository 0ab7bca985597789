-- Every task belongs to a named queue (SPEC §6): "default" unless the create request names one.
-- Adding a column with a constant default rewrites nothing (PostgreSQL 11+). The services check
-- the name's characters (`common::limits::is_queue_name`); the schema checks only its length:
-- a check runs on every update of the row, and a regular expression there cost the claim and
-- completion statements a measurable share of their time.
alter table tasks add column queue text not null default 'default'
    check (length(queue) between 1 and 100);

-- GET /tasks?queue=… lists a queue's tasks newest first. Not the default queue's: most tasks are
-- in it, so its page is found by walking the primary key, and leaving it out keeps this index
-- from being written on every claim and completion of a default-queue task (`queue::list`
-- writes the name as a literal, so that a cached plan can use this partial index).
create index tasks_queue_id on tasks (queue, id desc) where queue <> 'default';

-- A task canceled while it ran, then retried by an operator, is not due before this: its
-- canceled attempt may run until its worker hears of the cancel or its lease runs out, and a
-- second claim before then would run the task twice at once. run-now does not bring a task
-- forward past it. Null for every other task.
alter table tasks add column rerun_not_before timestamptz;
