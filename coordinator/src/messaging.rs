//! The coordinator's side of the wire: the consumer of [`queues::COORDINATOR`] (checkout requests and participant
//! replies) and the encoding of the saga's commands as messages.
//!
//! A batch of deliveries is handled in one transaction: new sagas are inserted, the sagas that replies belong to
//! are locked, every event is applied in delivery order, and the new states are persisted. Only after the commit
//! are the commands handed to the dispatcher and the deliveries acked. A start whose saga exists already is
//! order-svc asking again for an outcome it has not heard: a finished saga reports it once more. A cancel is
//! order-svc asking to undo a paid checkout; like a repeated start, it is rare, so its saga is locked in a
//! statement of its own.

use std::collections::{HashMap, HashSet};

use anyhow::Result;
use async_trait::async_trait;
use diesel_async::AsyncConnection;
use platform::{
    amqp::{BatchHandler, Delivery, Outgoing, Verdict},
    db::Pool,
    dispatch::Dispatcher,
};
use shared_contracts::{
    queues, CheckoutOutcome, CheckoutRequest, CoordinatorMessage, Envelope, PaymentCommand, SagaId, StockCommand,
};

use crate::{
    domain::{self, Command, Event},
    engine::{Effects, RetryPolicy},
    store,
};

/// Turns one saga command into the message that carries it.
pub fn encode(saga_id: SagaId, request: &CheckoutRequest, command: &Command) -> Outgoing {
    fn outgoing<T: serde::Serialize + serde::de::DeserializeOwned>(queue: &str, envelope: Envelope<T>) -> Outgoing {
        Outgoing::envelope(queue, &envelope)
    }
    match command {
        Command::ReserveStock => outgoing(
            queues::STOCK_COMMANDS,
            Envelope::new(saga_id, StockCommand::Reserve { items: request.items.clone() }),
        ),
        Command::ReleaseStock => outgoing(queues::STOCK_COMMANDS, Envelope::new(saga_id, StockCommand::Release)),
        Command::ChargePayment => outgoing(
            queues::PAYMENT_COMMANDS,
            Envelope::new(
                saga_id,
                PaymentCommand::Charge {
                    user_id: request.user_id.clone(),
                    order_id: request.order_id.clone(),
                    amount: request.total,
                },
            ),
        ),
        Command::RefundPayment => outgoing(queues::PAYMENT_COMMANDS, Envelope::new(saga_id, PaymentCommand::Refund)),
        Command::ReportPaid => outgoing(
            queues::ORDER_OUTCOMES,
            Envelope::new(saga_id, CheckoutOutcome::Paid { order_id: request.order_id.clone() }),
        ),
        Command::ReportFailed { reason } => outgoing(
            queues::ORDER_OUTCOMES,
            Envelope::new(
                saga_id,
                CheckoutOutcome::Failed { order_id: request.order_id.clone(), reason: reason.clone() },
            ),
        ),
        Command::ReportCancelled => outgoing(
            queues::ORDER_OUTCOMES,
            Envelope::new(saga_id, CheckoutOutcome::Cancelled { order_id: request.order_id.clone() }),
        ),
        Command::ReportNeedsAttention { problem } => outgoing(
            queues::ORDER_OUTCOMES,
            Envelope::new(
                saga_id,
                CheckoutOutcome::NeedsAttention { order_id: request.order_id.clone(), problem: problem.clone() },
            ),
        ),
    }
}

/// Handles the coordinator queue.
pub struct CoordinatorHandler {
    pool: Pool,
    dispatcher: Dispatcher,
    policy: RetryPolicy,
}

impl CoordinatorHandler {
    /// A handler writing to `pool` and sending what each commit calls for through `dispatcher`.
    pub fn new(pool: Pool, dispatcher: Dispatcher, policy: RetryPolicy) -> Self {
        Self { pool, dispatcher, policy }
    }
}

#[async_trait]
impl BatchHandler for CoordinatorHandler {
    async fn handle(&self, batch: &[Delivery]) -> Result<Vec<Verdict>> {
        let mut verdicts = Vec::with_capacity(batch.len());
        let mut starts: Vec<(SagaId, CheckoutRequest)> = Vec::new();
        let mut start_traces: Vec<Option<String>> = Vec::new();
        let mut events: Vec<(SagaId, Event, Option<String>)> = Vec::new();
        // Cancels, and below repeated starts: events whose sagas are locked in a statement of their own.
        let mut rare: Vec<(SagaId, Event, Option<String>)> = Vec::new();
        let mut seen_starts = HashSet::new();
        for delivery in batch {
            match Envelope::<CoordinatorMessage>::from_bytes(&delivery.body) {
                Ok(envelope) => {
                    verdicts.push(Verdict::Done);
                    // The span of this message in the checkout's trace; what the saga sends because of it
                    // continues from here.
                    let span = tracing::info_span!(
                        "coordinator.message",
                        saga_id = %envelope.saga_id,
                        trace_id = tracing::field::Empty
                    );
                    platform::trace::continue_trace(&span, delivery.traceparent.as_deref());
                    let traceparent = platform::trace::traceparent(&span);
                    match envelope.body {
                        CoordinatorMessage::StartCheckout(request) => {
                            if seen_starts.insert(envelope.saga_id) {
                                starts.push((envelope.saga_id, request));
                                start_traces.push(traceparent);
                            }
                        }
                        CoordinatorMessage::Stock(reply) => {
                            events.push((envelope.saga_id, Event::Stock { reply }, traceparent))
                        }
                        CoordinatorMessage::Payment(reply) => {
                            events.push((envelope.saga_id, Event::Payment { reply }, traceparent))
                        }
                        CoordinatorMessage::CancelCheckout { .. } => {
                            rare.push((envelope.saga_id, Event::Cancel, traceparent))
                        }
                    }
                }
                Err(e) => verdicts.push(Verdict::DeadLetter(e.to_string())),
            }
        }
        let policy = self.policy;
        let mut conn = self.pool.get().await?;
        let outgoing = conn
            .transaction::<Vec<Outgoing>, anyhow::Error, _>(async |conn| {
                let mut effects = Effects::default();
                let start = domain::start();
                let mut ids: Vec<SagaId> = events.iter().map(|(id, _, _)| *id).collect();
                ids.sort();
                ids.dedup();
                // Pipelined: PostgreSQL still runs them in the order sent, only the wait between them goes.
                let (inserted, locked) = futures::try_join!(
                    store::insert_new(conn, &starts, &start_traces, &start.state, policy.delay_ms(0)),
                    store::lock(conn, &ids),
                )?;
                let inserted: HashSet<SagaId> = inserted.into_iter().collect();
                let mut repeated = std::mem::take(&mut rare);
                for ((id, request), traceparent) in starts.iter().zip(&start_traces) {
                    if inserted.contains(id) {
                        effects.started(*id, request, traceparent.clone());
                    } else {
                        repeated.push((*id, Event::StartRepeated, traceparent.clone()));
                    }
                }

                let mut sagas: HashMap<SagaId, store::SagaRecord> = locked.into_iter().map(|s| (s.id, s)).collect();
                // order-svc repeats a start only when it has not heard the outcome for a while, and cancels are
                // rare, so their sagas are locked in a statement of their own rather than on every batch's way.
                let mut unlocked: Vec<SagaId> =
                    repeated.iter().map(|(id, _, _)| *id).filter(|id| !sagas.contains_key(id)).collect();
                unlocked.sort();
                unlocked.dedup();
                sagas.extend(store::lock(conn, &unlocked).await?.into_iter().map(|s| (s.id, s)));

                for (id, event, traceparent) in events.iter().chain(&repeated) {
                    match sagas.get_mut(id) {
                        Some(saga) => effects.apply(saga, event, policy, traceparent.clone()),
                        None => tracing::warn!(saga_id = %id, ?event, "reply for an unknown saga, ignored"),
                    }
                }
                Ok(effects.persist(conn).await?)
            })
            .await?;
        self.dispatcher.send(outgoing).await;
        Ok(verdicts)
    }
}
