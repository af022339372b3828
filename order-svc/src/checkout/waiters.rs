//! The requests of this process waiting for a saga's outcome, and the outcome consumer handing it to them.

use std::{collections::HashMap, sync::Mutex};

use shared_contracts::SagaId;
use tokio::sync::oneshot;

use crate::domain::CheckoutState;

/// The requests of this process waiting for a saga's outcome, woken by the outcome consumer.
#[derive(Debug, Default)]
pub struct OutcomeWaiters {
    waiting: Mutex<HashMap<SagaId, Vec<oneshot::Sender<CheckoutState>>>>,
}

/// One waiting request; unregisters itself when dropped, so requests that time out leave nothing behind.
pub(super) struct Registration<'a> {
    waiters: &'a OutcomeWaiters,
    saga_id: SagaId,
    pub(super) receiver: oneshot::Receiver<CheckoutState>,
}

impl OutcomeWaiters {
    /// Hands `settled`, the committed outcome of `saga_id`, to every request of this process waiting for it.
    pub fn wake(&self, saga_id: SagaId, settled: &CheckoutState) {
        let senders = self.lock().remove(&saga_id).unwrap_or_default();
        for sender in senders {
            let _ = sender.send(settled.clone());
        }
    }

    /// How many sagas have requests waiting (for tests and metrics).
    pub fn sagas_waited_for(&self) -> usize {
        self.lock().len()
    }

    pub(super) fn register(&self, saga_id: SagaId) -> Registration<'_> {
        let (sender, receiver) = oneshot::channel();
        self.lock().entry(saga_id).or_default().push(sender);
        Registration { waiters: self, saga_id, receiver }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SagaId, Vec<oneshot::Sender<CheckoutState>>>> {
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
        waiters.wake(saga, &CheckoutState::Cancelled);
        assert_eq!((&mut first.receiver).await, Ok(CheckoutState::Cancelled));
        assert_eq!((&mut second.receiver).await, Ok(CheckoutState::Cancelled));
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
