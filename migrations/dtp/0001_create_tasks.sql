-- The queue table: one row per task, the source of truth for execution state.
-- Append-only migrations: never edit this file once released; add a new one.

create table tasks (
    id                    bigint generated always as identity primary key,
    type                  text        not null check (length(type) between 1 and 100),
    payload               jsonb       not null default 'null',
    status                text        not null default 'PENDING'
        check (status in ('PENDING', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELED')),
    priority              integer     not null default 0 check (priority between -1000 and 1000),
    -- attempts started; also the fencing token of the running attempt
    attempt_count         integer     not null default 0 check (attempt_count >= 0),
    max_attempts          integer     not null check (max_attempts between 1 and 100),
    timeout_ms            bigint      check (timeout_ms > 0),
    -- when the task first became due (creation time or runAt); never changes
    scheduled_for         timestamptz not null,
    -- when the task may next be claimed: scheduled_for, then each retry's due time
    run_at                timestamptz not null,
    processing_started_at timestamptz,
    completed_at          timestamptz,
    next_attempt_at       timestamptz,
    last_error            text,
    result                jsonb,
    worker_id             text,
    lease_expires_at      timestamptz,
    idempotency_key       text        unique check (length(idempotency_key) between 1 and 255),
    -- the request that first used idempotency_key, to tell a repeat from a different request
    idempotency_request   jsonb,
    created_at            timestamptz not null default now(),
    updated_at            timestamptz not null default now(),

    -- a RUNNING task always has a lease and a worker; no other state has a lease
    constraint tasks_lease_iff_running check ((status = 'RUNNING') = (lease_expires_at is not null)),
    constraint tasks_running_has_worker check (status <> 'RUNNING' or worker_id is not null),
    -- terminal states carry completed_at, the others never do
    constraint tasks_completed_iff_terminal check (
        (status in ('SUCCEEDED', 'FAILED', 'CANCELED')) = (completed_at is not null)
    ),
    constraint tasks_attempts_within_max check (attempt_count <= max_attempts)
);

-- The claim query walks this index in order and stops after `limit` rows:
-- only PENDING rows are in it, so finished tasks never slow the claim down.
create index tasks_claimable on tasks (priority desc, run_at, id) where status = 'PENDING';

-- The rescuer looks for RUNNING tasks whose lease ran out.
create index tasks_running_lease on tasks (lease_expires_at) where status = 'RUNNING';

-- GET /tasks filters by status and type, newest first.
create index tasks_status_id on tasks (status, id desc);
create index tasks_type_id on tasks (type, id desc);
