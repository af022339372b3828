//! The `saga_steps` table: the saga worker's inbox. One row per saga records what stock-svc decided for it, as a
//! [`RecordedStep`]. The worker locks the row before deciding, so two commands for one saga never decide at once;
//! a first record is a plain `INSERT`, so two workers that both found no row cannot both record (the second
//! fails on the primary key, its batch is redelivered and then finds the row).

use diesel::{
    result::{Error as DieselError, QueryResult},
    sql_types::{Jsonb, Nullable, Text},
    OptionalExtension, QueryableByName,
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;
use shared_contracts::SagaId;

use crate::domain::RecordedStep;

#[derive(QueryableByName)]
struct StepRow {
    #[diesel(sql_type = Text)]
    state: String,
    #[diesel(sql_type = Jsonb)]
    items: Value,
    #[diesel(sql_type = Nullable<Jsonb>)]
    reason: Option<Value>,
}

/// The record of `saga_id`, locked until the end of the transaction; `None` if nothing was recorded yet.
pub async fn lock(conn: &mut AsyncPgConnection, saga_id: SagaId) -> QueryResult<Option<RecordedStep>> {
    let row: Option<StepRow> =
        diesel::sql_query("SELECT state, items, reason FROM saga_steps WHERE saga_id = $1::uuid FOR UPDATE")
            .bind::<Text, _>(saga_id.to_string())
            .get_result(conn)
            .await
            .optional()?;
    row.map(into_step).transpose()
}

/// Records the first decision for `saga_id`. Fails if a record exists.
pub async fn insert(conn: &mut AsyncPgConnection, saga_id: SagaId, step: &RecordedStep) -> QueryResult<()> {
    let (state, items, reason) = into_columns(step)?;
    diesel::sql_query("INSERT INTO saga_steps (saga_id, state, items, reason) VALUES ($1::uuid, $2, $3, $4)")
        .bind::<Text, _>(saga_id.to_string())
        .bind::<Text, _>(state)
        .bind::<Jsonb, _>(items)
        .bind::<Nullable<Jsonb>, _>(reason)
        .execute(conn)
        .await
        .map(drop)
}

/// Marks the reservation of `saga_id` as given back, keeping the record of its lines.
pub async fn mark_released(conn: &mut AsyncPgConnection, saga_id: SagaId) -> QueryResult<()> {
    diesel::sql_query("UPDATE saga_steps SET state = 'released', updated_at = now() WHERE saga_id = $1::uuid")
        .bind::<Text, _>(saga_id.to_string())
        .execute(conn)
        .await
        .map(drop)
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
