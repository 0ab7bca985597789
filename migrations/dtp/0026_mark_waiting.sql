-- Marks the tasks that are PENDING and not due yet as waiting. The tasks only wait: claims
-- skip rows this locks. A row another transaction holds makes this wait at most the lock
-- timeout migrations run under, and then try again.
update tasks set waiting = true where status = 'PENDING' and run_at > now();
