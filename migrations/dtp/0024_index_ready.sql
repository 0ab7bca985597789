-- no-transaction
-- The claim index: the ready tasks of each queue in the order they are claimed (highest
-- priority first, then the longest due). The priority is negated so that one row comparison,
-- `(-priority, run_at, id) >= (...)`, starts a scan at a worker's cursor: the claim then skips
-- the entries of tasks claimed before, which stay in the index as dead entries for as long as
-- any snapshot can see them (`queue::claim`).
--
-- tasks_claimable stays for this release: processes of the release before claim through it
-- while a fleet is upgraded.
create index concurrently if not exists tasks_ready
    on tasks (queue, (-priority), run_at, id) where status = 'PENDING' and not waiting;
