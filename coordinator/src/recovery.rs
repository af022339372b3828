//! The retry timer: sagas whose commands went unanswered past their `next_retry_at` get a
//! [`Event::RetryDue`](crate::domain::Event::RetryDue), which re-sends exactly the unanswered commands, with the
//! wait doubling each time, or, once past their deadline, an [`Event::DeadlinePassed`](crate::domain::Event),
//! which gives up on them (see [`RetryPolicy::due_event`]). This is what finishes sagas after a crash lost a
//! message somewhere, or a participant stopped answering, without a human. Several coordinators may run it at
//! once: due sagas are claimed with `SKIP LOCKED`.

use std::time::Duration;

use anyhow::Result;
use diesel_async::AsyncConnection;
use platform::{
    amqp::Outgoing,
    db::Pool,
    dispatch::{repeat_passes, Dispatcher},
};

use crate::{
    engine::{Effects, RetryPolicy},
    store,
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
    let mut conn = pool.get().await?;
    let (retried, outgoing) = conn
        .transaction::<(usize, Vec<Outgoing>), anyhow::Error, _>(async |conn| {
            let mut sagas = store::lock_retry_due(conn, BATCH).await?;
            let mut effects = Effects::default();
            let now = chrono::Utc::now();
            for saga in &mut sagas {
                let event = policy.due_event(saga, now);
                tracing::info!(saga_id = %saga.id, retries = saga.retries, state = ?saga.state, ?event, "saga due");
                let traceparent = saga.traceparent.clone();
                effects.apply(saga, &event, policy, traceparent);
            }
            Ok((sagas.len(), effects.persist(conn).await?))
        })
        .await?;
    dispatcher.send(outgoing).await;
    Ok(retried)
}
