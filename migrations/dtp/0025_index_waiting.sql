-- no-transaction
-- The waiting tasks by due time, for their promotion.
create index concurrently if not exists tasks_waiting
    on tasks (run_at, id) where status = 'PENDING' and waiting;
