//! The saga worker's side of the store: a whole batch of `PaymentCommand`s in one transaction and a fixed number
//! of statements, however many commands it holds.
//!
//! The payment row keyed [`domain::saga_payment_key`] is the saga's inbox. [`apply_batch`] locks the rows of the
//! batch's sagas and reads them, locks and reads the accounts (credit and refundable) of the users the batch may
//! touch, lets [`domain::plan_batch`] decide every command in memory, and writes the decision back: the changed
//! accounts, the new rows, the changed rows, one statement each. A redelivered command then finds its row and repeats the
//! recorded answer without touching any credit.
//!
//! Two batches handled at once lock payment rows, then users, each in key order, so they queue instead of
//! deadlocking. A saga recorded by another transaction between our read and our insert makes the plain `INSERT`
//! fail with a unique violation: the whole batch rolls back and is redelivered, and then finds the row.

use std::collections::{BTreeMap, HashMap};

use diesel::{
    sql_types::{Array, BigInt, Jsonb, Nullable, Text},
    QueryResult, QueryableByName,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use platform::db::prepared;
use shared_contracts::{FailureReason, PaymentCommand, PaymentReply, SagaId};

use super::{bigint, from_bigint, users};
use crate::domain::{self, NewPayment, SagaPayment, Unprocessable};

/// Why one command of a batch was not applied. It changed nothing, and retrying cannot help.
#[derive(Debug, thiserror::Error)]
pub enum NotApplied {
    /// Its effect would break a rule of the data.
    #[error(transparent)]
    Unprocessable(#[from] Unprocessable),
    /// What is recorded for its saga cannot be read.
    #[error("the recorded saga payment is unreadable: {0}")]
    UnreadableRecord(String),
}

#[derive(QueryableByName)]
struct PaymentRow {
    #[diesel(sql_type = Text)]
    key: String,
    #[diesel(sql_type = Text)]
    user_id: String,
    #[diesel(sql_type = BigInt)]
    amount: i64,
    #[diesel(sql_type = Text)]
    state: String,
    #[diesel(sql_type = Nullable<Jsonb>)]
    reason: Option<serde_json::Value>,
}

impl PaymentRow {
    fn into_saga_payment(self) -> Result<SagaPayment, String> {
        match self.state.as_str() {
            "charged" => Ok(SagaPayment::Charged { user_id: self.user_id, amount: from_bigint(self.amount) }),
            "refunded" => Ok(SagaPayment::Refunded),
            "cancelled" => Ok(SagaPayment::Cancelled),
            "rejected" => {
                let reason = self.reason.ok_or("a rejection without a reason")?;
                let reason: FailureReason = serde_json::from_value(reason).map_err(|e| e.to_string())?;
                Ok(SagaPayment::Rejected { reason })
            }
            other => Err(format!("state {other:?}")),
        }
    }
}

/// Applies `commands` in order, in one transaction, and returns per command the reply for the coordinator or why
/// it was not applied. An `Err` is a database failure (or a lost race for a saga's row): nothing was written.
pub async fn apply_batch(
    conn: &mut AsyncPgConnection,
    commands: &[(SagaId, &PaymentCommand)],
) -> QueryResult<Vec<Result<PaymentReply, NotApplied>>> {
    if commands.is_empty() {
        return Ok(Vec::new());
    }
    conn.transaction(async |conn| {
        let mut sagas: Vec<SagaId> = commands.iter().map(|(saga_id, _)| *saga_id).collect();
        sagas.sort_unstable();
        sagas.dedup();
        let (recorded, unreadable) = lock(conn, &sagas).await?;
        let decidable: Vec<_> =
            commands.iter().filter(|(saga_id, _)| !unreadable.contains_key(saga_id)).copied().collect();
        let accounts = users::lock_accounts(conn, &domain::users_of_batch(&recorded, &decidable)).await?;
        let plan = domain::plan_batch(&recorded, &accounts, &decidable);
        // The three writes are pipelined: one round trip.
        futures::try_join!(
            users::set_accounts(conn, &plan.accounts),
            insert(conn, &plan.inserts),
            update(conn, &plan.updates),
        )?;
        let mut decided = plan.outcomes.into_iter();
        Ok(commands
            .iter()
            .map(|(saga_id, _)| match unreadable.get(saga_id) {
                Some(what) => Err(NotApplied::UnreadableRecord(what.clone())),
                None => decided.next().expect("the plan decides every decidable command").map_err(NotApplied::from),
            })
            .collect())
    })
    .await
}

/// Locks the payment rows of `sagas` in key order and reads them: what each recorded saga holds, and the sagas
/// whose row cannot be read, with what is wrong with it.
async fn lock(
    conn: &mut AsyncPgConnection,
    sagas: &[SagaId],
) -> QueryResult<(BTreeMap<SagaId, SagaPayment>, HashMap<SagaId, String>)> {
    let saga_of_key: HashMap<String, SagaId> =
        sagas.iter().map(|&saga_id| (domain::saga_payment_key(saga_id), saga_id)).collect();
    let keys: Vec<&str> = saga_of_key.keys().map(String::as_str).collect();
    let rows: Vec<PaymentRow> = prepared(
        diesel::sql_query(
            "SELECT key, user_id, amount, state, reason FROM payments WHERE key = ANY($1) ORDER BY key FOR UPDATE",
        )
        .bind::<Array<Text>, _>(keys),
    )
    .load(conn)
    .await?;
    let mut recorded = BTreeMap::new();
    let mut unreadable = HashMap::new();
    for row in rows {
        let Some(&saga_id) = saga_of_key.get(&row.key) else { continue };
        match row.into_saga_payment() {
            Ok(payment) => {
                recorded.insert(saga_id, payment);
            }
            Err(what) => {
                unreadable.insert(saga_id, what);
            }
        }
    }
    Ok((recorded, unreadable))
}

/// Inserts the rows of sagas the batch recorded first, in key order. No `ON CONFLICT`: a row another transaction
/// inserted since [`lock`] read none must fail the batch, which is then redelivered and finds it.
async fn insert(mut conn: &AsyncPgConnection, rows: &[NewPayment]) -> QueryResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut keys = Vec::with_capacity(rows.len());
    let mut amounts = Vec::with_capacity(rows.len());
    let mut states = Vec::with_capacity(rows.len());
    let mut reasons = Vec::with_capacity(rows.len());
    for row in rows {
        let (state, reason) = columns(&row.payment)?;
        keys.push(domain::saga_payment_key(row.saga_id));
        amounts.push(bigint(row.amount)?);
        states.push(state);
        reasons.push(reason);
    }
    let user_ids: Vec<&str> = rows.iter().map(|row| row.user_id.as_str()).collect();
    let order_ids: Vec<&str> = rows.iter().map(|row| row.order_id.as_str()).collect();
    prepared(
        diesel::sql_query(
            "INSERT INTO payments (key, user_id, order_id, amount, state, reason) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[]::jsonb[])",
        )
        .bind::<Array<Text>, _>(keys)
        .bind::<Array<Text>, _>(user_ids)
        .bind::<Array<Text>, _>(order_ids)
        .bind::<Array<BigInt>, _>(amounts)
        .bind::<Array<Text>, _>(states)
        .bind::<Array<Nullable<Text>>, _>(reasons),
    )
    .execute(&mut conn)
    .await
    .map(drop)
}

/// Writes the new payment of sagas whose row [`lock`] holds; the rows keep their payer, order and amount.
async fn update(mut conn: &AsyncPgConnection, changes: &[(SagaId, SagaPayment)]) -> QueryResult<()> {
    if changes.is_empty() {
        return Ok(());
    }
    let mut keys = Vec::with_capacity(changes.len());
    let mut states = Vec::with_capacity(changes.len());
    let mut reasons = Vec::with_capacity(changes.len());
    for (saga_id, payment) in changes {
        let (state, reason) = columns(payment)?;
        keys.push(domain::saga_payment_key(*saga_id));
        states.push(state);
        reasons.push(reason);
    }
    prepared(
        diesel::sql_query(
            "UPDATE payments SET state = u.state, reason = u.reason, updated_at = now() \
         FROM unnest($1::text[], $2::text[], $3::text[]::jsonb[]) AS u(key, state, reason) \
         WHERE payments.key = u.key",
        )
        .bind::<Array<Text>, _>(keys)
        .bind::<Array<Text>, _>(states)
        .bind::<Array<Nullable<Text>>, _>(reasons),
    )
    .execute(&mut conn)
    .await
    .map(drop)
}

/// The `state` and `reason` (JSON text) columns of `payment`.
fn columns(payment: &SagaPayment) -> QueryResult<(&'static str, Option<String>)> {
    Ok(match payment {
        SagaPayment::Charged { .. } => ("charged", None),
        SagaPayment::Rejected { reason } => {
            let reason =
                serde_json::to_string(reason).map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
            ("rejected", Some(reason))
        }
        SagaPayment::Refunded => ("refunded", None),
        SagaPayment::Cancelled => ("cancelled", None),
    })
}
