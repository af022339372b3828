//! The saga worker: consumes [`queues::PAYMENT_COMMANDS`] and answers on [`queues::COORDINATOR`].
//!
//! Each delivery of a batch is decoded once; the readable commands are applied together, in one database
//! transaction of a fixed number of statements (see [`store::saga::apply_batch`]). Only after the commit are the
//! replies published, all with one confirmed publish, and only then are the deliveries acked. A crash or failure
//! anywhere before the ack redelivers the batch; the payment rows recorded by the first attempt make the repeat
//! change nothing and re-send the same replies. A delivery that can never be applied (unreadable, or a refund the
//! rules of credit refuse) goes to the dead letters without holding up the rest of its batch; when its saga is
//! known, the coordinator is told with [`PaymentReply::CannotApply`], so that the saga ends as needing attention.

use std::sync::Arc;

use anyhow::Result;
use async_trait::async_trait;
use platform::{
    amqp::{BatchHandler, Delivery, Outgoing, Publisher, Verdict},
    db::Pool,
};
use shared_contracts::{queues, CoordinatorMessage, Envelope, PaymentCommand, PaymentReply};
use tracing::Span;

use crate::store::{self, saga::NotApplied};

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

/// A readable command of the batch, and the span it is handled in.
struct Received {
    envelope: Envelope<PaymentCommand>,
    span: Span,
}

/// What becomes of one delivery of the batch: the reply for the coordinator, if its saga is known, and its verdict.
struct Outcome {
    reply: Option<Outgoing>,
    verdict: Verdict,
}

#[async_trait]
impl BatchHandler for PaymentWorker {
    async fn handle(&self, batch: &[Delivery]) -> Result<Vec<Verdict>> {
        let received: Vec<Result<Received, String>> = batch.iter().map(receive).collect();
        let commands: Vec<_> = received.iter().flatten().map(|r| (r.envelope.saga_id, &r.envelope.body)).collect();
        let results = {
            let mut conn = self.pool.get().await?;
            store::saga::apply_batch(&mut conn, &commands).await?
        };
        let mut results = results.into_iter();
        let outcomes: Vec<Outcome> = received
            .iter()
            .map(|received| match received {
                Ok(command) => conclude(command, results.next().expect("the store answers every command")),
                Err(reason) => Outcome { reply: None, verdict: Verdict::DeadLetter(reason.clone()) },
            })
            .collect();
        let (replies, verdicts): (Vec<_>, Vec<_>) =
            outcomes.into_iter().map(|outcome| (outcome.reply, outcome.verdict)).unzip();
        self.publisher.publish(&replies.into_iter().flatten().collect::<Vec<_>>()).await?;
        Ok(verdicts)
    }
}

/// Decodes `delivery` and opens its span, continuing the sender's trace; an unreadable one is dead-lettered.
fn receive(delivery: &Delivery) -> Result<Received, String> {
    let envelope = Envelope::<PaymentCommand>::from_bytes(&delivery.body).map_err(|e| {
        count("undecodable", "dead_letter");
        format!("undecodable payment command: {e}")
    })?;
    let span = tracing::info_span!(
        "payment.command",
        saga_id = %envelope.saga_id,
        command = command_name(&envelope.body),
        trace_id = tracing::field::Empty,
    );
    platform::trace::continue_trace(&span, delivery.traceparent.as_deref());
    Ok(Received { envelope, span })
}

/// Turns what the store made of `command` into its reply and verdict: done, or, when it can never be applied,
/// answered [`PaymentReply::CannotApply`] and dead-lettered.
fn conclude(command: &Received, result: Result<PaymentReply, NotApplied>) -> Outcome {
    let Received { envelope, span } = command;
    let kind = command_name(&envelope.body);
    let (reply, verdict) = match result {
        Ok(reply) => {
            span.in_scope(|| tracing::debug!(?reply, "payment command applied"));
            (reply, Verdict::Done)
        }
        Err(why) => {
            let verdict = Verdict::DeadLetter(format!("saga {}: {why}", envelope.saga_id));
            (PaymentReply::CannotApply { problem: why.to_string() }, verdict)
        }
    };
    count(kind, reply_name(&reply));
    let message = Envelope::new(envelope.saga_id, CoordinatorMessage::Payment(reply));
    let reply = Outgoing::envelope(queues::COORDINATOR, &message).in_trace(platform::trace::traceparent(span));
    Outcome { reply: Some(reply), verdict }
}

fn command_name(command: &PaymentCommand) -> &'static str {
    match command {
        PaymentCommand::Charge { .. } => "charge",
        PaymentCommand::Refund => "refund",
    }
}

fn reply_name(reply: &PaymentReply) -> &'static str {
    match reply {
        PaymentReply::Charged => "charged",
        PaymentReply::Rejected { .. } => "rejected",
        PaymentReply::Refunded => "refunded",
        PaymentReply::CannotApply { .. } => "cannot_apply",
    }
}

fn count(command: &'static str, outcome: &'static str) {
    metrics::counter!("payment_saga_commands_total", "command" => command, "outcome" => outcome).increment(1);
}
