//! The consumer of checkout outcomes (paid, failed, cancelled, needs attention), which the coordinator sends on
//! [`queues::ORDER_OUTCOMES`]. Each batch is recorded in one transaction (see [`store::outcomes::settle`]), acked
//! only once committed, and then wakes the requests of this process waiting for those sagas. Recording is
//! idempotent, so redelivered outcomes are harmless; a message that does not decode is dead-lettered.
//!
//! The other direction is built here too: every message to the coordinator ([`to_coordinator`]), a
//! `StartCheckout` or a `CancelCheckout` for what the domain asks of it ([`CoordinatorRequest`]). It is published
//! after the commit that records the intent (see [`crate::checkout`]) and sent again until an outcome comes back
//! (see [`crate::resend`]).
//!
//! [`queues::ORDER_OUTCOMES`]: shared_contracts::queues::ORDER_OUTCOMES
//! [`store::outcomes::settle`]: crate::store::outcomes::settle

use std::sync::Arc;

use async_trait::async_trait;
use platform::{
    amqp::{BatchHandler, Delivery, Outgoing, Verdict},
    db::Pool,
};
use shared_contracts::{queues, CheckoutOutcome, CheckoutRequest, CoordinatorMessage, Envelope};

use crate::{
    checkout::OutcomeWaiters,
    domain::{self, CoordinatorRequest},
    store::outcomes,
};

/// The message on [`queues::COORDINATOR`] that asks for `request`. A checkout's lines go merged per item, sorted by
/// item ID ([`domain::aggregate_lines`]), the form the coordinator takes them in.
pub fn to_coordinator(request: CoordinatorRequest) -> Outgoing {
    let (saga_id, message) = match request {
        CoordinatorRequest::Start { saga_id, order } => {
            let request = CheckoutRequest {
                order_id: order.order_id,
                user_id: order.user_id,
                items: domain::aggregate_lines(order.lines),
                total: order.total,
            };
            (saga_id, CoordinatorMessage::StartCheckout(request))
        }
        CoordinatorRequest::Cancel { saga_id, order_id } => (saga_id, CoordinatorMessage::CancelCheckout { order_id }),
    };
    Outgoing::envelope(queues::COORDINATOR, &Envelope::new(saga_id, message))
}

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

#[cfg(test)]
mod tests {
    use shared_contracts::{LineItem, SagaId};

    use super::*;
    use crate::domain::Snapshot;

    fn sent(outgoing: &Outgoing) -> Envelope<CoordinatorMessage> {
        assert_eq!(outgoing.queue, queues::COORDINATOR);
        Envelope::from_bytes(&outgoing.body).expect("a coordinator message")
    }

    #[test]
    fn a_start_carries_the_order_with_its_lines_merged_per_item() {
        let saga_id = SagaId::new();
        let line = |item_id: &str, quantity| LineItem { item_id: item_id.to_owned(), quantity };
        let order = Snapshot {
            order_id: "o".into(),
            user_id: "u".into(),
            total: 14,
            lines: vec![line("b", 1), line("a", 2), line("b", 1)],
        };
        let envelope = sent(&to_coordinator(CoordinatorRequest::Start { saga_id, order }));
        assert_eq!(envelope.saga_id, saga_id);
        let expected = CheckoutRequest {
            order_id: "o".into(),
            user_id: "u".into(),
            items: vec![line("a", 2), line("b", 2)],
            total: 14,
        };
        assert_eq!(envelope.body, CoordinatorMessage::StartCheckout(expected));
    }

    #[test]
    fn a_cancel_names_the_paid_saga_and_its_order() {
        let saga_id = SagaId::new();
        let envelope = sent(&to_coordinator(CoordinatorRequest::Cancel { saga_id, order_id: "o".into() }));
        assert_eq!(envelope.saga_id, saga_id);
        assert_eq!(envelope.body, CoordinatorMessage::CancelCheckout { order_id: "o".into() });
    }
}
