//! A cancellation request from start to answer: the paid checkout is marked as being cancelled (or the request
//! joins the cancellation already in flight), the `CancelCheckout` goes to the coordinator after the commit (and
//! [`crate::resend`] sends it again until an outcome comes back), and the request waits for the outcome the way
//! a checkout request does, up to the same deadline.

use shared_contracts::SagaId;

use super::{Checkouts, Stuck, Waited};
use crate::store::{
    cancellations::{self, CancelBegun},
    checkouts::CheckoutState,
    StoreError,
};

/// The answer to a cancellation request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelAnswer {
    /// The order's checkout is undone and the order unpaid (now, or it already was).
    Cancelled,
    /// The saga could not be undone; the order is still paid.
    NeedsAttention(Stuck),
    /// The deadline passed with the cancellation still running; it finishes on its own.
    StillRunning,
    /// The checkout's record vanished while waiting: a `batch_init` replaced the order.
    Discarded,
}

impl Checkouts {
    /// Cancels the paid order `order_id` and waits for the outcome.
    pub async fn cancel(&self, order_id: &str) -> Result<CancelAnswer, StoreError> {
        let started = std::time::Instant::now();
        let traceparent = platform::trace::traceparent(&tracing::Span::current());
        let first_ms = self.resend.first_ms();
        let begun = cancellations::begin_cancel(&mut *self.pool.get().await?, order_id, traceparent, first_ms).await?;
        let waited = match begun {
            CancelBegun::AlreadyCancelled => Waited::Ended(CancelAnswer::Cancelled),
            CancelBegun::Started { saga_id, message } => {
                // Registered before the message leaves, so the outcome cannot come back unseen.
                let registration = self.waiters.register(saga_id);
                self.dispatcher.send(vec![message]).await;
                self.wait_for(saga_id, Some(registration), |state| cancel_ended(saga_id, state)).await?
            }
            CancelBegun::Joined(saga_id) => self.wait_for(saga_id, None, |state| cancel_ended(saga_id, state)).await?,
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

/// The answer a checkout of `saga_id` in `state` gives a cancellation request, if the cancellation has ended. It
/// ends cancelled, or back at paid, with the problem that kept it from being carried out. The other states are
/// ones a paid checkout never returns to; they are answered as needing attention rather than waited out.
fn cancel_ended(saga_id: SagaId, state: CheckoutState) -> Option<CancelAnswer> {
    let stuck = |problem: String| Some(CancelAnswer::NeedsAttention(Stuck { saga_id, problem }));
    match state {
        CheckoutState::Cancelling => None,
        CheckoutState::Cancelled => Some(CancelAnswer::Cancelled),
        CheckoutState::Paid { cancel_problem: Some(problem) } | CheckoutState::NeedsAttention { problem } => {
            stuck(problem)
        }
        CheckoutState::Paid { cancel_problem: None } => {
            stuck("the cancellation ended with the order still paid".into())
        }
        CheckoutState::Failed(reason) => stuck(format!("the checkout is recorded as failed: {reason}")),
        CheckoutState::Pending => stuck("the checkout is recorded as not yet paid".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancellation_ends_cancelled_or_stuck_with_its_problem() {
        let saga_id = SagaId::new();
        assert_eq!(cancel_ended(saga_id, CheckoutState::Cancelling), None);
        assert_eq!(cancel_ended(saga_id, CheckoutState::Cancelled), Some(CancelAnswer::Cancelled));
        let problem = "refund refused".to_owned();
        assert_eq!(
            cancel_ended(saga_id, CheckoutState::Paid { cancel_problem: Some(problem.clone()) }),
            Some(CancelAnswer::NeedsAttention(Stuck { saga_id, problem }))
        );
    }
}
