-- A PENDING task is either ready (due when it was made PENDING, or promoted since) or waiting
-- (delayed, or a retry waiting out its backoff). Waiting tasks stay out of the claim index, so
-- a claim never walks tasks that are not due, and a queue whose only tasks wait is not a queue
-- with work. Workers promote waiting tasks in batches once due (`queue::promote_due`).
--
-- A constant default: PostgreSQL adds the column without rewriting the table. Tasks already
-- waiting are marked by 0026, once the indexes that serve them exist.
alter table tasks add column waiting boolean not null default false;
