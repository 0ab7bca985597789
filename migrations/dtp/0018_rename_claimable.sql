-- Renaming an index takes a SHARE UPDATE EXCLUSIVE lock: claims go on.
alter index if exists tasks_claimable_by_queue rename to tasks_claimable;
