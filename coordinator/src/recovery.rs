//! The retry timer: sagas whose commands went unanswered past their `next_retry_at` get a
//! [`Event::RetryDue`](crate::domain::Event::RetryDue), which re-sends exactly the unanswered commands, with the
//! wait doubling each time, or, once past their deadline, an [`Event::DeadlinePassed`](crate::domain::Event),
//! which gives up on them (see [`RetryPolicy::due_event`] and [`Engine::retry_due`]). This is what finishes sagas
//! after a crash lost a message somewhere, or a participant stopped answering, without a human. Several coordinators may run it at
//! once: due sagas are claimed with `SKIP LOCKED`.

use std::time::Duration;

use anyhow::Result;
use platform::{
    db::Pool,
    dispatch::{repeat_passes, Dispatcher},
};

use crate::{
    engine::{Engine, RetryPolicy},
    messaging,
    store::PgSagaStore,
};

/// How often the timer looks for due sagas.
const TICK: Duration = Duration::from_millis(250);
/// The most sagas retried in one transaction.
const BATCH: i64 = 500;

/// Runs the retry timer for ever.
pub async fn run(pool: Pool, dispatcher: Dispatcher, policy: RetryPolicy) {
    let (pool, dispatcher) = (&pool, &dispatcher);
    repeat_passes("a retry pass", TICK, BATCH as usize, || retry_due(pool, dispatcher, policy)).await
}

/// One pass: retries every due saga (up to [`BATCH`]) and returns how many.
pub async fn retry_due(pool: &Pool, dispatcher: &Dispatcher, policy: RetryPolicy) -> Result<usize> {
    let engine = Engine::new(policy);
    let mut conn = pool.get().await?;
    let (retried, commands) = platform::db::transaction(&mut conn, async |conn| {
        anyhow::Ok(engine.retry_due(&PgSagaStore::new(conn), BATCH, chrono::Utc::now()).await?)
    })
    .await?;
    messaging::send(dispatcher, commands).await;
    Ok(retried)
}
