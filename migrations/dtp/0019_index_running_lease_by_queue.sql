-- no-transaction
-- A claim from a queue with a concurrency limit counts the queue's RUNNING tasks, every time:
-- led by the queue, this index answers that by an index-only scan of the queue's entries, which
-- also marks the entries of finished attempts dead as it passes them (a bitmap scan of the
-- old index visited every finished attempt's heap page until vacuum). The rescuer reads all of
-- it, ordered by lease: a few rows per process. Built beside the old one (0020, 0021).
create index concurrently if not exists tasks_running_lease_by_queue
    on tasks (queue, lease_expires_at) where status = 'RUNNING';
