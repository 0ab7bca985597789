-- no-transaction
drop index concurrently if exists tasks_running_lease;
