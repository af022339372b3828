//! Recording the outcomes the coordinator sends back: each moves its checkout as
//! [`Outcome::moves`] says, and the order's `paid` with it. An outcome that does not apply to the checkout
//! as it stands (a duplicate, a late one) changes nothing, so redelivery is harmless.

use diesel::{
    sql_types::{Array, Bool, Nullable, Text},
    QueryableByName,
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use platform::db::prepared;
use shared_contracts::{CheckoutOutcome, SagaId};

use super::{
    checkouts::{Problem, StateRow},
    orders, StoreError,
};
use crate::domain::{CheckoutState, Outcome};

/// Every move the outcomes may make ([`Outcome::moves`]): one row per outcome and phase it applies to. The statement applies the
/// one whose `from` is the checkout's phase, if any.
#[derive(Default)]
struct Moves {
    saga_ids: Vec<String>,
    from: Vec<&'static str>,
    to: Vec<&'static str>,
    reasons: Vec<Option<String>>,
    order_paid: Vec<bool>,
}

impl Moves {
    fn add(&mut self, saga_id: SagaId, outcome: &CheckoutOutcome) -> Result<(), StoreError> {
        let reason = match outcome {
            CheckoutOutcome::Paid { .. } | CheckoutOutcome::Cancelled { .. } => None,
            CheckoutOutcome::Failed { reason, .. } => Some(json(reason)?),
            CheckoutOutcome::NeedsAttention { problem, .. } => Some(json(&Problem { problem: problem.clone() })?),
        };
        for (from, to) in Outcome::of(outcome).moves() {
            self.saga_ids.push(saga_id.to_string());
            self.from.push(from.as_str());
            self.to.push(to.as_str());
            self.reasons.push(reason.clone());
            self.order_paid.push(to.order_paid());
        }
        Ok(())
    }
}

fn json(value: &impl serde::Serialize) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Records `outcomes` in one transaction and returns the checkouts they moved, each with how it now stands (for
/// the requests waiting on them). The orders of the checkouts are locked first, in ID order, as every other
/// change of an order's checkouts does: without it, recording a `Cancelled` could deadlock with a `batch_init`
/// or a cancellation that holds the order and waits for the checkout's row.
pub async fn settle(
    conn: &mut AsyncPgConnection,
    outcomes: &[(SagaId, CheckoutOutcome)],
) -> Result<Vec<(SagaId, CheckoutState)>, StoreError> {
    let mut moves = Moves::default();
    for (saga_id, outcome) in outcomes {
        moves.add(*saga_id, outcome)?;
    }
    if moves.saga_ids.is_empty() {
        return Ok(Vec::new());
    }
    let settled = platform::db::transaction(conn, async |conn| lock_and_move(conn, &moves).await).await?;
    settled
        .into_iter()
        .map(|row| {
            let saga_id = orders::parse_saga_id(&row.saga_id)?;
            Ok((saga_id, row.state.checkout_state(saga_id)?))
        })
        .collect()
}

/// A checkout an outcome moved, as it now stands.
#[derive(QueryableByName)]
struct Settled {
    #[diesel(sql_type = Text)]
    saga_id: String,
    #[diesel(embed)]
    state: StateRow,
}

/// Locks the orders of the checkouts `moves` names, then makes the moves that apply: two statements, pipelined.
async fn lock_and_move(mut conn: &AsyncPgConnection, moves: &Moves) -> Result<Vec<Settled>, StoreError> {
    let locking = prepared(
        diesel::sql_query(
            r#"SELECT id FROM orders
               WHERE id IN (SELECT order_id FROM checkouts WHERE saga_id = ANY($1::text[]::uuid[]))
               ORDER BY id COLLATE "C" FOR UPDATE"#,
        )
        .bind::<Array<Text>, _>(&moves.saga_ids),
    )
    .execute(&mut conn);
    // Its own statement, so that its snapshot, taken once the locks are granted, sees what their holders committed.
    // Every move ends the checkout's flight (see `CheckoutPhase::after`), so nothing of it is due to be sent again.
    let moving = prepared(
        diesel::sql_query(
            "WITH step AS (
                 SELECT * FROM unnest($1::text[]::uuid[], $2::text[], $3::text[], $4::text[]::jsonb[], $5::bool[])
                     AS s(saga_id, from_state, to_state, reason, order_paid)
             ), settled AS (
                 UPDATE checkouts c SET state = s.to_state, reason = s.reason, finished_at = now(), resend_at = NULL
                 FROM step s
                 WHERE c.saga_id = s.saga_id AND c.state = s.from_state
                 RETURNING c.saga_id, c.order_id, c.state, c.reason, s.order_paid
             ), orders_paid AS (
                 UPDATE orders o SET paid = s.order_paid FROM settled s
                 WHERE o.id = s.order_id AND o.paid <> s.order_paid RETURNING 1
             )
             SELECT saga_id::text AS saga_id, state, reason::text AS reason FROM settled",
        )
        .bind::<Array<Text>, _>(&moves.saga_ids)
        .bind::<Array<Text>, _>(&moves.from)
        .bind::<Array<Text>, _>(&moves.to)
        .bind::<Array<Nullable<Text>>, _>(&moves.reasons)
        .bind::<Array<Bool>, _>(&moves.order_paid),
    )
    .load::<Settled>(&mut conn);
    let (_, settled) = futures::try_join!(locking, moving)?;
    Ok(settled)
}
