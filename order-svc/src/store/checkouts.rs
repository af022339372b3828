//! Checkout attempts: starting one (recording the intent, whose `StartCheckout` message is sent after the commit),
//! finding the checkouts in flight whose message (`StartCheckout`, or `CancelCheckout` for one being cancelled) is
//! due to be sent again, and reading how one stands. Starting a cancellation is in [`super::cancellations`],
//! recording the outcomes the coordinator sends back in [`super::outcomes`].

use diesel::{
    sql_types::{Array, BigInt, Double, Nullable, Text},
    OptionalExtension, QueryableByName,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use platform::{amqp::Outgoing, db::prepared};
use shared_contracts::{queues, CheckoutRequest, CoordinatorMessage, Envelope, FailureReason, LineItem, SagaId};

use super::{orders, StoreError};
use crate::domain::{self, CheckoutPhase, CheckoutStep};

/// What a checkout request found, or set going.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Begun {
    /// The order is paid; nothing was started.
    AlreadyPaid,
    /// A new saga was recorded; its `StartCheckout` message goes out once the transaction has committed.
    Started(SagaId),
    /// A saga of the order was already in flight; the request waits for it.
    Joined(SagaId),
}

/// How a checkout stands: its [`CheckoutPhase`] with what the phase keeps in the row's `reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckoutState {
    /// The saga has not reported back yet.
    Pending,
    /// The order is paid. `cancel_problem` says why the last cancellation of it could not be carried out, when
    /// one was tried and ended so.
    Paid {
        /// What the coordinator reported when the cancellation ended needing attention.
        cancel_problem: Option<String>,
    },
    /// Nothing was taken or charged, for this reason.
    Failed(FailureReason),
    /// The saga could neither complete nor be fully undone; the order is unpaid and an operator must repair it.
    NeedsAttention {
        /// What the coordinator reported.
        problem: String,
    },
    /// The paid checkout is being undone.
    Cancelling,
    /// The paid checkout was undone.
    Cancelled,
}

/// The `reason` of a checkout whose saga, or whose cancellation, needs an operator: what the coordinator said.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Problem {
    pub(super) problem: String,
}

#[derive(QueryableByName)]
pub(super) struct StateRow {
    #[diesel(sql_type = Text)]
    pub(super) state: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub(super) reason: Option<String>,
}

impl StateRow {
    /// How checkout `saga_id`, of which this is the row, stands.
    pub(super) fn checkout_state(self, saga_id: SagaId) -> Result<CheckoutState, StoreError> {
        let corrupt = |what: String| StoreError::Corrupt(format!("checkout {saga_id}: {what}"));
        let phase = CheckoutPhase::parse(&self.state).ok_or_else(|| corrupt(format!("state {:?}", self.state)))?;
        let problem = |reason: Option<String>| -> Result<Option<String>, StoreError> {
            reason
                .map(|reason| serde_json::from_str::<Problem>(&reason).map(|p| p.problem))
                .transpose()
                .map_err(|e| corrupt(format!("problem: {e}")))
        };
        Ok(match phase {
            CheckoutPhase::Pending => CheckoutState::Pending,
            CheckoutPhase::Paid => CheckoutState::Paid { cancel_problem: problem(self.reason)? },
            CheckoutPhase::Failed => {
                let reason = self.reason.ok_or_else(|| corrupt("failed without a reason".into()))?;
                let reason = serde_json::from_str(&reason).map_err(|e| corrupt(format!("failure reason: {e}")))?;
                CheckoutState::Failed(reason)
            }
            CheckoutPhase::NeedsAttention => {
                let problem =
                    problem(self.reason)?.ok_or_else(|| corrupt("needs attention without a problem".into()))?;
                CheckoutState::NeedsAttention { problem }
            }
            CheckoutPhase::Cancelling => CheckoutState::Cancelling,
            CheckoutPhase::Cancelled => CheckoutState::Cancelled,
        })
    }
}

/// Begins the checkout of each of `order_ids` (duplicates allowed) in one transaction and returns, in the same
/// order, what each found or set going. The orders are locked in ID order, so concurrent batches cannot
/// deadlock; a second checkout of an order within the batch joins the saga the first one started. The outer
/// error is a failure of the whole transaction; the inner ones belong to single orders (unknown, no items). A
/// started saga's `StartCheckout` carries the trace context of the request that started it (`traceparents`, in
/// the order of `order_ids`). Also returns those messages, to send once the transaction has committed; each
/// checkout is due to send its message again `resend_after_ms` from now, unless its outcome has come back by then.
pub async fn begin_many(
    conn: &mut AsyncPgConnection,
    order_ids: &[String],
    traceparents: &[Option<String>],
    resend_after_ms: i64,
) -> Result<(Vec<Result<Begun, StoreError>>, Vec<Outgoing>), StoreError> {
    conn.transaction::<_, StoreError, _>(async |conn| {
        // Pipelined: one round trip for the three reads, which PostgreSQL still runs in the order sent.
        let (orders, mut lines) =
            futures::try_join!(orders::lock_many(conn, order_ids), orders::lines_of_many(conn, order_ids))?;
        let mut started: HashMap<&str, SagaId> = HashMap::new();
        let mut new_checkouts: Vec<(SagaId, &str)> = Vec::new();
        let mut messages = Vec::new();
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
                    let request = request_of(order_id, &order.user_id, order.total, items);
                    messages.push(start_message(saga_id, request).in_trace(traceparent.clone()));
                    started.insert(order_id, saga_id);
                    new_checkouts.push((saga_id, order_id));
                    results.push(Ok(Begun::Started(saga_id)));
                }
            }
        }
        if !new_checkouts.is_empty() {
            let saga_ids: Vec<String> = new_checkouts.iter().map(|(saga_id, _)| saga_id.to_string()).collect();
            let checkout_orders: Vec<&str> = new_checkouts.iter().map(|(_, order_id)| *order_id).collect();
            prepared(
                diesel::sql_query(
                    "INSERT INTO checkouts (saga_id, order_id, state, resend_at)
                 SELECT s::uuid, o, 'pending', now() + make_interval(secs => $3::double precision / 1000)
                 FROM unnest($1::text[], $2::text[]) AS t(s, o)",
                )
                .bind::<Array<Text>, _>(saga_ids)
                .bind::<Array<Text>, _>(checkout_orders)
                .bind::<BigInt, _>(resend_after_ms),
            )
            .execute(conn)
            .await?;
        }
        Ok((results, messages))
    })
    .await
}

/// What the coordinator is asked to carry out for `order_id`: its lines, merged per item, and its total.
fn request_of(order_id: &str, user_id: &str, total: u64, lines: Vec<LineItem>) -> CheckoutRequest {
    CheckoutRequest {
        order_id: order_id.to_owned(),
        user_id: user_id.to_owned(),
        items: domain::aggregate_lines(lines),
        total,
    }
}

/// The message that starts (or asks again about) saga `saga_id`.
fn start_message(saga_id: SagaId, request: CheckoutRequest) -> Outgoing {
    Outgoing::envelope(queues::COORDINATOR, &Envelope::new(saga_id, CoordinatorMessage::StartCheckout(request)))
}

/// The message that asks the coordinator (again) to undo the paid checkout `saga_id` of `order_id`.
pub(super) fn cancel_message(saga_id: SagaId, order_id: &str) -> Outgoing {
    let cancel = CoordinatorMessage::CancelCheckout { order_id: order_id.to_owned() };
    Outgoing::envelope(queues::COORDINATOR, &Envelope::new(saga_id, cancel))
}

/// Takes up to `limit` checkouts in flight whose message is due to be sent again, pushes each one's next time
/// back (`first_ms` after the first send, doubling per send, at most `max_ms` apart), and returns their messages:
/// a `StartCheckout` for a pending checkout, rebuilt from the order (an order's lines cannot change while its
/// checkout is pending), and a `CancelCheckout` for one being cancelled. One statement does it all, so the order
/// and its lines are read in the snapshot that found the checkout pending (a `batch_init` replacing the order
/// meanwhile cannot leave a request with the old total and no lines). Checkouts another replica is taking at the
/// same moment are skipped. The new times are committed before the messages go out, so a failed send waits for
/// the next time rather than being retried at once.
pub async fn take_due_resends(
    conn: &mut AsyncPgConnection,
    limit: i64,
    first_ms: i64,
    max_ms: i64,
) -> Result<Vec<Outgoing>, StoreError> {
    #[derive(QueryableByName)]
    struct Due {
        #[diesel(sql_type = Text)]
        saga_id: String,
        #[diesel(sql_type = Text)]
        order_id: String,
        #[diesel(sql_type = Text)]
        state: String,
        #[diesel(sql_type = Text)]
        user_id: String,
        #[diesel(sql_type = BigInt)]
        total: i64,
        #[diesel(embed)]
        lines: orders::LineColumns,
    }
    let due: Vec<Due> = prepared(
        diesel::sql_query(
            "WITH due AS (
             UPDATE checkouts c SET resends = c.resends + 1,
                 resend_at = now() + make_interval(
                     secs => least($2 * power(2, least(c.resends + 1, 16)), $3) / 1000)
             FROM (SELECT saga_id FROM checkouts
                   WHERE state IN ('pending', 'cancelling') AND resend_at <= now()
                   ORDER BY resend_at LIMIT $1 FOR UPDATE SKIP LOCKED) d
             WHERE c.saga_id = d.saga_id
             RETURNING c.saga_id, c.order_id, c.state
         )
         SELECT due.saga_id::text AS saga_id, due.order_id, due.state, o.user_id, o.total,
             coalesce(array_agg(i.item_id) FILTER (WHERE i.item_id IS NOT NULL), '{}') AS item_ids,
             coalesce(array_agg(i.quantity) FILTER (WHERE i.item_id IS NOT NULL), '{}') AS quantities
         FROM due JOIN orders o ON o.id = due.order_id
         LEFT JOIN order_items i ON i.order_id = due.order_id AND due.state = 'pending'
         GROUP BY due.saga_id, due.order_id, due.state, o.user_id, o.total",
        )
        .bind::<BigInt, _>(limit)
        .bind::<Double, _>(first_ms as f64)
        .bind::<Double, _>(max_ms as f64),
    )
    .load(conn)
    .await?;
    due.into_iter()
        .map(|row| {
            let saga_id = orders::parse_saga_id(&row.saga_id)?;
            if CheckoutPhase::parse(&row.state) == Some(CheckoutPhase::Cancelling) {
                return Ok(cancel_message(saga_id, &row.order_id));
            }
            let total = super::stored_amount(row.total, "an order total")?;
            let items = row.lines.into_items()?;
            Ok(start_message(saga_id, request_of(&row.order_id, &row.user_id, total, items)))
        })
        .collect()
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
    row.map(|row| row.checkout_state(saga_id)).transpose()
}
