//! Checkout attempts: starting one (recording the intent and its `StartCheckout` message in one transaction),
//! reading how one stands, and recording the outcomes the coordinator sends back.

use diesel::{
    sql_types::{Array, Nullable, Text},
    OptionalExtension, QueryableByName,
};
use std::collections::HashMap;

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use platform::db::prepared;
use platform::{
    amqp::Outgoing,
    outbox::{self, Queued},
};
use shared_contracts::{queues, CheckoutOutcome, CheckoutRequest, CoordinatorMessage, Envelope, FailureReason, SagaId};

use super::{orders, StoreError};
use crate::domain::{self, CheckoutStep};

/// What a checkout request found, or set going.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Begun {
    /// The order is paid; nothing was started.
    AlreadyPaid,
    /// A new saga was recorded and its `StartCheckout` message put in the outbox.
    Started(SagaId),
    /// A saga of the order was already in flight; the request waits for it.
    Joined(SagaId),
}

/// How a checkout stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckoutState {
    /// The saga has not reported back yet.
    Pending,
    /// The order is paid.
    Paid,
    /// Nothing was taken or charged, for this reason.
    Failed(FailureReason),
}

impl From<&CheckoutOutcome> for CheckoutState {
    fn from(outcome: &CheckoutOutcome) -> Self {
        match outcome {
            CheckoutOutcome::Paid { .. } => Self::Paid,
            CheckoutOutcome::Failed { reason, .. } => Self::Failed(reason.clone()),
        }
    }
}

#[derive(QueryableByName)]
struct StateRow {
    #[diesel(sql_type = Text)]
    state: String,
    #[diesel(sql_type = Nullable<Text>)]
    reason: Option<String>,
}

/// Begins the checkout of each of `order_ids` (duplicates allowed) in one transaction and returns, in the same
/// order, what each found or set going. The orders are locked in ID order, so concurrent batches cannot
/// deadlock; a second checkout of an order within the batch joins the saga the first one started. The outer
/// error is a failure of the whole transaction; the inner ones belong to single orders (unknown, no items). A
/// started saga's `StartCheckout` carries the trace context of the request that started it (`traceparents`, in
/// the order of `order_ids`). Also returns the messages it queued in the outbox, for the relay once committed.
pub async fn begin_many(
    conn: &mut AsyncPgConnection,
    order_ids: &[String],
    traceparents: &[Option<String>],
) -> Result<(Vec<Result<Begun, StoreError>>, Queued), StoreError> {
    conn.transaction::<_, StoreError, _>(async |conn| {
        // Pipelined: one round trip for the three reads, which PostgreSQL still runs in the order sent.
        let (orders, mut lines) =
            futures::try_join!(orders::lock_many(conn, order_ids), orders::lines_of_many(conn, order_ids))?;
        let mut started: HashMap<&str, SagaId> = HashMap::new();
        let mut new_checkouts: Vec<(SagaId, &str)> = Vec::new();
        let mut messages = Vec::new();
        let mut queued = Queued::default();
        let mut results = Vec::with_capacity(order_ids.len());
        for (order_id, traceparent) in order_ids.iter().zip(traceparents) {
            let Some(order) = orders.get(order_id.as_str()) else {
                results.push(Err(StoreError::UnknownOrder(order_id.clone())));
                continue;
            };
            if let Some(saga_id) = started.get(order_id.as_str()) {
                results.push(Ok(Begun::Joined(*saga_id)));
                continue;
            }
            let items = lines.remove(order_id.as_str()).unwrap_or_default();
            match order.status.checkout_step(!items.is_empty()) {
                Err(refusal) => results.push(Err(refusal.into())),
                Ok(CheckoutStep::AlreadyPaid) => results.push(Ok(Begun::AlreadyPaid)),
                Ok(CheckoutStep::Join(saga_id)) => results.push(Ok(Begun::Joined(saga_id))),
                Ok(CheckoutStep::Start) => {
                    let saga_id = SagaId::new();
                    let request = CheckoutRequest {
                        order_id: order_id.clone(),
                        user_id: order.user_id.clone(),
                        items: domain::aggregate_lines(items),
                        total: order.total,
                    };
                    let envelope = Envelope::new(saga_id, CoordinatorMessage::StartCheckout(request));
                    messages.push(Outgoing::envelope(queues::COORDINATOR, &envelope).in_trace(traceparent.clone()));
                    started.insert(order_id, saga_id);
                    new_checkouts.push((saga_id, order_id));
                    results.push(Ok(Begun::Started(saga_id)));
                }
            }
        }
        if !new_checkouts.is_empty() {
            let saga_ids: Vec<String> = new_checkouts.iter().map(|(saga_id, _)| saga_id.to_string()).collect();
            let checkout_orders: Vec<&str> = new_checkouts.iter().map(|(_, order_id)| *order_id).collect();
            // Pipelined: the two inserts share one round trip.
            let mut shared: &AsyncPgConnection = conn;
            let insert = prepared(
                diesel::sql_query(
                    "INSERT INTO checkouts (saga_id, order_id, state)
                 SELECT s::uuid, o, 'pending' FROM unnest($1::text[], $2::text[]) AS t(s, o)",
                )
                .bind::<Array<Text>, _>(saga_ids)
                .bind::<Array<Text>, _>(checkout_orders),
            )
            .execute(&mut shared);
            (_, queued) = futures::try_join!(insert, outbox::enqueue(shared, messages))?;
        }
        Ok((results, queued))
    })
    .await
}

/// How the checkout `saga_id` stands; `None` when its row is gone (a `batch_init` replaced the order).
pub async fn state(conn: &mut AsyncPgConnection, saga_id: SagaId) -> Result<Option<CheckoutState>, StoreError> {
    let row: Option<StateRow> = prepared(
        diesel::sql_query("SELECT state, reason::text AS reason FROM checkouts WHERE saga_id = $1::uuid")
            .bind::<Text, _>(saga_id.to_string()),
    )
    .get_result(conn)
    .await
    .optional()?;
    row.map(|row| match (row.state.as_str(), row.reason) {
        ("pending", _) => Ok(CheckoutState::Pending),
        ("paid", _) => Ok(CheckoutState::Paid),
        ("failed", Some(reason)) => serde_json::from_str(&reason)
            .map(CheckoutState::Failed)
            .map_err(|e| StoreError::Corrupt(format!("failure reason of checkout {saga_id}: {e}"))),
        (state, _) => Err(StoreError::Corrupt(format!("checkout {saga_id} is in state {state:?}"))),
    })
    .transpose()
}

/// Records `outcomes` in one statement: each pending checkout takes its outcome, and the order of each paid one
/// becomes paid. A checkout that is no longer pending is left alone, so a redelivered or duplicated outcome
/// changes nothing. Returns the sagas whose checkout it settled.
pub async fn settle(
    conn: &mut AsyncPgConnection,
    outcomes: &[(SagaId, CheckoutOutcome)],
) -> Result<Vec<SagaId>, StoreError> {
    if outcomes.is_empty() {
        return Ok(Vec::new());
    }
    let mut saga_ids = Vec::with_capacity(outcomes.len());
    let mut states = Vec::with_capacity(outcomes.len());
    let mut reasons = Vec::with_capacity(outcomes.len());
    for (saga_id, outcome) in outcomes {
        saga_ids.push(saga_id.to_string());
        match outcome {
            CheckoutOutcome::Paid { .. } => {
                states.push("paid");
                reasons.push(None);
            }
            CheckoutOutcome::Failed { reason, .. } => {
                states.push("failed");
                reasons.push(Some(serde_json::to_string(reason).map_err(|e| StoreError::Corrupt(e.to_string()))?));
            }
        }
    }
    let settled = prepared(
        diesel::sql_query(
            "WITH outcome AS (
             SELECT * FROM unnest($1::text[]::uuid[], $2::text[], $3::text[]::jsonb[]) AS o(saga_id, state, reason)
         ), settled AS (
             UPDATE checkouts c SET state = o.state, reason = o.reason, finished_at = now()
             FROM outcome o
             WHERE c.saga_id = o.saga_id AND c.state = 'pending'
             RETURNING c.saga_id, c.order_id, c.state
         ), paid AS (
             UPDATE orders SET paid = true FROM settled s WHERE orders.id = s.order_id AND s.state = 'paid' RETURNING 1
         )
         SELECT saga_id::text AS saga_id FROM settled",
        )
        .bind::<Array<Text>, _>(saga_ids)
        .bind::<Array<Text>, _>(states)
        .bind::<Array<Nullable<Text>>, _>(reasons),
    )
    .load::<super::orders::PendingRow>(conn)
    .await?;
    settled.into_iter().map(|row| super::orders::parse_saga_id(&row.saga_id)).collect()
}
