//! Checkout attempts: starting them (reading the orders, recording the intents [`domain::plan_intake`] decides
//! on), finding the checkouts in flight whose request to the coordinator (a start, or a cancellation for one being
//! cancelled) is due to be sent again, and reading how one stands. The messages themselves are built by
//! [`crate::messaging`]. Starting a cancellation is in [`super::cancellations`], recording the outcomes the
//! coordinator sends back in [`super::outcomes`].

use diesel::{
    sql_types::{Array, BigInt, Double, Nullable, Text},
    OptionalExtension, QueryableByName,
};
use serde::{Deserialize, Serialize};

use diesel_async::{AsyncPgConnection, RunQueryDsl};
use platform::db::prepared;
use shared_contracts::SagaId;

use super::{orders, StoreError};
use crate::domain::{
    self, Begun, CheckoutFacts, CheckoutPhase, CheckoutState, CoordinatorRequest, NewCheckout, NotBegun, Snapshot,
};

/// What a batch of checkout requests found, or set going.
#[derive(Debug)]
pub struct BegunBatch {
    /// Per request, in the order of the batch: what it found or started, or why it begins nothing.
    pub answers: Vec<Result<Begun, StoreError>>,
    /// What to ask of the coordinator once the transaction has committed, each with the index of the request that
    /// started it.
    pub started: Vec<(usize, CoordinatorRequest)>,
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

/// Begins the checkout of each of `order_ids` (duplicates allowed) in one transaction, as
/// [`domain::plan_intake`] decides from the orders and their lines, and returns, in the same order, what each
/// found or set going. The orders are locked in ID order, so concurrent batches cannot deadlock. The outer error
/// is a failure of the whole transaction; the inner ones belong to single orders (unknown, no items). Also
/// returns what each started checkout asks of the coordinator, to send once the transaction has committed; each
/// is due to be sent again `resend_after_ms` from now, unless its outcome has come back by then.
pub async fn begin_many(
    conn: &mut AsyncPgConnection,
    order_ids: &[String],
    resend_after_ms: i64,
) -> Result<BegunBatch, StoreError> {
    platform::db::transaction(conn, async |conn| {
        // Pipelined with the BEGIN: one round trip for the three reads, which PostgreSQL runs in the order sent.
        let (orders, mut lines) =
            futures::try_join!(orders::lock_many(conn, order_ids), orders::lines_of_many(conn, order_ids))?;
        let facts = |order_id: &str| {
            let order = orders.get(order_id)?;
            Some(CheckoutFacts { status: order.status, has_items: lines.get(order_id).is_some_and(|l| !l.is_empty()) })
        };
        let plan = domain::plan_intake(order_ids, facts, SagaId::new);
        insert_pending(conn, order_ids, &plan.started, resend_after_ms).await?;
        let started = plan
            .started
            .iter()
            .filter_map(|&NewCheckout { saga_id, request }| {
                let order_id = &order_ids[request];
                let order = orders.get(order_id.as_str())?;
                let order = Snapshot {
                    order_id: order_id.clone(),
                    user_id: order.user_id.clone(),
                    total: order.total,
                    lines: lines.remove(order_id.as_str()).unwrap_or_default(),
                };
                Some((request, CoordinatorRequest::Start { saga_id, order }))
            })
            .collect();
        let answers = plan
            .answers
            .into_iter()
            .zip(order_ids)
            .map(|(answer, order_id)| {
                answer.map_err(|not_begun| match not_begun {
                    NotBegun::UnknownOrder => StoreError::UnknownOrder(order_id.clone()),
                    NotBegun::Refused(refusal) => StoreError::Refused(refusal),
                })
            })
            .collect();
        Ok(BegunBatch { answers, started })
    })
    .await
}

/// Records the checkouts `started` as pending, each of the order of its request among `order_ids`, due to be sent
/// again `resend_after_ms` from now.
async fn insert_pending(
    mut conn: &AsyncPgConnection,
    order_ids: &[String],
    started: &[NewCheckout],
    resend_after_ms: i64,
) -> Result<(), StoreError> {
    if started.is_empty() {
        return Ok(());
    }
    let saga_ids: Vec<String> = started.iter().map(|new| new.saga_id.to_string()).collect();
    let checkout_orders: Vec<&str> = started.iter().map(|new| order_ids[new.request].as_str()).collect();
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
    .execute(&mut conn)
    .await?;
    Ok(())
}

/// Takes up to `limit` checkouts in flight whose message is due to be sent again, pushes each one's next time
/// back (`first_ms` after the first send, doubling per send, at most `max_ms` apart), and returns what each asks
/// of the coordinator again ([`domain::InFlight::request_again`]): a pending checkout its start, rebuilt from the
/// order (an order's lines cannot change while its checkout is pending), one being cancelled its cancellation. One statement does it all, so the order
/// and its lines are read in the snapshot that found the checkout pending (a `batch_init` replacing the order
/// meanwhile cannot leave a request with the old total and no lines). Checkouts another replica is taking at the
/// same moment are skipped. The new times are committed before the messages go out, so a failed send waits for
/// the next time rather than being retried at once. Only checkouts in flight have a resend time (the table's
/// `checkouts_resend_at_only_in_flight`), and the statement names no state, so that its index is the one of due
/// times and not the one of checkouts in flight.
pub async fn take_due_resends(
    conn: &mut AsyncPgConnection,
    limit: i64,
    first_ms: i64,
    max_ms: i64,
) -> Result<Vec<CoordinatorRequest>, StoreError> {
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
                   WHERE resend_at <= now()
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
            let in_flight = orders::parse_in_flight(&row.saga_id, &row.state)?;
            let total = super::stored_amount(row.total, "an order total")?;
            let lines = row.lines.into_items()?;
            Ok(in_flight.request_again(Snapshot { order_id: row.order_id, user_id: row.user_id, total, lines }))
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
