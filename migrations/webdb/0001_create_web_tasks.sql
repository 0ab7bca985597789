-- TaskPilot's web tasks: the user-facing record and its link to a DTP task.
-- Append-only migrations: never edit this file once released; add a new one.

create table web_tasks (
    id                  bigint generated always as identity primary key,
    type                text        not null check (length(type) between 1 and 100),
    payload             jsonb       not null default 'null',
    -- control-plane intent, never execution state: PENDING until bound, SUBMITTED after
    status              text        not null default 'PENDING'
        check (status in ('PENDING', 'SUBMITTED')),
    -- the DTP task this web task is bound to; one DTP task never serves two web tasks
    scheduler_task_id   bigint      unique,
    idempotency_key     text        unique check (length(idempotency_key) between 1 and 255),
    -- the request that first used idempotency_key, to tell a repeat from a different request
    idempotency_request jsonb,
    created_at          timestamptz not null default now(),
    updated_at          timestamptz not null default now(),

    constraint web_tasks_submitted_iff_bound
        check ((status = 'SUBMITTED') = (scheduler_task_id is not null))
);
