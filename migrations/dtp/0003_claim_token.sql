-- Claims are committed without waiting for their WAL record to reach the disk (the claim loop's
-- connection runs with synchronous_commit = off), so a database crash can lose the claims of its
-- last moments: those tasks are PENDING again with attempt_count as it was, and their next claim
-- reuses the attempt number of the lost one. A random token drawn by each claim tells the two
-- apart: with attempt_count, it fences every write about an attempt. Outcomes, cancels and
-- enqueues are still committed durably, and each flushes the WAL of every claim before it.
--
-- Kept after the attempt ends, like attempt_count; it only means something while RUNNING.
alter table tasks add column claim_token bigint;
