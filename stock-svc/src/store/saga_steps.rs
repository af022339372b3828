//! The `saga_steps` table: the saga worker's inbox. One row per saga records what stock-svc decided for it, as a
//! [`Record`] of the participant protocol; [`SagaSteps`] is the protocol's storage for stock, over this table and
//! the items' holdings (see [`items`]). The worker locks the records of a whole batch before deciding, so two
//! batches never decide for one saga at once; a first record is a plain `INSERT`, so two batches that both found
//! no row cannot both record (the second fails on the primary key, its batch is redelivered and then finds the
//! row).

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use diesel::{
    result::{Error as DieselError, QueryResult},
    sql_types::{Array, Jsonb, Nullable, Text},
    QueryableByName,
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use participant::{BatchPlan, NewRecord, Record, Recorded, Storage};
use platform::db::prepared;
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;
use shared_contracts::{LineItem, SagaId};

use super::items;
use crate::domain::{Holding, Line, Stock};

/// The participant protocol's storage for stock: records in `saga_steps`, resources in `items`.
#[derive(Debug, Clone, Copy)]
pub struct SagaSteps;

#[async_trait]
impl Storage for SagaSteps {
    type Effect = Stock;

    async fn lock_records(conn: &AsyncPgConnection, sagas: &[SagaId]) -> QueryResult<Recorded<Vec<Line>>> {
        lock_all(conn, sagas).await
    }

    async fn lock_resources(conn: &AsyncPgConnection, keys: &[&str]) -> QueryResult<HashMap<String, Holding>> {
        items::lock_holdings(conn, keys).await
    }

    async fn write(conn: &AsyncPgConnection, plan: &BatchPlan<Stock>) -> QueryResult<()> {
        // The three writes are pipelined: one round trip.
        futures::try_join!(
            items::set_holdings(conn, &plan.resources),
            insert_all(conn, &plan.inserted),
            release_all(conn, &plan.compensated),
        )
        .map(drop)
    }
}

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
async fn lock_all(mut conn: &AsyncPgConnection, saga_ids: &[SagaId]) -> QueryResult<Recorded<Vec<Line>>> {
    let ids: Vec<String> = saga_ids.iter().map(SagaId::to_string).collect();
    let rows: Vec<StepRow> = prepared(
        diesel::sql_query(
            "SELECT saga_id::text AS saga_id, state, items, reason FROM saga_steps \
             WHERE saga_id = ANY($1::text[]::uuid[]) ORDER BY saga_id FOR UPDATE",
        )
        .bind::<Array<Text>, _>(ids),
    )
    .load(&mut conn)
    .await?;
    let mut recorded = Recorded::default();
    for row in rows {
        let saga_id = row.saga_id.parse().map_err(|e| DieselError::DeserializationError(Box::new(e)))?;
        match into_record(row) {
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

/// Records the first decision of each saga in `records`, in one statement. Fails if any of them has a record: a
/// concurrent batch recorded it since this one looked, and this batch must be retried.
async fn insert_all(
    conn: &AsyncPgConnection,
    records: &BTreeMap<SagaId, NewRecord<Vec<LineItem>, Vec<Line>>>,
) -> QueryResult<()> {
    let columns =
        records.iter().map(|(saga_id, new)| Ok((*saga_id, new_columns(new)?))).collect::<QueryResult<Vec<_>>>()?;
    write_all(
        conn,
        "INSERT INTO saga_steps (saga_id, state, items, reason) \
         SELECT s::uuid, st, i::jsonb, r::jsonb FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS t(s, st, i, r)",
        columns,
    )
    .await
}

/// Records the sagas in `released` as released, with the lines given back; their records exist and are locked
/// by this transaction.
async fn release_all(conn: &AsyncPgConnection, released: &BTreeMap<SagaId, Vec<Line>>) -> QueryResult<()> {
    let columns = released
        .iter()
        .map(|(saga_id, lines)| Ok((*saga_id, ("released", to_json(lines)?, None))))
        .collect::<QueryResult<Vec<_>>>()?;
    write_all(
        conn,
        "UPDATE saga_steps SET state = t.st, items = t.i::jsonb, reason = t.r::jsonb, updated_at = now() \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS t(s, st, i, r) \
         WHERE saga_steps.saga_id = t.s::uuid",
        columns,
    )
    .await
}

/// The `state`, `items` and `reason` columns of one row.
type Columns = (&'static str, Value, Option<Value>);

/// Runs `sql` with `rows` bound as four arrays: saga IDs, states, items and reasons.
async fn write_all(mut conn: &AsyncPgConnection, sql: &str, rows: Vec<(SagaId, Columns)>) -> QueryResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut columns = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (saga_id, (state, items, reason)) in rows {
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

/// The columns of a first record: a rejection keeps the items that were asked for.
fn new_columns(new: &NewRecord<Vec<LineItem>, Vec<Line>>) -> QueryResult<Columns> {
    Ok(match &new.record {
        Record::Applied(lines) => ("reserved", to_json(lines)?, None),
        Record::Rejected(reason) => {
            ("rejected", to_json(&new.request.as_deref().unwrap_or_default())?, Some(to_json(reason)?))
        }
        Record::Compensated(lines) => ("released", to_json(lines)?, None),
        Record::Tombstone => ("cancelled", Value::Array(Vec::new()), None),
    })
}

/// The record a row holds, or what is wrong with it.
fn into_record(row: StepRow) -> Result<Record<Vec<Line>>, String> {
    Ok(match (row.state.as_str(), row.reason) {
        ("reserved", _) => Record::Applied(from_json(row.items)?),
        ("rejected", Some(reason)) => Record::Rejected(from_json(reason)?),
        ("released", _) => Record::Compensated(from_json(row.items)?),
        ("cancelled", _) => Record::Tombstone,
        (state, reason) => {
            return Err(format!("saga step in state {state:?} with reason {reason:?} is not a known record"))
        }
    })
}

fn to_json<T: Serialize>(value: &T) -> QueryResult<Value> {
    serde_json::to_value(value).map_err(|e| DieselError::SerializationError(Box::new(e)))
}

fn from_json<T: DeserializeOwned>(value: Value) -> Result<T, String> {
    serde_json::from_value(value).map_err(|e| e.to_string())
}
