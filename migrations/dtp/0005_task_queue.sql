-- Every task belongs to a named queue: "default" unless the create request names one.
-- Adding a column with a constant default rewrites nothing (PostgreSQL 11+). The services check
-- the name's characters (`common::limits::is_queue_name`); the schema checks only its length:
-- a check runs on every update of the row, and a regular expression there cost the claim and
-- completion statements a measurable share of their time.
--
-- Written for a live fleet over a big table: the check is added NOT VALID (checking every row
-- here would hold the table's exclusive lock for the whole scan) and validated by 0014, which
-- takes a lock that lets claims and completions through. The index `GET /tasks?queue=` uses is
-- built concurrently by 0015. (A fleet that applied the first version of this migration, which
-- did both here, is taken as having applied this one: `dtp::db::MIGRATIONS`.)
alter table tasks add column queue text not null default 'default';
alter table tasks add constraint tasks_queue_check check (length(queue) between 1 and 100)
    not valid;

-- A task canceled while it ran, then retried by an operator, is not due before this: its
-- canceled attempt may run until its worker hears of the cancel or its lease runs out, and a
-- second claim before then would run the task twice at once. run-now does not bring a task
-- forward past it. Null for every other task.
alter table tasks add column rerun_not_before timestamptz;
