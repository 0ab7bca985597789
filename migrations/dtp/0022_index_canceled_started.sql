-- no-transaction
-- A task canceled while it ran keeps its place under its queue's concurrency limit for a lease
-- after the cancel (its handler may run until its worker hears of it): the limited claim counts
-- these rows. Only canceled tasks that had started are in it.
create index concurrently if not exists tasks_canceled_started on tasks (queue, completed_at)
    where status = 'CANCELED' and attempt_count > 0;
