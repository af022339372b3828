//! A checkout request from start to answer. The request records the checkout intent (or joins the saga already
//! in flight for the order), wakes the outbox relay that hands it to the coordinator, and then waits for the
//! saga's outcome, up to a deadline.
//!
//! The outcome reaches the database through the outcome consumer of whichever replica took it from the queue.
//! When that is this process, the consumer wakes the waiting requests through [`OutcomeWaiters`] at once; when it
//! is another replica, the request still sees the outcome by re-reading the checkout's row every half second
//! (`RECHECK_INTERVAL`). A waiter registers before it reads the row, so an outcome recorded between the read and
//! the wait still wakes it.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use platform::{db::Pool, outbox::Relay};
use shared_contracts::{FailureReason, SagaId};
use tokio::{sync::oneshot, time::Instant};

use crate::store::{
    checkouts::{self, Begun, CheckoutState},
    StoreError,
};

/// How often a waiting request re-reads its checkout, for outcomes consumed by another replica.
const RECHECK_INTERVAL: Duration = Duration::from_millis(500);

/// The answer to a checkout request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckoutAnswer {
    /// The order is paid (now, or it was already).
    Paid,
    /// The saga failed: nothing was taken or charged.
    Failed(FailureReason),
    /// The deadline passed with the saga still running; it finishes on its own.
    StillRunning,
    /// The checkout's record vanished while waiting: a `batch_init` replaced the order.
    Discarded,
}

/// Carries out checkout requests.
pub struct Checkouts {
    pool: Pool,
    relay: Relay,
    waiters: Arc<OutcomeWaiters>,
    timeout: Duration,
}

impl Checkouts {
    /// Checkouts on `pool` whose messages `relay` publishes, woken by `waiters`, each waiting at most `timeout`.
    pub fn new(pool: Pool, relay: Relay, waiters: Arc<OutcomeWaiters>, timeout: Duration) -> Self {
        Self { pool, relay, waiters, timeout }
    }

    /// Checks out `order_id` and waits for the outcome.
    pub async fn check_out(&self, order_id: &str) -> Result<CheckoutAnswer, StoreError> {
        let started = std::time::Instant::now();
        let begun = checkouts::begin(&mut *self.pool.get().await?, order_id).await?;
        let answer = match begun {
            Begun::AlreadyPaid => CheckoutAnswer::Paid,
            Begun::Started(saga_id) => {
                self.relay.wake();
                self.await_outcome(saga_id).await?
            }
            Begun::Joined(saga_id) => self.await_outcome(saga_id).await?,
        };
        let outcome = match &answer {
            CheckoutAnswer::Paid => "paid",
            CheckoutAnswer::Failed(_) => "failed",
            CheckoutAnswer::StillRunning => "timeout",
            CheckoutAnswer::Discarded => "discarded",
        };
        metrics::counter!("order_checkouts_total", "outcome" => outcome).increment(1);
        metrics::histogram!("order_checkout_duration_seconds").record(started.elapsed().as_secs_f64());
        Ok(answer)
    }

    async fn await_outcome(&self, saga_id: SagaId) -> Result<CheckoutAnswer, StoreError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let mut registration = self.waiters.register(saga_id);
            let state = checkouts::state(&mut *self.pool.get().await?, saga_id).await?;
            match state {
                None => return Ok(CheckoutAnswer::Discarded),
                Some(CheckoutState::Paid) => return Ok(CheckoutAnswer::Paid),
                Some(CheckoutState::Failed(reason)) => return Ok(CheckoutAnswer::Failed(reason)),
                Some(CheckoutState::Pending) => {}
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(CheckoutAnswer::StillRunning);
            }
            // Woken, timed out or sender gone: in every case the row is read again.
            let _ = tokio::time::timeout_at(deadline.min(now + RECHECK_INTERVAL), &mut registration.receiver).await;
        }
    }
}

/// The requests of this process waiting for a saga's outcome, woken by the outcome consumer.
#[derive(Debug, Default)]
pub struct OutcomeWaiters {
    waiting: Mutex<HashMap<SagaId, Vec<oneshot::Sender<()>>>>,
}

/// One waiting request; unregisters itself when dropped, so requests that time out leave nothing behind.
struct Registration<'a> {
    waiters: &'a OutcomeWaiters,
    saga_id: SagaId,
    receiver: oneshot::Receiver<()>,
}

impl OutcomeWaiters {
    /// Wakes every request of this process waiting for `saga_id`, once its outcome is committed.
    pub fn wake(&self, saga_id: SagaId) {
        let senders = self.lock().remove(&saga_id).unwrap_or_default();
        for sender in senders {
            let _ = sender.send(());
        }
    }

    /// How many sagas have requests waiting (for tests and metrics).
    pub fn sagas_waited_for(&self) -> usize {
        self.lock().len()
    }

    fn register(&self, saga_id: SagaId) -> Registration<'_> {
        let (sender, receiver) = oneshot::channel();
        self.lock().entry(saga_id).or_default().push(sender);
        Registration { waiters: self, saga_id, receiver }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SagaId, Vec<oneshot::Sender<()>>>> {
        // The map stays consistent even if a holder panicked: every operation on it is a single insert or remove.
        self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.receiver.close();
        let mut waiting = self.waiters.lock();
        if let Some(senders) = waiting.get_mut(&self.saga_id) {
            senders.retain(|sender| !sender.is_closed());
            if senders.is_empty() {
                waiting.remove(&self.saga_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wake_reaches_every_waiter_of_its_saga_only() {
        let waiters = OutcomeWaiters::default();
        let saga = SagaId::new();
        let other = SagaId::new();
        let mut first = waiters.register(saga);
        let mut second = waiters.register(saga);
        let mut unrelated = waiters.register(other);
        waiters.wake(saga);
        assert_eq!((&mut first.receiver).await, Ok(()));
        assert_eq!((&mut second.receiver).await, Ok(()));
        assert!(unrelated.receiver.try_recv().is_err());
        assert_eq!(waiters.sagas_waited_for(), 1);
    }

    #[test]
    fn a_waiter_that_gives_up_leaves_nothing_behind() {
        let waiters = OutcomeWaiters::default();
        let saga = SagaId::new();
        let staying = waiters.register(saga);
        drop(waiters.register(saga));
        assert_eq!(waiters.lock().get(&saga).map(Vec::len), Some(1));
        drop(staying);
        assert_eq!(waiters.sagas_waited_for(), 0);
    }
}
