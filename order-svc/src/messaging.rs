//! The consumer of checkout outcomes (paid, failed, cancelled, needs attention), which the coordinator sends on
//! [`queues::ORDER_OUTCOMES`]. Each batch is recorded in one transaction (see [`store::outcomes::settle`]), acked
//! only once committed, and then wakes the requests of this process waiting for those sagas. Recording is
//! idempotent, so redelivered outcomes are harmless; a message that does not decode is dead-lettered.
//!
//! The other direction, `StartCheckout` and `CancelCheckout` to the coordinator, is published after the commit
//! that records the intent and sent again until an outcome comes back (see [`crate::resend`]).
//!
//! [`queues::ORDER_OUTCOMES`]: shared_contracts::queues::ORDER_OUTCOMES
//! [`store::outcomes::settle`]: crate::store::outcomes::settle

use std::sync::Arc;

use async_trait::async_trait;
use platform::{
    amqp::{BatchHandler, Delivery, Verdict},
    db::Pool,
};
use shared_contracts::{CheckoutOutcome, Envelope};

use crate::{checkout::OutcomeWaiters, store::outcomes};

/// Records checkout outcomes and wakes their waiters.
pub struct OutcomeHandler {
    pool: Pool,
    waiters: Arc<OutcomeWaiters>,
}

impl OutcomeHandler {
    /// A handler recording into `pool` and waking `waiters`.
    pub fn new(pool: Pool, waiters: Arc<OutcomeWaiters>) -> Self {
        Self { pool, waiters }
    }
}

#[async_trait]
impl BatchHandler for OutcomeHandler {
    async fn handle(&self, batch: &[Delivery]) -> anyhow::Result<Vec<Verdict>> {
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut verdicts = Vec::with_capacity(batch.len());
        for delivery in batch {
            match Envelope::<CheckoutOutcome>::from_bytes(&delivery.body) {
                Ok(envelope) => {
                    // The end of the checkout's trace: the outcome is recorded as part of it.
                    let span = tracing::info_span!(
                        "order.outcome",
                        saga_id = %envelope.saga_id,
                        trace_id = tracing::field::Empty
                    );
                    platform::trace::continue_trace(&span, delivery.traceparent.as_deref());
                    span.in_scope(|| tracing::debug!(outcome = ?envelope.body, "checkout outcome"));
                    outcomes.push((envelope.saga_id, envelope.body));
                    verdicts.push(Verdict::Done);
                }
                Err(e) => verdicts.push(Verdict::DeadLetter(format!("undecodable checkout outcome: {e}"))),
            }
        }
        if !outcomes.is_empty() {
            let settled = outcomes::settle(&mut *self.pool.get().await?, &outcomes).await?;
            // Only checkouts that an outcome moved just now are handed out: a duplicate, or one for a checkout a
            // batch_init discarded, leaves its waiters to read the row.
            for (saga_id, state) in &settled {
                self.waiters.wake(*saga_id, state);
            }
        }
        Ok(verdicts)
    }
}
