//! The gauges operators alert on, refreshed on a timer: `coordinator_saga_unfinished` (sagas under way),
//! `coordinator_saga_stuck` (of those, the ones unchanged for longer than `STUCK_AFTER_SECS`),
//! `coordinator_saga_needs_attention`, and `coordinator_dead_letter_depth` (from a passive declare of the
//! dead-letter queue). Every coordinator reports the same numbers, as they are read from the shared database
//! and broker: alert rules take the `max` over the replicas.

use std::time::Duration;

use anyhow::{Context, Result};
use diesel::{
    sql_types::{Array, BigInt, Double, Text},
    QueryableByName,
};
use diesel_async::RunQueryDsl;
use platform::db::Pool;

use crate::{dead_letters::DeadLetters, domain::Status};

/// The saga counts behind the gauges.
#[derive(QueryableByName, Debug, Clone, Copy, PartialEq, Eq)]
pub struct SagaGauges {
    /// Sagas under way.
    #[diesel(sql_type = BigInt)]
    pub unfinished: i64,
    /// Sagas under way and unchanged for longer than the stuck threshold.
    #[diesel(sql_type = BigInt)]
    pub stuck: i64,
    /// Sagas that wait for an operator.
    #[diesel(sql_type = BigInt)]
    pub needs_attention: i64,
}

/// Refreshes the gauges every `interval` for ever, counting as stuck what has not changed for `stuck_after`.
pub async fn run(pool: Pool, dead_letters: &DeadLetters, stuck_after: Duration, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match count(&pool, stuck_after).await {
            Ok(sagas) => {
                metrics::gauge!("coordinator_saga_unfinished").set(sagas.unfinished as f64);
                metrics::gauge!("coordinator_saga_stuck").set(sagas.stuck as f64);
                metrics::gauge!("coordinator_saga_needs_attention").set(sagas.needs_attention as f64);
            }
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "the saga gauges could not be refreshed"),
        }
        match dead_letters.depth().await {
            Ok(depth) => metrics::gauge!("coordinator_dead_letter_depth").set(f64::from(depth)),
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "the dead-letter depth could not be read"),
        }
    }
}

/// The saga counts now, in one scan of the sagas in the statuses concerned.
pub async fn count(pool: &Pool, stuck_after: Duration) -> Result<SagaGauges> {
    let unfinished: Vec<&str> = Status::unfinished().map(Status::as_str).collect();
    let mut conn = pool.get().await?;
    diesel::sql_query(
        "SELECT count(*) FILTER (WHERE status = ANY($1)) AS unfinished,
                count(*) FILTER (WHERE status = ANY($1) AND updated_at <= now() - make_interval(secs => $2)) AS stuck,
                count(*) FILTER (WHERE status = $3) AS needs_attention
         FROM sagas WHERE status = ANY($1) OR status = $3",
    )
    .bind::<Array<Text>, _>(unfinished)
    .bind::<Double, _>(stuck_after.as_secs_f64())
    .bind::<Text, _>(Status::NeedsAttention.as_str())
    .get_result(&mut conn)
    .await
    .context("counting sagas for the gauges")
}
