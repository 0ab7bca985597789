-- What the workers did, per minute and queue, for the dashboard's charts of the last hour:
-- attempts that succeeded, failed (or timed out) and were retried, and the queue wait and run
-- time of attempts as counts per histogram bucket (the bounds of the metrics' histograms, 0.5 ms
-- to 60 s, then one for longer), so that the minutes of every process add up and percentiles
-- are read from the sum. Each process adds what it counted every few seconds to the minute of
-- the database's clock; the maintenance leader deletes minutes older than a day. Counting this
-- from `tasks` instead would read every task of the hour (40 million at full speed).
create table minute_stats (
    minute        timestamptz not null,
    queue         text        not null,
    succeeded     bigint      not null default 0,
    failed        bigint      not null default 0,
    retried       bigint      not null default 0,
    wait_buckets  bigint[]    not null,
    run_buckets   bigint[]    not null,
    primary key (minute, queue)
);
