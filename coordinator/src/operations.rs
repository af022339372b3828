//! What operators can do to a saga: re-send its unanswered commands now, or abort it (compensate whatever was
//! done, then fail). Both go through the same engine as every other event, in one transaction with the saga
//! row locked, so they are safe against a reply arriving at the same moment and safe to repeat. Every action,
//! done or refused, is recorded in the audit log (see [`crate::audit`]) in that same transaction, and the
//! history lines it writes name the operator.

use diesel_async::AsyncConnection;
use platform::{db::Pool, dispatch::Dispatcher, http::ApiError};
use serde_json::{json, Value};
use shared_contracts::SagaId;

use crate::{
    audit::{self, Actor},
    domain::{Event, SagaState},
    engine::{Engine, Refusal, RetryPolicy, SagaCommand},
    messaging,
    store::PgSagaStore,
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
    engine: Engine,
}

impl Operations {
    /// Operations on the sagas in `pool`.
    pub fn new(pool: Pool, dispatcher: Dispatcher, policy: RetryPolicy) -> Self {
        Self { pool, dispatcher, engine: Engine::new(policy) }
    }

    /// Applies `action` to saga `id` for `actor` and returns its state afterwards. An action the saga's state
    /// does not allow (see [`SagaState::check_retry`] and [`SagaState::check_abort`]) is a conflict. Done or
    /// refused, the action is recorded in the audit log, in the transaction of the change.
    pub async fn perform(&self, id: SagaId, action: Action, actor: &Actor) -> Result<SagaState, ApiError> {
        self.perform_with(id, action, actor, &json!({})).await
    }

    /// [`Operations::perform`], with `details` recorded in the audit log beside it (such as the bulk action it
    /// is part of).
    pub async fn perform_with(
        &self,
        id: SagaId,
        action: Action,
        actor: &Actor,
        details: &Value,
    ) -> Result<SagaState, ApiError> {
        let engine = self.engine;
        let (event, allowed): (Event, fn(&SagaState) -> _) = match action {
            Action::Retry => (Event::RetryDue, SagaState::check_retry),
            Action::Abort => (Event::Abort, SagaState::check_abort),
        };
        let mut conn = self.pool.get().await?;
        let outcome = conn
            .transaction::<Result<(SagaState, Vec<SagaCommand>), ApiError>, ApiError, _>(async |conn| {
                let outcome = match engine.act(&PgSagaStore::new(conn), id, &event, allowed, actor).await? {
                    Ok(acted) => Ok(acted),
                    Err(Refusal::Missing) => Err(ApiError::NotFound(format!("saga {id} does not exist"))),
                    Err(Refusal::NotAllowed(refusal)) => Err(ApiError::Conflict(format!("saga {id} {refusal}"))),
                };
                let result = match &outcome {
                    Ok((state, _)) => json!({ "state": state }),
                    Err(refusal) => json!({ "refused": refusal.to_string() }),
                };
                audit::record(conn, actor, action.name(), &[id], details, &result).await?;
                Ok(outcome)
            })
            .await?;
        let (state, commands) = outcome?;
        tracing::info!(saga_id = %id, ?action, ?state, actor = %actor.name, "operator action");
        messaging::send(&self.dispatcher, commands).await;
        Ok(state)
    }
}
