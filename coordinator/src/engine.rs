//! The small loop around the pure state machine: load and lock the sagas an input concerns through a
//! [`SagaStore`], apply the events with [`domain::transition`], write every new state and its history back, and
//! return the commands the transitions emitted, as [`SagaCommand`]s, for the caller to send once its unit of work
//! has committed. The message consumer, the retry timer and operator actions all go through here, so a transition
//! is recorded the same way whatever caused it. Nothing here knows queues or envelopes (that is
//! [`crate::messaging`]) or SQL (that is [`crate::store`]), so the loop is tested against an in-memory store.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use shared_contracts::{CheckoutRequest, SagaId};

use crate::{
    audit::Actor,
    domain::{self, Command, Event, NotAllowed, SagaState, Status},
    store::{NewSaga, SagaRecord, SagaStore, SagaUpdate, TransitionRecord},
};

/// When unanswered commands are sent again (after `first`, doubling per retry, at most `max` apart) and when a
/// saga stops waiting: a checkout still executing `deadline` after it began compensates, and a compensation
/// without progress for `compensation_deadline` needs attention.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// The wait before the first retry.
    pub first: Duration,
    /// The longest wait.
    pub max: Duration,
    /// How long a checkout may execute.
    pub deadline: Duration,
    /// How long a compensation may go without progress.
    pub compensation_deadline: Duration,
}

impl RetryPolicy {
    /// Milliseconds to wait after `retries` retries without progress.
    pub fn delay_ms(&self, retries: i32) -> i64 {
        let factor = 1u32 << retries.clamp(0, 16);
        self.first.saturating_mul(factor).min(self.max).as_millis() as i64
    }

    /// What the timer does to `saga`, whose retry time has come, at `now`: give up if its deadline has passed,
    /// else send the unanswered commands again.
    pub fn due_event(&self, saga: &SagaRecord, now: chrono::DateTime<chrono::Utc>) -> Event {
        let (since, allowed) = match saga.state.status() {
            Status::Executing => (saga.created_at, self.deadline),
            Status::Compensating | Status::Cancelling => (saga.updated_at, self.compensation_deadline),
            Status::Completed | Status::Failed | Status::Cancelled | Status::NeedsAttention => return Event::RetryDue,
        };
        let allowed = chrono::Duration::from_std(allowed).unwrap_or(chrono::Duration::MAX);
        if now - since >= allowed {
            Event::DeadlinePassed
        } else {
            Event::RetryDue
        }
    }
}

/// One command a saga emitted, with what the message that carries it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SagaCommand {
    /// The saga that sends it.
    pub saga_id: SagaId,
    /// The checkout the saga runs: the command's message carries parts of it (items, user, total, order).
    pub request: CheckoutRequest,
    /// What to do.
    pub command: Command,
    /// The trace the message continues.
    pub traceparent: Option<String>,
}

/// The inputs of one batch of messages: the sagas to start and the events for existing ones, in delivery order.
#[derive(Debug, Default)]
pub struct Batch {
    starts: Vec<NewSaga>,
    seen_starts: HashSet<SagaId>,
    events: Vec<(SagaId, Event, Option<String>)>,
    /// Cancels: events whose sagas are locked in a statement of their own, as they are rare.
    rare: Vec<(SagaId, Event, Option<String>)>,
}

impl Batch {
    /// order-svc asks for a saga to start; a second start of the same saga in the batch is a redelivery, dropped.
    pub fn start(&mut self, saga: NewSaga) {
        if self.seen_starts.insert(saga.id) {
            self.starts.push(saga);
        }
    }

    /// `event` happened to saga `id`; the commands it causes continue the trace `traceparent`.
    pub fn event(&mut self, id: SagaId, event: Event, traceparent: Option<String>) {
        match event {
            Event::Cancel => self.rare.push((id, event, traceparent)),
            Event::Stock { .. }
            | Event::Payment { .. }
            | Event::RetryDue
            | Event::DeadlinePassed
            | Event::Abort
            | Event::StartRepeated => self.events.push((id, event, traceparent)),
        }
    }
}

/// Why an operator's event was not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// There is no such saga.
    Missing,
    /// The saga's state does not allow it.
    NotAllowed(NotAllowed),
}

/// The saga loop, under one retry policy.
#[derive(Debug, Clone, Copy)]
pub struct Engine {
    policy: RetryPolicy,
}

impl Engine {
    /// An engine that schedules retries by `policy`.
    pub fn new(policy: RetryPolicy) -> Self {
        Self { policy }
    }

    /// Applies a batch of messages: creates the new sagas, locks the ones the events belong to, applies every
    /// event in delivery order and writes the outcome. A start whose saga exists already is order-svc asking
    /// again for an outcome it has not heard, so it becomes [`Event::StartRepeated`].
    pub async fn handle<S: SagaStore>(&self, store: &S, batch: Batch) -> Result<Vec<SagaCommand>, S::Error> {
        let Batch { starts, events, rare, .. } = batch;
        let start = domain::start();
        let mut ids: Vec<SagaId> = events.iter().map(|(id, _, _)| *id).collect();
        ids.sort();
        ids.dedup();
        // Pipelined where the store can: the statements still run in the order sent, only the wait between
        // them goes.
        let (inserted, locked) =
            futures::try_join!(store.insert_new(&starts, &start.state, self.policy.delay_ms(0)), store.lock(&ids))?;
        let inserted: HashSet<SagaId> = inserted.into_iter().collect();
        let mut effects = Effects::default();
        let mut repeated = rare;
        for saga in starts {
            if inserted.contains(&saga.id) {
                effects.started(saga);
            } else {
                repeated.push((saga.id, Event::StartRepeated, saga.traceparent));
            }
        }

        let mut sagas: HashMap<SagaId, SagaRecord> = locked.into_iter().map(|s| (s.id, s)).collect();
        // order-svc repeats a start only when it has not heard the outcome for a while, and cancels are rare, so
        // their sagas are locked in a statement of their own rather than on every batch's way.
        let mut unlocked: Vec<SagaId> =
            repeated.iter().map(|(id, _, _)| *id).filter(|id| !sagas.contains_key(id)).collect();
        unlocked.sort();
        unlocked.dedup();
        sagas.extend(store.lock(&unlocked).await?.into_iter().map(|s| (s.id, s)));

        for (id, event, traceparent) in events.iter().chain(&repeated) {
            match sagas.get_mut(id) {
                Some(saga) => effects.apply(saga, event, self.policy, traceparent.clone()),
                None => tracing::warn!(saga_id = %id, ?event, "reply for an unknown saga, ignored"),
            }
        }
        effects.persist(store).await
    }

    /// One pass of the retry timer at `now`: every saga whose retry time has come (up to `limit`) is sent its
    /// unanswered commands again, or gives up once past its deadline. Returns how many sagas were due.
    pub async fn retry_due<S: SagaStore>(
        &self,
        store: &S,
        limit: i64,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(usize, Vec<SagaCommand>), S::Error> {
        let mut sagas = store.lock_retry_due(limit).await?;
        let mut effects = Effects::default();
        for saga in &mut sagas {
            let event = self.policy.due_event(saga, now);
            tracing::info!(saga_id = %saga.id, retries = saga.retries, state = ?saga.state, ?event, "saga due");
            let traceparent = saga.traceparent.clone();
            effects.apply(saga, &event, self.policy, traceparent);
        }
        Ok((sagas.len(), effects.persist(store).await?))
    }

    /// Applies `actor`'s `event` to saga `id` if `allowed` lets its current state have it, and returns the
    /// state afterwards with the commands to send. The history lines it writes name the actor.
    pub async fn act<S: SagaStore>(
        &self,
        store: &S,
        id: SagaId,
        event: &Event,
        allowed: impl Fn(&SagaState) -> Result<(), NotAllowed> + Send,
        actor: &Actor,
    ) -> Result<Result<(SagaState, Vec<SagaCommand>), Refusal>, S::Error> {
        let Some(mut saga) = store.lock(&[id]).await?.pop() else { return Ok(Err(Refusal::Missing)) };
        if let Err(refusal) = allowed(&saga.state) {
            return Ok(Err(Refusal::NotAllowed(refusal)));
        }
        let mut effects = Effects::default();
        let traceparent = saga.traceparent.clone();
        effects.apply(&mut saga, event, self.policy, traceparent);
        for line in &mut effects.history {
            line.actor = Some(actor.clone());
        }
        let commands = effects.persist(store).await?;
        Ok(Ok((saga.state, commands)))
    }
}

/// Everything a batch changes, gathered before it is written.
#[derive(Default)]
struct Effects {
    updates: HashMap<SagaId, SagaUpdate>,
    history: Vec<TransitionRecord>,
    commands: Vec<SagaCommand>,
}

impl Effects {
    /// Records the start of `saga`, which the store just created in [`domain::start`]'s state.
    fn started(&mut self, saga: NewSaga) {
        let start = domain::start();
        self.history.push(TransitionRecord::of_start(saga.id, &start.state, &start.commands));
        self.emit(saga.id, &saga.request, start.commands, &saga.traceparent);
    }

    /// Applies `event` to `saga` (in memory; [`Effects::persist`] writes it); the commands it sends continue the
    /// trace `traceparent`. A duplicate that changes nothing and sends nothing leaves no trace.
    fn apply(&mut self, saga: &mut SagaRecord, event: &Event, policy: RetryPolicy, traceparent: Option<String>) {
        let from = saga.state.status();
        let next = domain::transition(&saga.state, event);
        let changed = next.state != saga.state;
        let retry = *event == Event::RetryDue;
        // A duplicate reply leaves no trace; a retry always reschedules (or clears) the timer.
        if !changed && next.commands.is_empty() && !retry {
            return;
        }
        if retry {
            saga.retries += 1;
            metrics::counter!("coordinator_saga_retries_total").increment(1);
        } else if changed {
            saga.retries = 0;
        }
        if changed {
            record_transition_metrics(saga, from, next.state.status());
        }
        if changed || !next.commands.is_empty() {
            self.history.push(TransitionRecord::of_event(saga.id, event, from, &next.state, &next.commands));
        }
        self.emit(saga.id, &saga.request, next.commands, &traceparent);
        saga.state = next.state;
        let retry_in_ms = saga.state.awaits_replies().then(|| policy.delay_ms(saga.retries));
        self.updates
            .insert(saga.id, SagaUpdate { id: saga.id, state: saga.state.clone(), retries: saga.retries, retry_in_ms });
    }

    fn emit(&mut self, saga_id: SagaId, request: &CheckoutRequest, commands: Vec<Command>, trace: &Option<String>) {
        self.commands.extend(commands.into_iter().map(|command| SagaCommand {
            saga_id,
            request: request.clone(),
            command,
            traceparent: trace.clone(),
        }));
    }

    /// Writes the new states and the history, and returns the commands to send once the unit of work has
    /// committed. Nothing records the messages themselves: if they are lost, the saga's retry time (for
    /// commands) or order-svc asking again (for outcomes) brings them back from the state written here.
    async fn persist<S: SagaStore>(self, store: &S) -> Result<Vec<SagaCommand>, S::Error> {
        let updates: Vec<SagaUpdate> = self.updates.into_values().collect();
        store.write(&updates, &self.history).await?;
        Ok(self.commands)
    }
}

/// Counts the transition, how long the saga spent in the state it leaves, and, when it ends, how long it took.
fn record_transition_metrics(saga: &mut SagaRecord, from: Status, to: Status) {
    let now = chrono::Utc::now();
    let seconds = |since: chrono::DateTime<chrono::Utc>| (now - since).num_microseconds().unwrap_or(0) as f64 / 1e6;
    metrics::counter!("coordinator_saga_transitions_total", "from" => from.as_str(), "to" => to.as_str()).increment(1);
    if from != to {
        metrics::histogram!("coordinator_saga_state_duration_seconds", "state" => from.as_str())
            .record(seconds(saga.updated_at));
        saga.updated_at = now;
    }
    if to.is_terminal() {
        metrics::histogram!("coordinator_saga_duration_seconds", "outcome" => to.as_str())
            .record(seconds(saga.created_at));
    }
}

#[cfg(test)]
mod tests;
