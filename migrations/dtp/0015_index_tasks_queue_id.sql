-- no-transaction
-- GET /tasks?queue=… lists a queue's tasks newest first. Not the default queue's: most tasks are
-- in it, so its page is found by walking the primary key, and leaving it out keeps this index
-- from being written on every claim and completion of a default-queue task (`queue::list`
-- writes the name as a literal, so that a cached plan can use this partial index).
create index concurrently if not exists tasks_queue_id on tasks (queue, id desc)
    where queue <> 'default';
