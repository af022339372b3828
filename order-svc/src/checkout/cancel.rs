//! A cancellation request from start to answer: the paid checkout is marked as being cancelled (or the request
//! joins the cancellation already in flight), the `CancelCheckout` goes to the coordinator after the commit (and
//! [`crate::resend`] sends it again until an outcome comes back), and the request waits for the outcome the way
//! a checkout request does, up to the same deadline.

use super::{CheckoutError, Checkouts, Waited};
use crate::{
    domain::{CancelAnswer, CancelStep, CoordinatorRequest},
    messaging,
    store::{cancellations, StoreError},
};

impl Checkouts {
    /// Cancels the paid order `order_id` and waits for the outcome.
    pub async fn cancel(&self, order_id: &str) -> Result<CancelAnswer, CheckoutError> {
        let started = std::time::Instant::now();
        let first_ms = self.resend.first_ms();
        let mut conn = self.pool.get().await.map_err(StoreError::from)?;
        let step = cancellations::begin_cancel(&mut conn, order_id, first_ms).await?;
        drop(conn);
        let waited = match step {
            CancelStep::AlreadyCancelled => Waited::Ended(CancelAnswer::Cancelled),
            CancelStep::Start(saga_id) => {
                // Registered before the message leaves, so the outcome cannot come back unseen.
                let registration = self.waiters.register(saga_id);
                let traceparent = platform::trace::traceparent(&tracing::Span::current());
                let cancel = CoordinatorRequest::Cancel { saga_id, order_id: order_id.to_owned() };
                self.dispatcher.send(vec![messaging::to_coordinator(cancel).in_trace(traceparent)]).await;
                self.wait_for(saga_id, Some(registration), |state| state.cancel_answer(saga_id)).await?
            }
            CancelStep::Join(saga_id) => self.wait_for(saga_id, None, |state| state.cancel_answer(saga_id)).await?,
        };
        let answer = match waited {
            Waited::Ended(answer) => answer,
            Waited::StillRunning => CancelAnswer::StillRunning,
            Waited::Discarded => CancelAnswer::Discarded,
        };
        let outcome = match &answer {
            CancelAnswer::Cancelled => "cancelled",
            CancelAnswer::NeedsAttention(_) => "needs_attention",
            CancelAnswer::StillRunning => "timeout",
            CancelAnswer::Discarded => "discarded",
        };
        metrics::counter!("order_cancellations_total", "outcome" => outcome).increment(1);
        metrics::histogram!("order_cancellation_duration_seconds").record(started.elapsed().as_secs_f64());
        Ok(answer)
    }
}
