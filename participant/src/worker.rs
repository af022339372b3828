//! The saga worker every participant runs: it consumes its commands, applies each batch with [`apply_batch`], and
//! answers every command on [`queues::COORDINATOR`], continuing the sender's trace.
//!
//! The replies are published after the commit, all with one confirmed publish, and only then are the deliveries
//! acked. A crash or failure anywhere before the ack redelivers the batch; the records written by the first
//! attempt then answer every command as before without changing anything again, so the coordinator receives the
//! replies it missed. The poison-message policy is one for every participant: a delivery that does not decode
//! goes to the dead letters; a command that can never be applied (see [`NotApplied`](crate::NotApplied)) changes nothing, holds
//! back none of the others, is answered [`Reply::CannotApply`] so that its saga ends as needing attention, and
//! goes to the dead letters too.

use std::{marker::PhantomData, sync::Arc};

use anyhow::Context;
use async_trait::async_trait;
use platform::{
    amqp::{BatchHandler, Delivery, Outgoing, Publisher, Verdict},
    db::Pool,
};
use serde::{de::DeserializeOwned, Serialize};
use shared_contracts::{queues, CoordinatorMessage, Envelope, SagaId};
use tracing::Span;

use crate::{
    effect::Effect,
    plan::Outcome,
    protocol::{Command, Reply},
    storage::{apply_batch, Storage},
};

/// Commands handled, as `saga_participant_commands_total{participant, command, outcome}`: `command` is the
/// participant's word for the step or its compensation (or `undecodable`), `outcome` its word for the reply (or
/// `dead_letter` for an undecodable delivery).
const COMMANDS_METRIC: &str = "saga_participant_commands_total";

/// A participant's words for the protocol, used as metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Words {
    /// The step (`reserve`, `charge`).
    pub step: &'static str,
    /// Its compensation (`release`, `refund`).
    pub compensation: &'static str,
    /// The reply to an applied step (`reserved`, `charged`).
    pub applied: &'static str,
    /// The reply to a compensation (`released`, `refunded`).
    pub compensated: &'static str,
}

/// An effect as it speaks on the wire: its name, its words, and the mapping between the protocol and the
/// participant's messages in `shared-contracts`.
pub trait Participant: Effect {
    /// The participant's name (`stock`, `payment`): the `participant` label of its metrics and spans.
    const NAME: &'static str;
    /// Its words for the protocol.
    const WORDS: Words;
    /// The commands it consumes, as they travel.
    type WireCommand: Serialize + DeserializeOwned + Send + Sync;

    /// `wire` in the protocol's words.
    fn command(wire: Self::WireCommand) -> Command<Self::Request>;

    /// The message that carries `reply` to the coordinator.
    fn to_coordinator(reply: Reply) -> CoordinatorMessage;
}

/// The saga worker of the participant whose records and resources `S` keeps.
pub struct Worker<S> {
    /// Where the records and resources are.
    pool: Pool,
    /// Where the replies go.
    publisher: Arc<Publisher>,
    storage: PhantomData<fn() -> S>,
}

impl<S> Worker<S> {
    /// A worker applying commands to the database of `pool` and replying through `publisher`.
    pub fn new(pool: Pool, publisher: impl Into<Arc<Publisher>>) -> Self {
        Self { pool, publisher: publisher.into(), storage: PhantomData }
    }
}

/// A decoded command of the batch, and the span it is handled in.
struct Received<R> {
    saga_id: SagaId,
    command: Command<R>,
    span: Span,
}

#[async_trait]
impl<S: Storage> BatchHandler for Worker<S>
where
    S::Effect: Participant,
{
    async fn handle(&self, batch: &[Delivery]) -> anyhow::Result<Vec<Verdict>> {
        let name = <S::Effect as Participant>::NAME;
        let received: Vec<Result<Received<_>, String>> = batch.iter().map(receive::<S::Effect>).collect();
        let commands: Vec<_> = received.iter().flatten().map(|r| (r.saga_id, &r.command)).collect();
        let outcomes = {
            let mut conn = self.pool.get().await.with_context(|| format!("no database connection for {name}"))?;
            apply_batch::<S>(&mut conn, &commands).await.with_context(|| format!("recording {name} commands"))?
        };
        let mut outcomes = outcomes.into_iter();
        let mut replies = Vec::with_capacity(commands.len());
        let mut verdicts = Vec::with_capacity(batch.len());
        for (received, delivery) in received.iter().zip(batch) {
            let command = match received {
                Ok(command) => command,
                Err(reason) => {
                    verdicts.push(Verdict::DeadLetter(reason.clone()));
                    continue;
                }
            };
            let outcome = outcomes.next().context("the plan has an outcome for every command")?;
            let (reply, verdict) = conclude::<S::Effect>(command, outcome, delivery.redelivered);
            replies.push(reply);
            verdicts.push(verdict);
        }
        self.publisher.publish(&replies).await.with_context(|| format!("publishing {name} replies"))?;
        Ok(verdicts)
    }
}

/// Decodes `delivery` and opens its span, continuing the sender's trace; an undecodable one is to be
/// dead-lettered, for the reason returned.
fn receive<P: Participant>(delivery: &Delivery) -> Result<Received<P::Request>, String> {
    let envelope = Envelope::<P::WireCommand>::from_bytes(&delivery.body).map_err(|e| {
        count::<P>("undecodable", "dead_letter");
        format!("undecodable {} command: {e}", P::NAME)
    })?;
    let command = P::command(envelope.body);
    let span = tracing::info_span!(
        "saga.command",
        participant = P::NAME,
        saga_id = %envelope.saga_id,
        command = command_word::<P>(&command),
        trace_id = tracing::field::Empty,
    );
    platform::trace::continue_trace(&span, delivery.traceparent.as_deref());
    Ok(Received { saga_id: envelope.saga_id, command, span })
}

/// Turns what the batch made of `received` into its reply for the coordinator and its verdict: done, or, when it
/// can never be applied, answered [`Reply::CannotApply`] and dead-lettered.
fn conclude<P: Participant>(
    received: &Received<P::Request>,
    outcome: Outcome<P>,
    redelivered: bool,
) -> (Outgoing, Verdict) {
    let Received { saga_id, command, span } = received;
    span.in_scope(|| tracing::debug!(?command, ?outcome, redelivered, "saga command"));
    let (reply, verdict) = match outcome {
        Ok(reply) => (reply, Verdict::Done),
        Err(why) => {
            let verdict = Verdict::DeadLetter(format!("saga {saga_id}: {why}"));
            (Reply::CannotApply { problem: why.to_string() }, verdict)
        }
    };
    count::<P>(command_word::<P>(command), reply_word::<P>(&reply));
    let message = Envelope::new(*saga_id, P::to_coordinator(reply));
    let reply = Outgoing::envelope(queues::COORDINATOR, &message).in_trace(platform::trace::traceparent(span));
    (reply, verdict)
}

fn command_word<P: Participant>(command: &Command<P::Request>) -> &'static str {
    match command {
        Command::Step(_) => P::WORDS.step,
        Command::Compensate => P::WORDS.compensation,
    }
}

fn reply_word<P: Participant>(reply: &Reply) -> &'static str {
    match reply {
        Reply::Applied => P::WORDS.applied,
        Reply::Rejected { .. } => "rejected",
        Reply::Compensated => P::WORDS.compensated,
        Reply::CannotApply { .. } => "cannot_apply",
    }
}

fn count<P: Participant>(command: &'static str, outcome: &'static str) {
    metrics::counter!(COMMANDS_METRIC, "participant" => P::NAME, "command" => command, "outcome" => outcome)
        .increment(1);
}
