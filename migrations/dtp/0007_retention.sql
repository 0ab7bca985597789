-- no-transaction
-- Retention: finished tasks are deleted some time after they finished, oldest first, per
-- state. This index is what the pruner walks: only finished tasks are in it, ordered by when
-- they finished, so each batch reads the rows it deletes and no other. Built concurrently: a
-- live fleet's claims and completions go on meanwhile. (A fleet that applied the first version
-- of this migration, which built it in a transaction, is taken as having applied this one.)
create index concurrently if not exists tasks_finished on tasks (status, completed_at)
    where completed_at is not null;
