-- Changes to the finished counts, appended by every statement that moves tasks into or out of
-- a finished state and folded into queue_counts once a second by maintenance. Appended, never
-- updated: a row that every completion updates keeps each version it ever had for as long as
-- a snapshot can see them (a long transaction, a replica's hot_standby_feedback), and each
-- update walked them all. Reads of the counts add the rows not yet folded.
create table queue_count_changes (
    queue  text   not null,
    status text   not null check (status in ('SUCCEEDED', 'FAILED', 'CANCELED')),
    tasks  bigint not null
);
