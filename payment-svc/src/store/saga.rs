//! The saga worker's side of the store: [`SagaPayments`], the participant protocol's storage for payment. The
//! protocol's one transaction (`participant::apply_batch`) locks the payment rows of a batch's sagas, then the
//! accounts of the users the batch may touch, plans every command in memory, and writes the plan back through
//! the three statements here: the changed accounts, the new rows, the refunded rows.
//!
//! The payment row keyed [`domain::saga_payment_key`] is the saga's inbox. A redelivered command finds its row
//! and repeats the recorded answer without touching any credit. A saga recorded by another transaction between
//! our read and our insert makes the plain `INSERT` fail with a unique violation: the whole batch rolls back and
//! is redelivered, and then finds the row.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use diesel::{
    sql_types::{Array, BigInt, Jsonb, Nullable, Text},
    QueryResult, QueryableByName,
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use participant::{BatchPlan, NewRecord, Record, Recorded, Storage};
use platform::db::prepared;
use shared_contracts::{FailureReason, SagaId};

use super::{bigint, from_bigint, users};
use crate::domain::{self, Account, Charge, Charged, Payment};

/// The participant protocol's storage for payment: records in `payments`, resources in `users`.
#[derive(Debug, Clone, Copy)]
pub struct SagaPayments;

#[async_trait]
impl Storage for SagaPayments {
    type Effect = Payment;

    async fn lock_records(conn: &AsyncPgConnection, sagas: &[SagaId]) -> QueryResult<Recorded<Charged>> {
        lock(conn, sagas).await
    }

    async fn lock_resources(conn: &AsyncPgConnection, keys: &[&str]) -> QueryResult<HashMap<String, Account>> {
        users::lock_accounts(conn, keys).await
    }

    async fn write(conn: &AsyncPgConnection, plan: &BatchPlan<Payment>) -> QueryResult<()> {
        // The three writes are pipelined: one round trip.
        futures::try_join!(
            users::set_accounts(conn, &plan.resources),
            insert(conn, &plan.inserted),
            refund(conn, &plan.compensated),
        )
        .map(drop)
    }
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
    fn into_record(self) -> Result<Record<Charged>, String> {
        let charged = || Charged { user_id: self.user_id.clone(), amount: from_bigint(self.amount) };
        match self.state.as_str() {
            "charged" => Ok(Record::Applied(charged())),
            "refunded" => Ok(Record::Compensated(charged())),
            "cancelled" => Ok(Record::Tombstone),
            "rejected" => {
                let reason = self.reason.clone().ok_or("a rejection without a reason")?;
                let reason: FailureReason = serde_json::from_value(reason).map_err(|e| e.to_string())?;
                Ok(Record::Rejected(reason))
            }
            other => Err(format!("state {other:?}")),
        }
    }
}

/// Locks the payment rows of `sagas` in key order and reads them: what each recorded saga holds, and the sagas
/// whose row cannot be read, with what is wrong with it.
async fn lock(mut conn: &AsyncPgConnection, sagas: &[SagaId]) -> QueryResult<Recorded<Charged>> {
    let saga_of_key: HashMap<String, SagaId> =
        sagas.iter().map(|&saga_id| (domain::saga_payment_key(saga_id), saga_id)).collect();
    let keys: Vec<&str> = saga_of_key.keys().map(String::as_str).collect();
    let rows: Vec<PaymentRow> = prepared(
        diesel::sql_query(
            "SELECT key, user_id, amount, state, reason FROM payments WHERE key = ANY($1) ORDER BY key FOR UPDATE",
        )
        .bind::<Array<Text>, _>(keys),
    )
    .load(&mut conn)
    .await?;
    let mut recorded = Recorded::default();
    for row in rows {
        let Some(&saga_id) = saga_of_key.get(&row.key) else { continue };
        match row.into_record() {
            Ok(record) => {
                recorded.records.insert(saga_id, record);
            }
            Err(what) => {
                recorded.unreadable.insert(saga_id, what);
            }
        }
    }
    Ok(recorded)
}

/// Inserts the rows of sagas the batch recorded first, in key order. No `ON CONFLICT`: a row another transaction
/// inserted since [`lock`] read none must fail the batch, which is then redelivered and finds it. A row names the
/// payer and order of its charge (none for a tombstone) and what was taken (0 when nothing was).
async fn insert(mut conn: &AsyncPgConnection, rows: &BTreeMap<SagaId, NewRecord<Charge, Charged>>) -> QueryResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut keys = Vec::with_capacity(rows.len());
    let mut user_ids = Vec::with_capacity(rows.len());
    let mut order_ids = Vec::with_capacity(rows.len());
    let mut amounts = Vec::with_capacity(rows.len());
    let mut states = Vec::with_capacity(rows.len());
    let mut reasons = Vec::with_capacity(rows.len());
    for (saga_id, row) in rows {
        let (state, reason) = columns(&row.record)?;
        let taken = match &row.record {
            Record::Applied(charged) | Record::Compensated(charged) => charged.amount,
            Record::Rejected(_) | Record::Tombstone => 0,
        };
        keys.push(domain::saga_payment_key(*saga_id));
        user_ids.push(row.request.as_ref().map_or("", |charge| charge.user_id.as_str()));
        order_ids.push(row.request.as_ref().map_or("", |charge| charge.order_id.as_str()));
        amounts.push(bigint(taken)?);
        states.push(state);
        reasons.push(reason);
    }
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

/// Marks refunded the rows of sagas whose charge the batch gave back, which [`lock`] holds; the rows keep their
/// payer, order and amount.
async fn refund(mut conn: &AsyncPgConnection, refunded: &BTreeMap<SagaId, Charged>) -> QueryResult<()> {
    if refunded.is_empty() {
        return Ok(());
    }
    let keys: Vec<String> = refunded.keys().map(|saga_id| domain::saga_payment_key(*saga_id)).collect();
    let states = vec!["refunded"; keys.len()];
    let reasons: Vec<Option<String>> = vec![None; keys.len()];
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

/// The `state` and `reason` (JSON text) columns of `record`.
fn columns(record: &Record<Charged>) -> QueryResult<(&'static str, Option<String>)> {
    Ok(match record {
        Record::Applied(_) => ("charged", None),
        Record::Rejected(reason) => {
            let reason =
                serde_json::to_string(reason).map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
            ("rejected", Some(reason))
        }
        Record::Compensated(_) => ("refunded", None),
        Record::Tombstone => ("cancelled", None),
    })
}
