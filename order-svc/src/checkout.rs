//! A checkout request from start to answer. The request records the checkout intent (or joins the saga already
//! in flight for the order) together with the requests that arrive meanwhile, the dispatcher hands it to the
//! coordinator after the commit (and [`crate::resend`] again if no outcome comes back), and the request waits for
//! the saga's outcome, up to a deadline.
//!
//! The outcome reaches the database through the outcome consumer of whichever replica took it from the queue.
//! When that is this process, the consumer hands the committed outcome to the waiting requests through
//! [`OutcomeWaiters`] at once, so they answer without reading it back; when it is another replica, the request
//! still sees the outcome by re-reading the checkout's row every half second (`RECHECK_INTERVAL`). A waiter
//! registers before it reads the row, so an outcome recorded in between still reaches it. A request that has just
//! started a saga registers as soon as the intake answers it, which the intake does before it hands the start to
//! the dispatcher; were the whole saga ever faster than that, the request would see the outcome at its first
//! re-read.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use platform::{db::Pool, dispatch::Dispatcher};
use shared_contracts::{FailureReason, SagaId};
use tokio::{
    sync::{mpsc, oneshot, Mutex as AsyncMutex},
    time::Instant,
};

use crate::{
    resend::ResendPolicy,
    store::{
        checkouts::{self, Begun},
        StoreError,
    },
};

pub use crate::store::checkouts::CheckoutState;

/// How often a waiting request re-reads its checkout, for outcomes consumed by another replica.
const RECHECK_INTERVAL: Duration = Duration::from_millis(500);
/// The most checkout starts that share one transaction.
const MAX_INTAKE_BATCH: usize = 256;
/// Transactions of checkout starts that may run at once.
const INTAKE_WORKERS: usize = 1;

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
    waiters: Arc<OutcomeWaiters>,
    timeout: Duration,
    intake: mpsc::Sender<Start>,
}

/// One request to begin a checkout.
struct Start {
    order_id: String,
    /// The request's trace context, which the saga continues.
    traceparent: Option<String>,
    answer: oneshot::Sender<Result<Begun, StoreError>>,
}

impl Checkouts {
    /// Checkouts on `pool` whose messages `dispatcher` publishes, due to be sent again as `resend` says, woken by
    /// `waiters`, each waiting at most `timeout`. Starts the intake tasks, so it must be called within the runtime.
    pub fn new(
        pool: Pool,
        dispatcher: Dispatcher,
        resend: ResendPolicy,
        waiters: Arc<OutcomeWaiters>,
        timeout: Duration,
    ) -> Self {
        let (intake, starts) = mpsc::channel(4 * MAX_INTAKE_BATCH);
        let starts = Arc::new(AsyncMutex::new(starts));
        for _ in 0..INTAKE_WORKERS {
            tokio::spawn(run_intake(pool.clone(), dispatcher.clone(), resend, starts.clone()));
        }
        Self { pool, waiters, timeout, intake }
    }

    /// Begins the checkout of `order_id` in a transaction shared with the other requests that arrive meanwhile.
    async fn begin(&self, order_id: &str) -> Result<Begun, StoreError> {
        let (answer, answered) = oneshot::channel();
        let stopped = || StoreError::Shared("the checkout intake has stopped".into());
        let traceparent = platform::trace::traceparent(&tracing::Span::current());
        let start = Start { order_id: order_id.to_owned(), traceparent, answer };
        self.intake.send(start).await.map_err(|_| stopped())?;
        answered.await.map_err(|_| stopped())?
    }

    /// Checks out `order_id` and waits for the outcome.
    pub async fn check_out(&self, order_id: &str) -> Result<CheckoutAnswer, StoreError> {
        let started = std::time::Instant::now();
        let begun = self.begin(order_id).await?;
        let answer = match begun {
            Begun::AlreadyPaid => CheckoutAnswer::Paid,
            Begun::Started(saga_id) => {
                // Nobody can have reported on this saga yet: the intake hands its start to the dispatcher only
                // after answering this request.
                let registration = self.waiters.register(saga_id);
                self.await_outcome(saga_id, Some(registration)).await?
            }
            Begun::Joined(saga_id) => self.await_outcome(saga_id, None).await?,
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

    /// Waits for the outcome of `saga_id`. `registered` is a registration made before the saga could have
    /// ended, whose first wait needs no read of the row.
    async fn await_outcome(
        &self,
        saga_id: SagaId,
        mut registered: Option<Registration<'_>>,
    ) -> Result<CheckoutAnswer, StoreError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let mut registration = match registered.take() {
                Some(registration) => registration,
                None => {
                    let registration = self.waiters.register(saga_id);
                    let state = checkouts::state(&mut *self.pool.get().await?, saga_id).await?;
                    match state {
                        None => return Ok(CheckoutAnswer::Discarded),
                        Some(CheckoutState::Pending) => registration,
                        Some(settled) => return Ok(answer(settled)),
                    }
                }
            };
            let now = Instant::now();
            if now >= deadline {
                return Ok(CheckoutAnswer::StillRunning);
            }
            // Handed the outcome: done. Timed out or sender gone: read the row again.
            let woken = tokio::time::timeout_at(deadline.min(now + RECHECK_INTERVAL), &mut registration.receiver).await;
            if let Ok(Ok(settled)) = woken {
                return Ok(answer(settled));
            }
        }
    }
}

fn answer(settled: CheckoutState) -> CheckoutAnswer {
    match settled {
        CheckoutState::Paid => CheckoutAnswer::Paid,
        CheckoutState::Failed(reason) => CheckoutAnswer::Failed(reason),
        // Only settled states are ever handed to a waiter or returned above.
        CheckoutState::Pending => CheckoutAnswer::StillRunning,
    }
}

/// Takes the checkout starts waiting in `starts` in batches and begins each batch in one transaction, so that
/// concurrent checkouts share the locks, inserts and commit instead of paying for them one by one. Under low
/// load a batch is a single request and costs what it would alone.
async fn run_intake(
    pool: Pool,
    dispatcher: Dispatcher,
    resend: ResendPolicy,
    starts: Arc<AsyncMutex<mpsc::Receiver<Start>>>,
) {
    loop {
        let batch = {
            let mut starts = starts.lock().await;
            let Some(first) = starts.recv().await else { return };
            let mut batch = vec![first];
            while batch.len() < MAX_INTAKE_BATCH {
                match starts.try_recv() {
                    Ok(start) => batch.push(start),
                    Err(_) => break,
                }
            }
            batch
        };
        let order_ids: Vec<String> = batch.iter().map(|start| start.order_id.clone()).collect();
        let traceparents: Vec<Option<String>> = batch.iter().map(|start| start.traceparent.clone()).collect();
        let results = match pool.get().await {
            Ok(mut conn) => checkouts::begin_many(&mut conn, &order_ids, &traceparents, resend.first_ms()).await,
            Err(e) => Err(e.into()),
        };
        match results {
            Ok((results, messages)) => {
                for (start, result) in batch.into_iter().zip(results) {
                    let _ = start.answer.send(result);
                }
                dispatcher.send(messages).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, size = batch.len(), "beginning a batch of checkouts failed");
                let message = e.to_string();
                for start in batch {
                    let _ = start.answer.send(Err(StoreError::Shared(message.clone())));
                }
            }
        }
    }
}

/// The requests of this process waiting for a saga's outcome, woken by the outcome consumer.
#[derive(Debug, Default)]
pub struct OutcomeWaiters {
    waiting: Mutex<HashMap<SagaId, Vec<oneshot::Sender<CheckoutState>>>>,
}

/// One waiting request; unregisters itself when dropped, so requests that time out leave nothing behind.
struct Registration<'a> {
    waiters: &'a OutcomeWaiters,
    saga_id: SagaId,
    receiver: oneshot::Receiver<CheckoutState>,
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

    fn register(&self, saga_id: SagaId) -> Registration<'_> {
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
        waiters.wake(saga, &CheckoutState::Paid);
        assert_eq!((&mut first.receiver).await, Ok(CheckoutState::Paid));
        assert_eq!((&mut second.receiver).await, Ok(CheckoutState::Paid));
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
