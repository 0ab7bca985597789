-- Every task belongs to a named queue (SPEC §6): "default" unless the create request names one.
-- Adding a column with a constant default rewrites nothing (PostgreSQL 11+); the check validates
-- existing rows, all "default".
alter table tasks add column queue text not null default 'default'
    check (queue ~ '^[A-Za-z0-9_.:-]{1,100}$');

-- GET /tasks?queue=… lists a queue's tasks newest first.
create index tasks_queue_id on tasks (queue, id desc);
