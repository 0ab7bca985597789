-- Autovacuum for the tasks table (measured in the README, Performance: "A big, old table, and a
-- long run", under "Autovacuum"). A queue table turns its rows over: each task is inserted, rewritten at its
-- claim and at its end, and deleted by retention, and each step leaves a dead row version and
-- dead index entries until vacuum removes them. The claim pays for them first: it walks
-- tasks_claimable from the front, where the entries of the tasks claimed since the last vacuum
-- lie (270,000 of them made a claim take 11 ms instead of 0.4).
--
-- PostgreSQL's defaults vacuum a table once a fifth of it is dead: 1,000,000 dead rows in a
-- table of 5,000,000 finished tasks. These vacuum the tasks table after a fixed number of
-- changes whatever its size, and without the cost-based pauses, so that each vacuum is short.
-- How often the server looks at all (`autovacuum_naptime`, one minute by default) is the
-- server's setting; the README gives the one we recommend.
alter table tasks set (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 20000,
    autovacuum_vacuum_insert_scale_factor = 0,
    autovacuum_vacuum_insert_threshold = 20000,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 0
);
