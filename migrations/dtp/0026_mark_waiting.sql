-- no-transaction
-- Marks the tasks that are PENDING and not due yet as waiting, 10,000 to a transaction, so that
-- no transaction holds many rows or a snapshot for long. Rows another transaction holds are
-- skipped: such a task stays ready and is not claimed before it is due (the claim checks), and
-- a claimer finds it when it next looks at every queue.
do $$
declare
    marked bigint;
begin
    loop
        update tasks set waiting = true
        where id in (select id from tasks
                     where status = 'PENDING' and not waiting and run_at > now()
                     limit 10000
                     for update skip locked);
        get diagnostics marked = row_count;
        commit;
        exit when marked = 0;
    end loop;
end
$$;
