//! The coordinator's side of the wire, and the only part of it that knows queues and envelopes: the consumer of
//! [`queues::COORDINATOR`] (checkout requests, cancels and participant replies), which turns each message into an
//! input of the [`Engine`], and the encoding of the commands the engine returns as the messages that carry them.
//!
//! A batch of deliveries is handled in one transaction, by [`Engine::handle`]. Only after the commit are the
//! commands handed to the dispatcher and the deliveries acked.

use anyhow::Result;
use async_trait::async_trait;
use platform::{
    amqp::{BatchHandler, Delivery, Outgoing, Verdict},
    db::Pool,
    dispatch::Dispatcher,
};
use shared_contracts::{queues, CheckoutOutcome, CoordinatorMessage, Envelope, PaymentCommand, SagaId, StockCommand};

use crate::{
    domain::{Command, Event},
    engine::{Batch, Engine, RetryPolicy, SagaCommand},
    store::{NewSaga, PgSagaStore},
};

/// Turns one saga command into the message that carries it, in the trace the command continues.
pub fn encode(command: SagaCommand) -> Outgoing {
    fn outgoing<T: serde::Serialize + serde::de::DeserializeOwned>(queue: &str, envelope: Envelope<T>) -> Outgoing {
        Outgoing::envelope(queue, &envelope)
    }
    let SagaCommand { saga_id, request, command, traceparent } = command;
    let message = match command {
        Command::ReserveStock => {
            outgoing(queues::STOCK_COMMANDS, Envelope::new(saga_id, StockCommand::Reserve { items: request.items }))
        }
        Command::ReleaseStock => outgoing(queues::STOCK_COMMANDS, Envelope::new(saga_id, StockCommand::Release)),
        Command::ChargePayment => outgoing(
            queues::PAYMENT_COMMANDS,
            Envelope::new(
                saga_id,
                PaymentCommand::Charge { user_id: request.user_id, order_id: request.order_id, amount: request.total },
            ),
        ),
        Command::RefundPayment => outgoing(queues::PAYMENT_COMMANDS, Envelope::new(saga_id, PaymentCommand::Refund)),
        Command::ReportPaid => outgoing(
            queues::ORDER_OUTCOMES,
            Envelope::new(saga_id, CheckoutOutcome::Paid { order_id: request.order_id }),
        ),
        Command::ReportFailed { reason } => outgoing(
            queues::ORDER_OUTCOMES,
            Envelope::new(saga_id, CheckoutOutcome::Failed { order_id: request.order_id, reason }),
        ),
        Command::ReportCancelled => outgoing(
            queues::ORDER_OUTCOMES,
            Envelope::new(saga_id, CheckoutOutcome::Cancelled { order_id: request.order_id }),
        ),
        Command::ReportNeedsAttention { problem } => outgoing(
            queues::ORDER_OUTCOMES,
            Envelope::new(saga_id, CheckoutOutcome::NeedsAttention { order_id: request.order_id, problem }),
        ),
    };
    message.in_trace(traceparent)
}

/// Sends `commands` through `dispatcher`, once the unit of work that emitted them has committed.
pub async fn send(dispatcher: &Dispatcher, commands: Vec<SagaCommand>) {
    dispatcher.send(commands.into_iter().map(encode).collect()).await;
}

/// Handles the coordinator queue.
pub struct CoordinatorHandler {
    pool: Pool,
    dispatcher: Dispatcher,
    engine: Engine,
}

impl CoordinatorHandler {
    /// A handler writing to `pool` and sending what each commit calls for through `dispatcher`.
    pub fn new(pool: Pool, dispatcher: Dispatcher, policy: RetryPolicy) -> Self {
        Self { pool, dispatcher, engine: Engine::new(policy) }
    }
}

/// The engine's input a message is, continuing the trace `traceparent`.
fn read(batch: &mut Batch, saga_id: SagaId, message: CoordinatorMessage, traceparent: Option<String>) {
    match message {
        CoordinatorMessage::StartCheckout(request) => batch.start(NewSaga { id: saga_id, request, traceparent }),
        CoordinatorMessage::Stock(reply) => batch.event(saga_id, Event::Stock { reply }, traceparent),
        CoordinatorMessage::Payment(reply) => batch.event(saga_id, Event::Payment { reply }, traceparent),
        CoordinatorMessage::CancelCheckout { .. } => batch.event(saga_id, Event::Cancel, traceparent),
    }
}

#[async_trait]
impl BatchHandler for CoordinatorHandler {
    async fn handle(&self, deliveries: &[Delivery]) -> Result<Vec<Verdict>> {
        let mut verdicts = Vec::with_capacity(deliveries.len());
        let mut batch = Batch::default();
        for delivery in deliveries {
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
                    read(&mut batch, envelope.saga_id, envelope.body, platform::trace::traceparent(&span));
                }
                Err(e) => verdicts.push(Verdict::DeadLetter(e.to_string())),
            }
        }
        let engine = self.engine;
        let mut conn = self.pool.get().await?;
        let commands = platform::db::transaction(&mut conn, async |conn| {
            anyhow::Ok(engine.handle(&PgSagaStore::new(conn), batch).await?)
        })
        .await?;
        send(&self.dispatcher, commands).await;
        Ok(verdicts)
    }
}
