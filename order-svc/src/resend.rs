//! Sending `StartCheckout` again for checkouts that have not heard their outcome, and `CancelCheckout` for
//! cancellations that have not. The first message goes out after the commit that recorded the intent (see
//! [`crate::checkout`]) and nothing else records it, so this is what finishes a checkout or cancellation whose
//! message was lost: order-svc killed before publishing, a publish that failed, a broker restart that dropped it,
//! or an outcome from the coordinator lost the same ways. The coordinator creates the saga if it never heard of
//! it (undoes it, for a cancel), ignores the message while the saga runs, and reports the outcome again once it
//! has ended. The pauses between sends double up to a maximum (5 s by default, see [`crate::config`]), so a
//! checkout that is merely slow costs little and one lost in an outage goes out again soon after. Several
//! replicas may run this at once: due checkouts are claimed with `SKIP LOCKED`.

use std::time::Duration;

use anyhow::Result;
use platform::{
    db::Pool,
    dispatch::{repeat_passes, Dispatcher},
};

use crate::{messaging, store::checkouts};

/// How often due checkouts are looked for.
const TICK: Duration = Duration::from_millis(500);
/// The most checkouts sent again in one pass.
const BATCH: i64 = 500;

/// When the message of a checkout in flight is sent again: `first` after the first send, doubling per send, at
/// most `max` apart.
#[derive(Debug, Clone, Copy)]
pub struct ResendPolicy {
    /// The wait after the first send.
    pub first: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl ResendPolicy {
    /// The wait after the first send, in milliseconds.
    pub fn first_ms(&self) -> i64 {
        self.first.as_millis() as i64
    }
}

/// Sends due checkouts again, for ever.
pub async fn run(pool: Pool, dispatcher: Dispatcher, policy: ResendPolicy) {
    let (pool, dispatcher) = (&pool, &dispatcher);
    repeat_passes("resending due checkouts", TICK, BATCH as usize, || resend_due(pool, dispatcher, policy)).await
}

/// One pass: sends every due checkout (up to [`BATCH`]) again and returns how many.
pub async fn resend_due(pool: &Pool, dispatcher: &Dispatcher, policy: ResendPolicy) -> Result<usize> {
    let mut conn = pool.get().await?;
    let due = checkouts::take_due_resends(&mut conn, BATCH, policy.first_ms(), policy.max.as_millis() as i64).await?;
    drop(conn);
    let messages: Vec<_> = due.into_iter().map(messaging::to_coordinator).collect();
    let sent = messages.len();
    if sent > 0 {
        tracing::info!(
            checkouts = sent,
            "sending StartCheckout or CancelCheckout again for checkouts without an outcome"
        );
        metrics::counter!("order_checkout_resends_total").increment(sent as u64);
    }
    dispatcher.send(messages).await;
    Ok(sent)
}
