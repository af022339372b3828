//! A checkout request from start to answer, and likewise a cancellation request (see [`cancel`]). The request
//! records the checkout intent (or joins the saga already in flight for the order) together with the requests
//! that arrive meanwhile, the dispatcher hands it to the coordinator after the commit (and [`crate::resend`] again
//! if no outcome comes back), and the request waits for the saga's outcome, up to a deadline.
//!
//! The outcome reaches the database through the outcome consumer of whichever replica took it from the queue.
//! When that is this process, the consumer hands the committed state of the checkout to the waiting requests
//! through [`OutcomeWaiters`] at once, so they answer without reading it back; when it is another replica, the
//! request still sees the outcome by re-reading the checkout's row every half second (`RECHECK_INTERVAL`). A
//! waiter registers before it reads the row, so an outcome recorded in between still reaches it. A request that
//! has just started a saga registers as soon as the intake answers it, which the intake does before it hands the
//! start to the dispatcher; were the whole saga ever faster than that, the request would see the outcome at its
//! first re-read.

mod cancel;
mod waiters;

use std::{fmt, sync::Arc, time::Duration};

use platform::{db::Pool, dispatch::Dispatcher};
use shared_contracts::{FailureReason, SagaId};
use tokio::{
    sync::{mpsc, oneshot, Mutex as AsyncMutex},
    time::Instant,
};

use self::waiters::Registration;
pub use self::{cancel::CancelAnswer, waiters::OutcomeWaiters};
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
    /// The saga could neither complete nor undo what it did; the order is unpaid.
    NeedsAttention(Stuck),
    /// The deadline passed with the saga still running; it finishes on its own.
    StillRunning,
    /// The checkout's record vanished while waiting: a `batch_init` replaced the order.
    Discarded,
}

/// A saga that could neither complete nor be fully undone, which an operator must repair through the
/// coordinator's admin endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stuck {
    /// The saga.
    pub saga_id: SagaId,
    /// What the coordinator reported.
    pub problem: String,
}

impl fmt::Display for Stuck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "checkout {} could neither complete nor be fully undone: {}; an operator must repair it",
            self.saga_id, self.problem
        )
    }
}

/// How waiting for a saga ended.
enum Waited<T> {
    /// The checkout reached a state that answers the request.
    Ended(T),
    /// The deadline passed first.
    StillRunning,
    /// The checkout's row is gone.
    Discarded,
}

/// Carries out checkout and cancellation requests.
pub struct Checkouts {
    pool: Pool,
    dispatcher: Dispatcher,
    resend: ResendPolicy,
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
        Self { pool, dispatcher, resend, waiters, timeout, intake }
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
        let waited = match begun {
            Begun::AlreadyPaid => Waited::Ended(CheckoutAnswer::Paid),
            Begun::Started(saga_id) => {
                // Nobody can have reported on this saga yet: the intake hands its start to the dispatcher only
                // after answering this request.
                let registration = self.waiters.register(saga_id);
                self.wait_for(saga_id, Some(registration), |state| checkout_ended(saga_id, state)).await?
            }
            Begun::Joined(saga_id) => self.wait_for(saga_id, None, |state| checkout_ended(saga_id, state)).await?,
        };
        let answer = match waited {
            Waited::Ended(answer) => answer,
            Waited::StillRunning => CheckoutAnswer::StillRunning,
            Waited::Discarded => CheckoutAnswer::Discarded,
        };
        let outcome = match &answer {
            CheckoutAnswer::Paid => "paid",
            CheckoutAnswer::Failed(_) => "failed",
            CheckoutAnswer::NeedsAttention(_) => "needs_attention",
            CheckoutAnswer::StillRunning => "timeout",
            CheckoutAnswer::Discarded => "discarded",
        };
        metrics::counter!("order_checkouts_total", "outcome" => outcome).increment(1);
        metrics::histogram!("order_checkout_duration_seconds").record(started.elapsed().as_secs_f64());
        Ok(answer)
    }

    /// Waits until the checkout of `saga_id` is in a state that `ended` turns into an answer. `registered` is a
    /// registration made before the saga could have moved, whose first wait needs no read of the row.
    async fn wait_for<T>(
        &self,
        saga_id: SagaId,
        mut registered: Option<Registration<'_>>,
        ended: impl Fn(CheckoutState) -> Option<T>,
    ) -> Result<Waited<T>, StoreError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let mut registration = match registered.take() {
                Some(registration) => registration,
                None => {
                    let registration = self.waiters.register(saga_id);
                    match checkouts::state(&mut *self.pool.get().await?, saga_id).await? {
                        None => return Ok(Waited::Discarded),
                        Some(state) => match ended(state) {
                            Some(answer) => return Ok(Waited::Ended(answer)),
                            None => registration,
                        },
                    }
                }
            };
            let now = Instant::now();
            if now >= deadline {
                return Ok(Waited::StillRunning);
            }
            // Handed a state that answers: done. Anything else, timed out or sender gone: read the row again.
            let woken = tokio::time::timeout_at(deadline.min(now + RECHECK_INTERVAL), &mut registration.receiver).await;
            if let Ok(Ok(state)) = woken {
                if let Some(answer) = ended(state) {
                    return Ok(Waited::Ended(answer));
                }
            }
        }
    }
}

/// The answer a checkout of `saga_id` in `state` gives a checkout request, if it is settled. A checkout that
/// was paid and has been cancelled since, or is being cancelled, was paid when the request's saga ended.
fn checkout_ended(saga_id: SagaId, state: CheckoutState) -> Option<CheckoutAnswer> {
    match state {
        CheckoutState::Pending => None,
        CheckoutState::Paid { .. } | CheckoutState::Cancelling | CheckoutState::Cancelled => Some(CheckoutAnswer::Paid),
        CheckoutState::Failed(reason) => Some(CheckoutAnswer::Failed(reason)),
        CheckoutState::NeedsAttention { problem } => Some(CheckoutAnswer::NeedsAttention(Stuck { saga_id, problem })),
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
