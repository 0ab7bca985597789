-- The queue name's length check of 0005, checked against every row now. Validating takes a
-- SHARE UPDATE EXCLUSIVE lock: claims, completions and creates go on while it scans.
alter table tasks validate constraint tasks_queue_check;
