-- The workers seen lately, for operators (GET /workers, the dashboard): each worker's heartbeat
-- writes its row every heartbeat interval, busy slots included, and a worker that stops says
-- so. Rows of workers not seen for a day are deleted by the maintenance leader. A small table
-- of one row per worker process: nothing here is on the path of a task.
create table workers (
    id            text        primary key,
    host          text        not null,
    started_at    timestamptz not null,
    last_seen_at  timestamptz not null,
    stopped_at    timestamptz,
    concurrency   integer     not null,
    busy          integer     not null,
    types         text[]      not null
);

create index workers_last_seen on workers (last_seen_at);
