-- GET /tasks?status=FAILED (or CANCELED) must not walk the primary key over every finished task
-- to find the few it wants: on millions of rows that runs into the statement timeout. These
-- partial indexes hold only the rows in those states, so they cost nothing on the hot path of a
-- task that succeeds (its row versions never satisfy the predicate) and little on the rest.
-- SUCCEEDED is most rows: the primary key walked backwards finds a page of them at once; PENDING
-- and RUNNING are served by tasks_claimable and tasks_running_lease.
create index tasks_failed on tasks (id) where status = 'FAILED';
create index tasks_canceled on tasks (id) where status = 'CANCELED';
