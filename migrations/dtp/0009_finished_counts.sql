-- How many finished tasks each queue holds per state (SPEC §6 `GET /queues` counts, §8 depth
-- gauges). Counting them from `tasks` reads every finished row: 600 ms at 5,000,000 rows. The
-- statement that moves a task into or out of SUCCEEDED, FAILED or CANCELED (completion,
-- failure, rescue, cancel, retry, delete, pruning) adds its change here, in the same
-- transaction, so these counts are exact at every commit. PENDING and RUNNING are counted live
-- from their partial indexes, which hold only those tasks; the claim, the hottest statement,
-- writes nothing here.
--
-- A statement adds to the row of its connection's shard (`pg_backend_pid() % 32`), so that
-- connections completing tasks of one queue rarely wait on one row's lock (two share a row only
-- when their pids agree modulo 32); the count is the sum over the shards, and a shard may go
-- negative. The maintenance leader folds the shards into shard 0 and deletes rows that count
-- nothing (`queue::fold_counts`), so the table holds about one row per queue and state, plus
-- the shards written since the last round. The low fillfactor keeps each update on its page
-- (HOT), so it does not bloat between vacuums.
create table queue_counts (
    queue  text     not null,
    status text     not null check (status in ('SUCCEEDED', 'FAILED', 'CANCELED')),
    shard  smallint not null,
    tasks  bigint   not null,
    primary key (queue, status, shard)
) with (fillfactor = 50);

-- The first count reads every finished task (about 1 s per 5,000,000): no statement timeout a
-- pool's connections carry may cut it short.
set local statement_timeout = 0;

insert into queue_counts (queue, status, shard, tasks)
select queue, status, 0, count(*) from tasks
where status in ('SUCCEEDED', 'FAILED', 'CANCELED')
group by queue, status;
