-- Retention (SPEC §7): finished tasks are deleted some time after they finished, oldest first,
-- per state. This index is what the pruner walks: only finished tasks are in it, ordered by
-- when they finished, so each batch reads the rows it deletes and no other. Every transition to
-- a terminal state adds an entry (measured in the closing note of the retention change).
create index tasks_finished on tasks (status, completed_at) where completed_at is not null;
