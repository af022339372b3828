//! What operators can do to a saga: re-send its unanswered commands now, or abort it (compensate whatever was
//! done, then fail). Both go through the same engine as every other event, in one transaction with the saga
//! row locked, so they are safe against a reply arriving at the same moment and safe to repeat.

use diesel_async::AsyncConnection;
use platform::{amqp::Outgoing, db::Pool, dispatch::Dispatcher, http::ApiError};
use shared_contracts::SagaId;

use crate::{
    domain::{Event, SagaState},
    engine::{Effects, RetryPolicy},
    store,
};

/// The operator actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Re-send the unanswered commands now.
    Retry,
    /// Compensate and fail.
    Abort,
}

impl Action {
    /// How the admin API names the action.
    pub fn name(self) -> &'static str {
        match self {
            Self::Retry => "retry",
            Self::Abort => "abort",
        }
    }
}

/// Everything an operator action needs.
#[derive(Clone)]
pub struct Operations {
    pool: Pool,
    dispatcher: Dispatcher,
    policy: RetryPolicy,
}

impl Operations {
    /// Operations on the sagas in `pool`.
    pub fn new(pool: Pool, dispatcher: Dispatcher, policy: RetryPolicy) -> Self {
        Self { pool, dispatcher, policy }
    }

    /// Applies `action` to saga `id` and returns its state afterwards. An action the saga's state does not allow
    /// (see [`SagaState::check_retry`] and [`SagaState::check_abort`]) is a conflict.
    pub async fn perform(&self, id: SagaId, action: Action) -> Result<SagaState, ApiError> {
        let policy = self.policy;
        let event = match action {
            Action::Retry => Event::RetryDue,
            Action::Abort => Event::Abort,
        };
        let mut conn = self.pool.get().await?;
        let (state, outgoing) = conn
            .transaction::<(SagaState, Vec<Outgoing>), ApiError, _>(async |conn| {
                let mut saga = store::lock(conn, &[id])
                    .await?
                    .pop()
                    .ok_or_else(|| ApiError::NotFound(format!("saga {id} does not exist")))?;
                let allowed = match action {
                    Action::Retry => saga.state.check_retry(),
                    Action::Abort => saga.state.check_abort(),
                };
                allowed.map_err(|refusal| ApiError::Conflict(format!("saga {id} {refusal}")))?;
                let mut effects = Effects::default();
                let traceparent = saga.traceparent.clone();
                effects.apply(&mut saga, &event, policy, traceparent);
                let outgoing = effects.persist(conn).await?;
                Ok((saga.state, outgoing))
            })
            .await?;
        tracing::info!(saga_id = %id, ?action, ?state, "operator action");
        self.dispatcher.send(outgoing).await;
        Ok(state)
    }
}
