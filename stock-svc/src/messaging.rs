//! The saga worker: stock-svc's part in the checkout saga. It consumes [`StockCommand`]s from
//! [`queues::STOCK_COMMANDS`] and answers each with a [`StockReply`] on [`queues::COORDINATOR`].
//!
//! A batch of commands is handled in one database transaction, each command in a savepoint of its own where it
//! may take stock, so that a refused reservation gives back only what it took. The replies are published after
//! the commit and the batch is acked after the broker confirmed them. A crash or failure anywhere before the ack
//! redelivers the batch; the record in `saga_steps` then answers every command as before without changing stock
//! again, so the coordinator receives the replies it missed.

use anyhow::Context;
use async_trait::async_trait;
use diesel::result::QueryResult;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use platform::{
    amqp::{BatchHandler, Delivery, Outgoing, Publisher, Verdict},
    db::Pool,
};
use shared_contracts::{
    queues, CoordinatorMessage, DecodeError, Envelope, FailureReason, LineItem, SagaId, StockCommand, StockReply,
};
use tracing::Instrument;

use crate::{
    domain::{self, Line, RecordedStep, StepAction},
    store::{
        items::{self, StoreError},
        saga_steps,
    },
};

/// Replies sent, by kind, as `stock_saga_replies_total`.
const REPLIES_METRIC: &str = "stock_saga_replies_total";

/// Handles batches of stock commands: records the decisions, then publishes the replies.
pub struct StockWorker {
    pool: Pool,
    publisher: Publisher,
}

impl StockWorker {
    /// A worker that keeps its records through `pool` and replies through `publisher`.
    pub fn new(pool: Pool, publisher: Publisher) -> Self {
        Self { pool, publisher }
    }
}

/// What became of one delivery once the batch's transaction ran.
enum Outcome {
    /// Decided and recorded; this reply goes to the coordinator.
    Reply(Outgoing),
    /// Not a stock command this build can read.
    Unreadable(String),
}

#[async_trait]
impl BatchHandler for StockWorker {
    async fn handle(&self, batch: &[Delivery]) -> anyhow::Result<Vec<Verdict>> {
        let commands: Vec<_> = batch.iter().map(|d| Envelope::<StockCommand>::from_bytes(&d.body)).collect();
        let mut conn = self.pool.get().await.context("no database connection for the stock worker")?;
        let outcomes = conn
            .transaction::<_, diesel::result::Error, _>(async |conn| {
                // Lock every item this batch may take, in ID order, before any command runs: batches handled at
                // once then queue behind each other instead of deadlocking over items in opposite order.
                let mut wanted: Vec<&str> = commands
                    .iter()
                    .filter_map(|command| match command {
                        Ok(Envelope { body: StockCommand::Reserve { items }, .. }) => Some(items),
                        _ => None,
                    })
                    .flatten()
                    .map(|line| line.item_id.as_str())
                    .collect();
                wanted.sort_unstable();
                wanted.dedup();
                items::lock_in_order(conn, &wanted).await?;
                let mut outcomes = Vec::with_capacity(batch.len());
                for (command, delivery) in commands.iter().zip(batch) {
                    outcomes.push(process(conn, command, delivery).await?);
                }
                Ok(outcomes)
            })
            .await
            .context("recording a batch of stock commands")?;
        let replies: Vec<Outgoing> = outcomes
            .iter()
            .filter_map(|outcome| match outcome {
                Outcome::Reply(reply) => Some(reply.clone()),
                Outcome::Unreadable(_) => None,
            })
            .collect();
        self.publisher.publish(&replies).await.context("publishing stock replies")?;
        Ok(outcomes
            .into_iter()
            .map(|outcome| match outcome {
                Outcome::Reply(_) => Verdict::Done,
                Outcome::Unreadable(reason) => Verdict::DeadLetter(reason),
            })
            .collect())
    }
}

/// Applies one decoded delivery inside the batch's transaction.
async fn process(
    conn: &mut AsyncPgConnection,
    command: &Result<Envelope<StockCommand>, DecodeError>,
    delivery: &Delivery,
) -> QueryResult<Outcome> {
    let command = match command {
        Ok(command) => command,
        Err(e) => return Ok(Outcome::Unreadable(format!("not a stock command: {e}"))),
    };
    let span = tracing::info_span!("stock.command", saga_id = %command.saga_id, trace_id = tracing::field::Empty);
    platform::trace::continue_trace(&span, delivery.traceparent.as_deref());
    let reply = apply(conn, command.saga_id, &command.body).instrument(span.clone()).await?;
    span.in_scope(|| tracing::debug!(?command.body, ?reply, redelivered = delivery.redelivered, "stock command"));
    metrics::counter!(REPLIES_METRIC, "reply" => reply_kind(&reply)).increment(1);
    Ok(Outcome::Reply(to_coordinator(command.saga_id, reply).in_trace(platform::trace::traceparent(&span))))
}

/// Applies `command` for `saga_id`: locks the saga's record, lets the domain decide, carries the decision out and
/// records it. Returns the reply to send.
pub async fn apply(conn: &mut AsyncPgConnection, saga_id: SagaId, command: &StockCommand) -> QueryResult<StockReply> {
    let recorded = saga_steps::lock(conn, saga_id).await?;
    let requested: &[LineItem] = match command {
        StockCommand::Reserve { items } => items,
        StockCommand::Release => &[],
    };
    match domain::decide(recorded.as_ref(), command) {
        StepAction::Repeat(reply) => Ok(reply),
        StepAction::Reserve(lines) => reserve(conn, saga_id, lines, requested).await,
        StepAction::Reject(reason) => reject(conn, saga_id, requested, reason).await,
        StepAction::Restore(lines) => {
            items::put_back(conn, &lines).await?;
            saga_steps::mark_released(conn, saga_id).await?;
            Ok(StockReply::Released)
        }
        StepAction::Tombstone => {
            saga_steps::insert(conn, saga_id, &RecordedStep::Cancelled).await?;
            Ok(StockReply::Released)
        }
    }
}

/// Takes every line or none: the lines are taken in a savepoint, rolled back on the first refusal.
async fn reserve(
    conn: &mut AsyncPgConnection,
    saga_id: SagaId,
    lines: Vec<Line>,
    requested: &[LineItem],
) -> QueryResult<StockReply> {
    let taken = conn.transaction::<_, StoreError, _>(async |conn| items::take_all(conn, &lines).await).await;
    match taken {
        Ok(()) => {
            saga_steps::insert(conn, saga_id, &RecordedStep::Reserved { lines }).await?;
            Ok(StockReply::Reserved)
        }
        Err(StoreError::Refused(refusal)) => {
            reject(conn, saga_id, requested, domain::reservation_refused(refusal)).await
        }
        Err(StoreError::Database(e)) => Err(e),
    }
}

async fn reject(
    conn: &mut AsyncPgConnection,
    saga_id: SagaId,
    requested: &[LineItem],
    reason: FailureReason,
) -> QueryResult<StockReply> {
    let step = RecordedStep::Rejected { items: requested.to_vec(), reason: reason.clone() };
    saga_steps::insert(conn, saga_id, &step).await?;
    Ok(StockReply::Rejected { reason })
}

fn to_coordinator(saga_id: SagaId, reply: StockReply) -> Outgoing {
    Outgoing::envelope(queues::COORDINATOR, &Envelope::new(saga_id, CoordinatorMessage::Stock(reply)))
}

fn reply_kind(reply: &StockReply) -> &'static str {
    match reply {
        StockReply::Reserved => "reserved",
        StockReply::Rejected { .. } => "rejected",
        StockReply::Released => "released",
    }
}
