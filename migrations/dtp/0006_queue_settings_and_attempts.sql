-- Operator control of queues (SPEC §6): a queue's settings live here, so that every process
-- reads the same ones and they survive restarts. A queue without a row has the defaults (not
-- paused, no limits): a queue exists as soon as a task names it, and creating a task never
-- writes here.
create table queues (
    name                  text        primary key check (length(name) between 1 and 100),
    paused                boolean     not null default false,
    -- at most this many of the queue's tasks RUNNING at once, across all processes
    concurrency_limit     integer     check (concurrency_limit between 1 and 1000000),
    -- at most this many starts per second, across all processes (a token bucket: see below)
    rate_limit_per_second double precision
        check (rate_limit_per_second > 0 and rate_limit_per_second <= 1000000),
    -- The token bucket of the rate limit: tokens held at rate_refilled_at. Only a claim that
    -- holds the queue's claim lock reads or writes them (`queue::claim`).
    rate_tokens           double precision not null default 0,
    rate_refilled_at      timestamptz not null default now(),
    updated_at            timestamptz not null default now()
);

-- Every claim asks whether any queue is restricted; the answer is this (small) index.
create index queues_restricted on queues (name)
    where paused or concurrency_limit is not null or rate_limit_per_second is not null;

-- Attempt history. An attempt that succeeded is not written here: it is the task's last
-- attempt and the task row already holds all of it (worker_id, attempt_started_at,
-- completed_at), and success is the common case, so writing it twice would cost every task a
-- second insert. Every other ending (RETRY, FAILED, TIMEOUT, LOST, CANCELED, RELEASED) is a row,
-- written by the statement that records it.
create table task_attempts (
    task_id     bigint      not null references tasks (id) on delete cascade,
    -- the order attempts ended in (attempt numbers repeat after a hand-back, which is uncounted)
    seq         bigint      generated always as identity,
    attempt     integer     not null,
    worker_id   text,
    started_at  timestamptz,
    finished_at timestamptz not null,
    outcome     text        not null
        check (outcome in ('FAILED', 'RETRY', 'LOST', 'CANCELED', 'TIMEOUT', 'RELEASED')),
    error       text,
    primary key (task_id, seq)
);

-- When the running (or last) attempt started; processing_started_at keeps the first start.
alter table tasks add column attempt_started_at timestamptz;

-- The claim and running-lease indexes gain the queue as their first column, and a new index
-- counts canceled attempts under a queue's limit: all built concurrently by 0016-0022, so that
-- a live fleet's claims go on while they are built. (A fleet that applied the first version of
-- this migration, which rebuilt them here, is taken as having applied this one.)
