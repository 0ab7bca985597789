-- no-transaction
-- The claim walks each queue's due tasks in order, one queue at a time, and finds the queues
-- with PENDING tasks by skipping through the first column: the queue leads the claim index.
-- Built beside the old one, which 0017 drops and whose name 0018 gives it.
create index concurrently if not exists tasks_claimable_by_queue
    on tasks (queue, priority desc, run_at, id) where status = 'PENDING';
