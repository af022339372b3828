//! The small loop around the pure state machine: apply events to locked sagas in memory, then persist every new
//! state and its history in the caller's transaction, and return the messages its commands become, for the caller
//! to hand to a [`platform::dispatch::Dispatcher`] once it has committed. The message consumer, the retry timer and
//! operator actions all go through here, so a transition is recorded the same way whatever caused it.

use std::{collections::HashMap, time::Duration};

use diesel::QueryResult;
use diesel_async::AsyncPgConnection;
use platform::amqp::Outgoing;
use shared_contracts::{CheckoutRequest, SagaId};

use crate::{
    domain::{self, Event, Status},
    messaging::encode,
    store::{self, SagaRecord, SagaUpdate, TransitionRecord},
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

/// Everything a batch changes, gathered before it is written.
#[derive(Default)]
pub struct Effects {
    updates: HashMap<SagaId, SagaUpdate>,
    history: Vec<TransitionRecord>,
    outgoing: Vec<Outgoing>,
}

impl Effects {
    /// Records the start of a saga that [`store::insert_new`] just created in [`domain::start`]'s state; its
    /// first commands continue the trace `traceparent`.
    pub fn started(&mut self, id: SagaId, request: &CheckoutRequest, traceparent: Option<String>) {
        let start = domain::start();
        self.history.push(TransitionRecord::of_start(id, &start.state, &start.commands));
        self.outgoing
            .extend(start.commands.iter().map(|command| encode(id, request, command).in_trace(traceparent.clone())));
    }

    /// Applies `event` to `saga` (in memory; the caller persists); the commands it sends continue the trace
    /// `traceparent`. A duplicate that changes nothing and sends nothing leaves no trace.
    pub fn apply(&mut self, saga: &mut SagaRecord, event: &Event, policy: RetryPolicy, traceparent: Option<String>) {
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
        self.outgoing.extend(
            next.commands.iter().map(|command| encode(saga.id, &saga.request, command).in_trace(traceparent.clone())),
        );
        saga.state = next.state;
        let retry_in_ms = saga.state.awaits_replies().then(|| policy.delay_ms(saga.retries));
        self.updates
            .insert(saga.id, SagaUpdate { id: saga.id, state: saga.state.clone(), retries: saga.retries, retry_in_ms });
    }

    /// Writes the new states and the history, the two statements pipelined (they touch different tables), and
    /// returns the messages to send once the transaction has committed. Nothing records the messages themselves:
    /// if they are lost, the saga's retry time (for commands) or order-svc asking again (for outcomes) brings
    /// them back from the state written here.
    pub async fn persist(self, conn: &AsyncPgConnection) -> QueryResult<Vec<Outgoing>> {
        let updates: Vec<SagaUpdate> = self.updates.into_values().collect();
        futures::try_join!(store::update(conn, &updates), store::record_transitions(conn, &self.history))?;
        Ok(self.outgoing)
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
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            first: Duration::from_millis(500),
            max: Duration::from_secs(4),
            deadline: Duration::from_secs(20),
            compensation_deadline: Duration::from_secs(300),
        }
    }

    fn saga(state: domain::SagaState, age_secs: i64, unchanged_secs: i64) -> SagaRecord {
        let now = chrono::Utc::now();
        SagaRecord {
            id: SagaId::new(),
            request: CheckoutRequest { order_id: "1".into(), user_id: "2".into(), items: Vec::new(), total: 3 },
            state,
            version: 1,
            retries: 0,
            created_at: now - chrono::Duration::seconds(age_secs),
            updated_at: now - chrono::Duration::seconds(unchanged_secs),
            traceparent: None,
        }
    }

    #[test]
    fn a_checkout_past_its_deadline_gives_up_and_one_within_it_is_retried() {
        let executing = domain::start().state;
        let now = chrono::Utc::now();
        assert_eq!(policy().due_event(&saga(executing.clone(), 21, 1), now), Event::DeadlinePassed);
        assert_eq!(policy().due_event(&saga(executing, 19, 19), now), Event::RetryDue);
    }

    #[test]
    fn a_compensation_is_given_its_own_deadline_from_its_last_progress() {
        let compensating = domain::SagaState::Compensating {
            stock: domain::Undo::Pending,
            payment: domain::Undo::Done,
            reason: shared_contracts::FailureReason::TimedOut,
        };
        let now = chrono::Utc::now();
        assert_eq!(policy().due_event(&saga(compensating.clone(), 1000, 299), now), Event::RetryDue);
        assert_eq!(policy().due_event(&saga(compensating, 1000, 301), now), Event::DeadlinePassed);
    }

    #[test]
    fn retry_delay_doubles_up_to_the_cap() {
        let policy = policy();
        let delays: Vec<i64> = (0..6).map(|r| policy.delay_ms(r)).collect();
        assert_eq!(delays, vec![500, 1000, 2000, 4000, 4000, 4000]);
        assert_eq!(policy.delay_ms(i32::MAX), 4000);
    }
}
