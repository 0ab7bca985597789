//! Per-minute figures of what the workers did (`minute_stats`): each process adds what it
//! counted to the database's current minute; operators read the last hour.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

use super::millis;

/// What one process counted for one queue since it last added to the table; also a minute of
/// the table as read ([`MinuteRow`]).
#[derive(Debug, Clone, PartialEq, Eq, Default, sqlx::FromRow)]
pub struct QueueMinute {
    /// Attempts that succeeded.
    pub succeeded: i64,
    /// Attempts that failed or timed out with no retry left.
    pub failed: i64,
    /// Attempts retried after failing or timing out.
    pub retried: i64,
    /// Attempts started, per queue-wait bucket.
    pub wait_buckets: Vec<i64>,
    /// Handlers returned, per run-time bucket.
    pub run_buckets: Vec<i64>,
}

/// Adds `counted` (by queue) to the current minute of the database's clock.
pub async fn add_minute_stats(
    db: impl PgExecutor<'_>,
    counted: &[(String, QueueMinute)],
) -> Result<(), sqlx::Error> {
    if counted.is_empty() {
        return Ok(());
    }
    let queues: Vec<&str> = counted.iter().map(|(q, _)| q.as_str()).collect();
    let succeeded: Vec<i64> = counted.iter().map(|(_, m)| m.succeeded).collect();
    let failed: Vec<i64> = counted.iter().map(|(_, m)| m.failed).collect();
    let retried: Vec<i64> = counted.iter().map(|(_, m)| m.retried).collect();
    // Arrays of arrays go as text: every row has the same number of buckets.
    let buckets = |pick: fn(&QueueMinute) -> &Vec<i64>| -> Vec<String> {
        counted
            .iter()
            .map(|(_, m)| {
                let items: Vec<String> = pick(m).iter().map(i64::to_string).collect();
                format!("{{{}}}", items.join(","))
            })
            .collect()
    };
    let (wait, run) = (buckets(|m| &m.wait_buckets), buckets(|m| &m.run_buckets));
    sqlx::query(
        r#"
        insert into minute_stats as s
            (minute, queue, succeeded, failed, retried, wait_buckets, run_buckets)
        select date_trunc('minute', now()), c.queue, c.succeeded, c.failed, c.retried,
               c.wait::bigint[], c.run::bigint[]
        from unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[], $6::text[])
             as c(queue, succeeded, failed, retried, wait, run)
        order by c.queue
        on conflict (minute, queue) do update set
            succeeded = s.succeeded + excluded.succeeded,
            failed = s.failed + excluded.failed,
            retried = s.retried + excluded.retried,
            wait_buckets = (select array_agg(coalesce(a, 0) + coalesce(b, 0) order by i)
                            from unnest(s.wait_buckets, excluded.wait_buckets)
                                 with ordinality as u(a, b, i)),
            run_buckets = (select array_agg(coalesce(a, 0) + coalesce(b, 0) order by i)
                           from unnest(s.run_buckets, excluded.run_buckets)
                                with ordinality as u(a, b, i))
        "#,
    )
    .bind(&queues)
    .bind(&succeeded)
    .bind(&failed)
    .bind(&retried)
    .bind(&wait)
    .bind(&run)
    .execute(db)
    .await?;
    Ok(())
}

/// One minute of every queue (or of `queue`), summed.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct MinuteRow {
    /// The minute's start.
    pub minute: DateTime<Utc>,
    /// What was counted in it.
    #[sqlx(flatten)]
    pub counted: QueueMinute,
}

/// The last `minutes` minutes (the current one included), oldest first, every minute present
/// (zero when nothing was counted), summed over the queues or for `queue` only.
pub async fn minute_stats(
    db: impl PgExecutor<'_>,
    minutes: i64,
    queue: Option<&str>,
    buckets: usize,
) -> Result<Vec<MinuteRow>, sqlx::Error> {
    let buckets = i32::try_from(buckets).unwrap_or(i32::MAX);
    // Per minute, the sum of each bucket over the minute's rows, in bucket order.
    let bucket_sums = |column: &str| {
        format!(
            "select minute, array_agg(total order by i) as buckets from ( \
                 select k.minute, u.i, sum(u.n)::bigint as total \
                 from kept k, unnest(k.{column}) with ordinality as u(n, i) \
                 group by k.minute, u.i \
             ) per_bucket group by minute"
        )
    };
    let (waits, runs) = (bucket_sums("wait_buckets"), bucket_sums("run_buckets"));
    sqlx::query_as(&format!(
        r#"
        with minutes as (
            select generate_series(date_trunc('minute', now()) - ($1 - 1) * interval '1 minute',
                                   date_trunc('minute', now()), interval '1 minute') as minute
        ),
        kept as (
            select * from minute_stats
            where minute > date_trunc('minute', now()) - $1 * interval '1 minute'
              and ($2::text is null or queue = $2)
        ),
        counted as (
            select minute, sum(succeeded)::bigint as succeeded, sum(failed)::bigint as failed,
                   sum(retried)::bigint as retried
            from kept group by minute
        ),
        waits as ({waits}),
        runs as ({runs})
        select m.minute, coalesce(c.succeeded, 0) as succeeded, coalesce(c.failed, 0) as failed,
               coalesce(c.retried, 0) as retried,
               coalesce(w.buckets, array_fill(0::bigint, array[$3])) as wait_buckets,
               coalesce(r.buckets, array_fill(0::bigint, array[$3])) as run_buckets
        from minutes m
        left join counted c using (minute)
        left join waits w using (minute)
        left join runs r using (minute)
        order by m.minute
        "#
    ))
    .bind(minutes)
    .bind(queue)
    .bind(buckets)
    .fetch_all(db)
    .await
}

/// Deletes the minutes older than `older_than`; how many rows.
pub async fn prune_minute_stats(
    db: impl PgExecutor<'_>,
    older_than: Duration,
) -> Result<u64, sqlx::Error> {
    let deleted = sqlx::query(
        "delete from minute_stats where minute < now() - $1 * interval '1 millisecond'",
    )
    .bind(millis(older_than))
    .execute(db)
    .await?;
    Ok(deleted.rows_affected())
}
