alter index if exists tasks_running_lease_by_queue rename to tasks_running_lease;
