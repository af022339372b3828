//! Retention: sagas that ended (completed, failed, cancelled) and have not changed for longer than the
//! configured age are deleted with their history, by the coordinator itself, on a timer. A saga that needs
//! attention is never pruned, whatever its age: it waits for an operator.
//!
//! One run deletes at most a batch of sagas, oldest first, in one statement and so one short transaction; a run
//! that found a full batch is followed at once by the next, so a backlog drains without one long transaction.
//! The sagas are claimed with `FOR UPDATE SKIP LOCKED`, so several coordinators may prune at once without
//! waiting on each other or on a saga the engine holds. The count pruned is the counter
//! `coordinator_saga_pruned_total`.

use std::time::Duration;

use anyhow::Result;
use diesel::sql_types::{BigInt, Double};
use diesel_async::RunQueryDsl;
use platform::{db::Pool, dispatch::repeat_passes};

/// Deletes, in one statement, up to `$2` sagas that ended more than `$1` seconds ago, and their history (the
/// history has no foreign key to cascade from; see the migration that dropped it). `needs_attention` is not
/// among the statuses: such a saga waits for an operator.
const PRUNE: &str = "
    WITH doomed AS (
        SELECT id FROM sagas
        WHERE status IN ('completed', 'failed', 'cancelled')
          AND updated_at < now() - make_interval(secs => $1)
        ORDER BY updated_at
        LIMIT $2
        FOR UPDATE SKIP LOCKED
    ), history AS (
        DELETE FROM saga_transitions WHERE saga_id IN (SELECT id FROM doomed)
    )
    DELETE FROM sagas WHERE id IN (SELECT id FROM doomed)";

/// Prunes for ever: every `interval`, sagas older than `age`, `batch` at a time.
pub async fn run(pool: Pool, age: Duration, interval: Duration, batch: i64) {
    let pool = &pool;
    repeat_passes("a retention pass", interval, batch as usize, || prune(pool, age, batch)).await
}

/// One run: deletes up to `batch` sagas that ended more than `age` ago, with their history, and returns how many.
pub async fn prune(pool: &Pool, age: Duration, batch: i64) -> Result<usize> {
    let mut conn = pool.get().await?;
    let pruned = diesel::sql_query(PRUNE)
        .bind::<Double, _>(age.as_secs_f64())
        .bind::<BigInt, _>(batch)
        .execute(&mut conn)
        .await?;
    if pruned > 0 {
        metrics::counter!("coordinator_saga_pruned_total").increment(pruned as u64);
        tracing::info!(pruned, "old sagas pruned");
    }
    Ok(pruned)
}
