-- The W3C trace context of the request that created a task (`traceparent`, naming DTP's span
-- for that request), so that the attempt's span continues the trace and the `http` handler
-- sends it on. Null for tasks created before this column, by a schedule, or by SQL.
-- A nullable column without a default: adding it rewrites nothing, however big the table. It
-- still needs the table's exclusive lock for a moment; every migration waits for a lock at most
-- half a second and is tried again later (`apikit::db::apply_migrations`), so that claims and
-- renewals never queue behind it for longer.
alter table tasks add column traceparent text;
