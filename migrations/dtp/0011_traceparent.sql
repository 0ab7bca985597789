-- The W3C trace context of the request that created a task (`traceparent`, naming DTP's span
-- for that request), so that the attempt's span continues the trace and the `http` handler
-- sends it on. Null for tasks created before this column, by a schedule, or by SQL.
-- A nullable column without a default: adding it rewrites nothing, however big the table. It
-- still needs the table's exclusive lock for a moment; waiting for it behind a long transaction
-- would queue every claim and renewal behind this statement, so give up after a few seconds
-- instead (the process then fails to start, saying so, and its next start tries again).
set local lock_timeout = '5s';
alter table tasks add column traceparent text;
