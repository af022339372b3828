//! The saga worker: consumes [`queues::PAYMENT_COMMANDS`] and answers on [`queues::COORDINATOR`].
//!
//! A batch of deliveries is applied in one database transaction, each command in its own savepoint (see
//! [`store::saga::apply`]). Only after the commit are the replies published, all with one confirmed publish, and
//! only then are the deliveries acked. A crash or failure anywhere before the ack redelivers the batch; the
//! payment rows recorded by the first attempt make the repeat change nothing and re-send the same replies.

use std::sync::Arc;

use anyhow::Result;
use async_trait::async_trait;
use diesel_async::AsyncConnection;
use platform::{
    amqp::{BatchHandler, Delivery, Outgoing, Publisher, Verdict},
    db::Pool,
};
use shared_contracts::{queues, CoordinatorMessage, DecodeError, Envelope, PaymentCommand, PaymentReply};
use tracing::Instrument;

use crate::store::{self, saga::CommandError};

/// Charges and refunds checkouts on behalf of the coordinator.
pub struct PaymentWorker {
    pool: Pool,
    publisher: Arc<Publisher>,
}

impl PaymentWorker {
    /// A worker applying commands to the database of `pool` and replying through `publisher`.
    pub fn new(pool: Pool, publisher: Arc<Publisher>) -> Self {
        Self { pool, publisher }
    }
}

/// What became of one delivery of the batch.
enum Outcome {
    /// Applied (or recognised as a repeat): this reply goes to the coordinator.
    Replied(Outgoing),
    /// It can never be applied.
    DeadLetter(String),
}

#[async_trait]
impl BatchHandler for PaymentWorker {
    async fn handle(&self, batch: &[Delivery]) -> Result<Vec<Verdict>> {
        let commands: Vec<_> = batch.iter().map(|d| Envelope::<PaymentCommand>::from_bytes(&d.body)).collect();
        let mut conn = self.pool.get().await?;
        let outcomes = conn
            .transaction::<_, CommandError, _>(async |conn| {
                // Lock every user this batch charges, in ID order, before any command runs: batches handled at
                // once then queue behind each other instead of deadlocking over users in opposite order.
                let mut users: Vec<&str> = commands
                    .iter()
                    .filter_map(|command| match command {
                        Ok(Envelope { body: PaymentCommand::Charge { user_id, .. }, .. }) => Some(user_id.as_str()),
                        _ => None,
                    })
                    .collect();
                users.sort_unstable();
                users.dedup();
                store::users::lock_in_order(conn, &users).await?;
                let mut outcomes = Vec::with_capacity(commands.len());
                for (command, delivery) in commands.iter().zip(batch) {
                    outcomes.push(apply(conn, command, delivery.traceparent.as_deref()).await?);
                }
                Ok(outcomes)
            })
            .await?;
        let replies: Vec<Outgoing> = outcomes
            .iter()
            .filter_map(|outcome| match outcome {
                Outcome::Replied(reply) => Some(reply.clone()),
                Outcome::DeadLetter(_) => None,
            })
            .collect();
        self.publisher.publish(&replies).await?;
        Ok(outcomes
            .into_iter()
            .map(|outcome| match outcome {
                Outcome::Replied(_) => Verdict::Done,
                Outcome::DeadLetter(reason) => Verdict::DeadLetter(reason),
            })
            .collect())
    }
}

/// Applies one decoded command, in a span continuing the sender's trace; an error other than an unprocessable
/// command fails the whole batch.
async fn apply(
    conn: &mut diesel_async::AsyncPgConnection,
    command: &Result<Envelope<PaymentCommand>, DecodeError>,
    traceparent: Option<&str>,
) -> Result<Outcome, CommandError> {
    let envelope = match command {
        Ok(envelope) => envelope,
        Err(e) => {
            count("undecodable", "dead_letter");
            return Ok(Outcome::DeadLetter(format!("undecodable payment command: {e}")));
        }
    };
    let kind = match envelope.body {
        PaymentCommand::Charge { .. } => "charge",
        PaymentCommand::Refund => "refund",
    };
    let span = tracing::info_span!("payment.command", saga_id = %envelope.saga_id, command = kind, trace_id = tracing::field::Empty);
    platform::trace::continue_trace(&span, traceparent);
    match store::saga::apply(conn, envelope.saga_id, &envelope.body).instrument(span.clone()).await {
        Ok(reply) => {
            span.in_scope(|| tracing::debug!(?reply, "payment command applied"));
            count(kind, reply_name(&reply));
            let message = Envelope::new(envelope.saga_id, CoordinatorMessage::Payment(reply));
            let reply = Outgoing::envelope(queues::COORDINATOR, &message).in_trace(platform::trace::traceparent(&span));
            Ok(Outcome::Replied(reply))
        }
        Err(CommandError::Unprocessable(reason)) => {
            count(kind, "dead_letter");
            Ok(Outcome::DeadLetter(format!("saga {}: {reason}", envelope.saga_id)))
        }
        Err(e) => Err(e),
    }
}

fn reply_name(reply: &PaymentReply) -> &'static str {
    match reply {
        PaymentReply::Charged => "charged",
        PaymentReply::Rejected { .. } => "rejected",
        PaymentReply::Refunded => "refunded",
    }
}

fn count(command: &'static str, outcome: &'static str) {
    metrics::counter!("payment_saga_commands_total", "command" => command, "outcome" => outcome).increment(1);
}
