//! The `saga_steps` table: the saga worker's inbox. One row per saga records what stock-svc decided for it, as a
//! [`RecordedStep`]. The worker locks the records of a whole batch before deciding, so two batches never decide for
//! one saga at once; a first record is a plain `INSERT`, so two batches that both found no row cannot both record
//! (the second fails on the primary key, its batch is redelivered and then finds the row).

use std::collections::{BTreeMap, HashMap};

use diesel::{
    result::{Error as DieselError, QueryResult},
    sql_types::{Array, Jsonb, Nullable, Text},
    QueryableByName,
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use platform::db::prepared;
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;
use shared_contracts::SagaId;

use crate::domain::RecordedStep;

#[derive(QueryableByName)]
struct StepRow {
    #[diesel(sql_type = Text)]
    saga_id: String,
    #[diesel(sql_type = Text)]
    state: String,
    #[diesel(sql_type = Jsonb)]
    items: Value,
    #[diesel(sql_type = Nullable<Jsonb>)]
    reason: Option<Value>,
}

/// The records of those of `saga_ids` that have one, locked until the end of the transaction (in ID order, so that
/// concurrent batches do not deadlock over them).
pub async fn lock_all(conn: &mut AsyncPgConnection, saga_ids: &[SagaId]) -> QueryResult<HashMap<SagaId, RecordedStep>> {
    let ids: Vec<String> = saga_ids.iter().map(SagaId::to_string).collect();
    let rows: Vec<StepRow> = prepared(
        diesel::sql_query(
            "SELECT saga_id::text AS saga_id, state, items, reason FROM saga_steps \
             WHERE saga_id = ANY($1::text[]::uuid[]) ORDER BY saga_id FOR UPDATE",
        )
        .bind::<Array<Text>, _>(ids),
    )
    .load(conn)
    .await?;
    rows.into_iter()
        .map(|row| {
            let saga_id = row.saga_id.parse().map_err(|e| DieselError::DeserializationError(Box::new(e)))?;
            Ok((saga_id, into_step(row)?))
        })
        .collect()
}

/// Records the first decision of each saga in `steps`, in one statement. Fails if any of them has a record: a
/// concurrent batch recorded it since this one looked, and this batch must be retried.
pub async fn insert_all(conn: &AsyncPgConnection, steps: &BTreeMap<SagaId, RecordedStep>) -> QueryResult<()> {
    write_all(
        conn,
        "INSERT INTO saga_steps (saga_id, state, items, reason) \
         SELECT s::uuid, st, i::jsonb, r::jsonb FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS t(s, st, i, r)",
        steps,
    )
    .await
}

/// Overwrites the records of the sagas in `steps`, which exist and are locked by this transaction.
pub async fn update_all(conn: &AsyncPgConnection, steps: &BTreeMap<SagaId, RecordedStep>) -> QueryResult<()> {
    write_all(
        conn,
        "UPDATE saga_steps SET state = t.st, items = t.i::jsonb, reason = t.r::jsonb, updated_at = now() \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS t(s, st, i, r) \
         WHERE saga_steps.saga_id = t.s::uuid",
        steps,
    )
    .await
}

/// Runs `sql` with the columns of `steps` bound as four arrays: saga IDs, states, items and reasons.
async fn write_all(mut conn: &AsyncPgConnection, sql: &str, steps: &BTreeMap<SagaId, RecordedStep>) -> QueryResult<()> {
    if steps.is_empty() {
        return Ok(());
    }
    let mut columns = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (saga_id, step) in steps {
        let (state, items, reason) = into_columns(step)?;
        columns.0.push(saga_id.to_string());
        columns.1.push(state);
        columns.2.push(items.to_string());
        columns.3.push(reason.map(|reason| reason.to_string()));
    }
    let query = diesel::sql_query(sql)
        .bind::<Array<Text>, _>(columns.0)
        .bind::<Array<Text>, _>(columns.1)
        .bind::<Array<Text>, _>(columns.2)
        .bind::<Array<Nullable<Text>>, _>(columns.3);
    prepared(query).execute(&mut conn).await.map(drop)
}

fn into_columns(step: &RecordedStep) -> QueryResult<(&'static str, Value, Option<Value>)> {
    Ok(match step {
        RecordedStep::Reserved { lines } => ("reserved", to_json(lines)?, None),
        RecordedStep::Rejected { items, reason } => ("rejected", to_json(items)?, Some(to_json(reason)?)),
        RecordedStep::Released { lines } => ("released", to_json(lines)?, None),
        RecordedStep::Cancelled => ("cancelled", Value::Array(Vec::new()), None),
    })
}

fn into_step(row: StepRow) -> QueryResult<RecordedStep> {
    Ok(match (row.state.as_str(), row.reason) {
        ("reserved", _) => RecordedStep::Reserved { lines: from_json(row.items)? },
        ("rejected", Some(reason)) => {
            RecordedStep::Rejected { items: from_json(row.items)?, reason: from_json(reason)? }
        }
        ("released", _) => RecordedStep::Released { lines: from_json(row.items)? },
        ("cancelled", _) => RecordedStep::Cancelled,
        (state, reason) => {
            let unreadable = format!("saga step in state {state:?} with reason {reason:?} is not a known record");
            return Err(DieselError::DeserializationError(unreadable.into()));
        }
    })
}

fn to_json<T: Serialize>(value: &T) -> QueryResult<Value> {
    serde_json::to_value(value).map_err(|e| DieselError::SerializationError(Box::new(e)))
}

fn from_json<T: DeserializeOwned>(value: Value) -> QueryResult<T> {
    serde_json::from_value(value).map_err(|e| DieselError::DeserializationError(Box::new(e)))
}
