-- Schedules (SPEC §7): a cron pattern in a time zone that enqueues a task at each tick. The
-- maintenance leader (one process at a time) enqueues the due ones; each tick's task carries the
-- idempotency key `schedule:{name}:{tick}`, so a tick is one task whatever happens.
create table schedules (
    name        text        primary key check (length(name) between 1 and 100),
    cron        text        not null check (length(cron) between 1 and 200),
    timezone    text        not null check (length(timezone) between 1 and 100),
    -- the create request of each tick's task, as validated (maxAttempts resolved)
    task        jsonb       not null,
    paused      boolean     not null default false,
    -- the next tick; a tick in the past (every process was down) is enqueued once, the latest
    next_run_at timestamptz,
    last_run_at timestamptz,
    created_at  timestamptz not null default now(),
    updated_at  timestamptz not null default now()
);

-- The leader's tick reads the due schedules.
create index schedules_due on schedules (next_run_at) where not paused;

-- When the maintenance leader last ran a round. A new leader that finds it recent knows a
-- leader was up until a moment ago (the lead changed hands) and enqueues every tick missed in
-- between; one that finds it old knows every process was down, and enqueues only the latest.
create table maintenance_rounds (
    only_row   boolean     primary key default true check (only_row),
    round_at   timestamptz not null
);
