//! The saga worker: stock-svc's part in the checkout saga. It consumes [`StockCommand`]s from
//! [`queues::STOCK_COMMANDS`] and answers each with a [`StockReply`] on [`queues::COORDINATOR`].
//!
//! A batch of commands is handled in one database transaction of five statements in three round trips (see
//! [`apply_batch`]): the rows it needs are locked and read, the commands are applied to them in memory one after
//! the other, and what changed is written back. The replies are published after the commit and the batch is acked
//! after the broker confirmed them. A crash or failure anywhere before the ack redelivers the batch; the record in
//! `saga_steps` then answers every command as before without changing stock again, so the coordinator receives the
//! replies it missed. A command that can never be applied (a release whose item is gone, or full) holds back
//! none of the others: it changes nothing, the coordinator gets [`StockReply::CannotApply`], and the delivery goes
//! to the dead letters.

use anyhow::Context;
use async_trait::async_trait;
use diesel::QueryResult;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use platform::{
    amqp::{BatchHandler, Delivery, Outgoing, Publisher, Verdict},
    db::Pool,
};
use shared_contracts::{queues, CoordinatorMessage, Envelope, SagaId, StockCommand, StockReply};

use crate::{
    domain::{self, Unprocessable},
    store::{items, saga_steps},
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

#[async_trait]
impl BatchHandler for StockWorker {
    async fn handle(&self, batch: &[Delivery]) -> anyhow::Result<Vec<Verdict>> {
        let decoded: Vec<_> = batch.iter().map(|d| Envelope::<StockCommand>::from_bytes(&d.body)).collect();
        let commands: Vec<(SagaId, &StockCommand)> =
            decoded.iter().flatten().map(|command| (command.saga_id, &command.body)).collect();
        let mut conn = self.pool.get().await.context("no database connection for the stock worker")?;
        let mut outcomes = conn
            .transaction::<_, diesel::result::Error, _>(async |conn| apply_batch(conn, &commands).await)
            .await
            .context("recording a batch of stock commands")?
            .into_iter();
        let mut outgoing = Vec::with_capacity(commands.len());
        let mut verdicts = Vec::with_capacity(batch.len());
        for (command, delivery) in decoded.iter().zip(batch) {
            let command = match command {
                Ok(command) => command,
                Err(e) => {
                    verdicts.push(Verdict::DeadLetter(format!("not a stock command: {e}")));
                    continue;
                }
            };
            let outcome = outcomes.next().context("the plan has an outcome for every command")?;
            let span =
                tracing::info_span!("stock.command", saga_id = %command.saga_id, trace_id = tracing::field::Empty);
            platform::trace::continue_trace(&span, delivery.traceparent.as_deref());
            span.in_scope(
                || tracing::debug!(?command.body, ?outcome, redelivered = delivery.redelivered, "stock command"),
            );
            let (reply, verdict) = match outcome {
                Ok(reply) => (reply, Verdict::Done),
                // The coordinator is told, and the command kept for operators: it can never be applied.
                Err(problem) => (
                    StockReply::CannotApply { problem: problem.to_string() },
                    Verdict::DeadLetter(format!("saga {}: {problem}", command.saga_id)),
                ),
            };
            metrics::counter!(REPLIES_METRIC, "reply" => reply_kind(&reply)).increment(1);
            outgoing.push(to_coordinator(command.saga_id, reply).in_trace(platform::trace::traceparent(&span)));
            verdicts.push(verdict);
        }
        self.publisher.publish(&outgoing).await.context("publishing stock replies")?;
        Ok(verdicts)
    }
}

/// Applies `commands`, in order, inside the caller's transaction and returns one outcome per command: its reply,
/// or why it can never be applied (it then changed nothing). Whatever the batch's size this takes five
/// statements in three round trips: lock the sagas' records, lock the items, then write the new holdings, the new
/// records and the changed records together, all worked out in memory by [`domain::plan_batch`] in between.
pub async fn apply_batch(
    conn: &mut AsyncPgConnection,
    commands: &[(SagaId, &StockCommand)],
) -> QueryResult<Vec<Result<StockReply, Unprocessable>>> {
    let mut saga_ids: Vec<SagaId> = commands.iter().map(|(saga_id, _)| *saga_id).collect();
    saga_ids.sort_unstable();
    saga_ids.dedup();
    let recorded = saga_steps::lock_all(conn, &saga_ids).await?;
    let holdings = items::lock_holdings(conn, &domain::items_to_lock(&recorded, commands)).await?;
    let plan = domain::plan_batch(&recorded, &holdings, commands);
    // The three writes are pipelined: one round trip.
    futures::try_join!(
        items::set_holdings(conn, &plan.stock),
        saga_steps::insert_all(conn, &plan.inserted),
        saga_steps::update_all(conn, &plan.updated),
    )?;
    Ok(plan.outcomes)
}

fn to_coordinator(saga_id: SagaId, reply: StockReply) -> Outgoing {
    Outgoing::envelope(queues::COORDINATOR, &Envelope::new(saga_id, CoordinatorMessage::Stock(reply)))
}

fn reply_kind(reply: &StockReply) -> &'static str {
    match reply {
        StockReply::Reserved => "reserved",
        StockReply::Rejected { .. } => "rejected",
        StockReply::Released => "released",
        StockReply::CannotApply { .. } => "cannot_apply",
    }
}
