//! A checkout request from start to answer, and likewise a cancellation request (see [`cancel`]). The request
//! records the checkout intent (or joins the saga already in flight for the order) together with the requests
//! that arrive meanwhile (see [`intake`]), the dispatcher hands it to the coordinator after the commit (and
//! [`crate::resend`] again if no outcome comes back), and the request waits for the saga's outcome, up to a
//! deadline. What the request does and what a checkout's state answers is decided in [`crate::domain`]; the
//! messages are built in [`crate::messaging`].
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
mod intake;
mod waiters;

use std::{future::Future, sync::Arc, time::Duration};

use platform::{db::Pool, dispatch::Dispatcher};
use shared_contracts::SagaId;
use tokio::time::Instant;

pub use self::{intake::CheckoutError, waiters::OutcomeWaiters};
use self::{intake::Intake, waiters::Registration};
use crate::{
    domain::{Begun, CheckoutAnswer, CheckoutState},
    resend::ResendPolicy,
    store::{checkouts, StoreError},
};

/// How often a waiting request re-reads its checkout, for outcomes consumed by another replica.
const RECHECK_INTERVAL: Duration = Duration::from_millis(500);

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
    intake: Intake,
}

impl Checkouts {
    /// Checkouts on `pool` whose messages `dispatcher` publishes, due to be sent again as `resend` says, woken by
    /// `waiters`, each waiting at most `timeout`; and the work of their intake, which the caller runs in the
    /// background for as long as checkout requests may come (see [`intake`]).
    pub fn new(
        pool: Pool,
        dispatcher: Dispatcher,
        resend: ResendPolicy,
        waiters: Arc<OutcomeWaiters>,
        timeout: Duration,
    ) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let (intake, intake_work) = Intake::new(pool.clone(), dispatcher.clone(), resend);
        (Self { pool, dispatcher, resend, waiters, timeout, intake }, intake_work)
    }

    /// Checks out `order_id` and waits for the outcome.
    pub async fn check_out(&self, order_id: &str) -> Result<CheckoutAnswer, CheckoutError> {
        let started = std::time::Instant::now();
        let begun = self.intake.begin(order_id).await?;
        let waited = match begun {
            Begun::AlreadyPaid => Waited::Ended(CheckoutAnswer::Paid),
            Begun::Started(saga_id) => {
                // Nobody can have reported on this saga yet: the intake hands its start to the dispatcher only
                // after answering this request.
                let registration = self.waiters.register(saga_id);
                self.wait_for(saga_id, Some(registration), |state| state.checkout_answer(saga_id)).await?
            }
            Begun::Joined(saga_id) => self.wait_for(saga_id, None, |state| state.checkout_answer(saga_id)).await?,
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
    ) -> Result<Waited<T>, CheckoutError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let mut registration = match registered.take() {
                Some(registration) => registration,
                None => {
                    let registration = self.waiters.register(saga_id);
                    let mut conn = self.pool.get().await.map_err(StoreError::from)?;
                    match checkouts::state(&mut conn, saga_id).await? {
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
