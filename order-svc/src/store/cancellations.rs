//! Starting the cancellation of a paid order: its paying checkout becomes `cancelling`, and the coordinator is
//! asked, after the commit, to undo that checkout's saga (the request builds that message, see
//! [`crate::checkout`]). What the request then waits for is recorded by
//! [`super::outcomes`]; until then [`super::checkouts::take_due_resends`] sends the `CancelCheckout` again.

use diesel::{
    sql_types::{BigInt, Nullable, Text},
    QueryableByName,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use platform::db::prepared;

use super::{orders, StoreError};
use crate::domain::{CancelFacts, CancelStep, CheckoutPhase};

/// Begins the cancellation of `order_id`, in a transaction that holds the order's row locked: decides, from the
/// order and its checkouts, what the request does ([`crate::domain::OrderStatus::cancel_step`]), and when that
/// is to cancel, marks the paid checkout `cancelling`, due to send its `CancelCheckout` again `resend_after_ms` from
/// now. Returns what it decided; a [`CancelStep::Start`] is the caller's to send once this has committed.
pub async fn begin_cancel(
    conn: &mut AsyncPgConnection,
    order_id: &str,
    resend_after_ms: i64,
) -> Result<CancelStep, StoreError> {
    conn.transaction::<_, StoreError, _>(async |conn| {
        let order = orders::lock(conn, order_id).await?;
        let facts = cancel_facts(conn, order_id).await?;
        let step = order.status.cancel_step(facts)?;
        if let CancelStep::Start(saga_id) = step {
            // The earlier cancellation's problem, if there was one, no longer describes the checkout.
            prepared(
                diesel::sql_query(
                    "UPDATE checkouts SET state = 'cancelling', reason = NULL, resends = 0,
                         resend_at = now() + make_interval(secs => $2::double precision / 1000)
                     WHERE saga_id = $1::uuid AND state = 'paid'",
                )
                .bind::<Text, _>(saga_id.to_string())
                .bind::<BigInt, _>(resend_after_ms),
            )
            .execute(conn)
            .await?;
        }
        Ok(step)
    })
    .await
}

/// What the order's checkouts say about cancelling it: which one paid it, and whether the latest was cancelled.
/// Read under the order's lock, which every change of its checkouts but the recording of outcomes also takes.
async fn cancel_facts(conn: &mut AsyncPgConnection, order_id: &str) -> Result<CancelFacts, StoreError> {
    #[derive(QueryableByName)]
    struct Facts {
        #[diesel(sql_type = Nullable<Text>)]
        paid_checkout: Option<String>,
        #[diesel(sql_type = Nullable<Text>)]
        last_state: Option<String>,
    }
    let facts: Facts = prepared(
        diesel::sql_query(
            "SELECT (SELECT saga_id::text FROM checkouts WHERE order_id = $1 AND state = 'paid' LIMIT 1)
                        AS paid_checkout,
                    (SELECT state FROM checkouts WHERE order_id = $1 ORDER BY created_at DESC LIMIT 1) AS last_state",
        )
        .bind::<Text, _>(order_id),
    )
    .get_result(conn)
    .await?;
    Ok(CancelFacts {
        paid_checkout: facts.paid_checkout.as_deref().map(orders::parse_saga_id).transpose()?,
        last_cancelled: facts.last_state.as_deref().and_then(CheckoutPhase::parse) == Some(CheckoutPhase::Cancelled),
    })
}
