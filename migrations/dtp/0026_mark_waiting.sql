-- no-transaction
-- Marks the tasks that are PENDING and not due yet as waiting, 10,000 to a transaction, so that
-- no transaction holds many rows or a snapshot for long. Only tasks that existed when it began:
-- processes of the release before go on creating tasks for later without marking them, and
-- those would keep it from ending. Rows another transaction holds are skipped. Such a task
-- stays ready: no claim takes it before it is due (the claim checks), and claimers find it when
-- they next look at every queue.
do $$
declare
    last_id bigint;
    marked bigint;
begin
    select max(id) into last_id from tasks;
    loop
        update tasks set waiting = true
        where id in (select id from tasks
                     where status = 'PENDING' and not waiting and run_at > now()
                       and id <= last_id
                     limit 10000
                     for update skip locked);
        get diagnostics marked = row_count;
        commit;
        exit when marked = 0;
    end loop;
end
$$;
