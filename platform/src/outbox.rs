//! The transactional outbox: a service that must send messages as a consequence of a database change writes them
//! into its `outbox` table in the same transaction as the change, and the [`Relay`] publishes them afterwards
//! with confirms and deletes them once confirmed. A crash anywhere leaves the rows in place to be published by the
//! next relay run; receivers are idempotent, so a message published twice (crash between confirm and delete) is
//! harmless.
//!
//! Each service that uses the outbox creates the table in its own migrations with [`OUTBOX_TABLE_SQL`].
//! Several replicas may relay at once: rows are claimed with `FOR UPDATE SKIP LOCKED`.

use std::{sync::Arc, time::Duration};

use anyhow::Result;
use diesel::{
    sql_types::{Array, BigInt, Bytea, Nullable, Text},
    QueryableByName,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use tokio::sync::Notify;

use crate::{
    amqp::{Outgoing, Publisher},
    db::Pool,
};

/// The DDL of the outbox table, for the migrations of each service that uses it.
pub const OUTBOX_TABLE_SQL: &str = "CREATE TABLE outbox (
    id BIGSERIAL PRIMARY KEY,
    queue TEXT NOT NULL,
    message_id TEXT NOT NULL,
    body BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
)";

/// The migration after [`OUTBOX_TABLE_SQL`]: each row keeps the trace context its message is published with.
pub const OUTBOX_TRACE_COLUMN_SQL: &str = "ALTER TABLE outbox ADD COLUMN traceparent TEXT";

/// The most rows one relay pass claims and publishes.
const BATCH: i64 = 1000;
/// How often the relay looks at the table when nobody woke it (covers rows left by a crashed process).
const SWEEP_INTERVAL: Duration = Duration::from_millis(500);

/// Writes `messages` into the outbox on `conn`, which should be inside the transaction that makes the change
/// they announce.
pub async fn enqueue(conn: &mut AsyncPgConnection, messages: &[Outgoing]) -> diesel::QueryResult<()> {
    if messages.is_empty() {
        return Ok(());
    }
    let queues: Vec<&str> = messages.iter().map(|m| m.queue.as_str()).collect();
    let ids: Vec<&str> = messages.iter().map(|m| m.message_id.as_str()).collect();
    let bodies: Vec<&[u8]> = messages.iter().map(|m| m.body.as_slice()).collect();
    let traces: Vec<Option<&str>> = messages.iter().map(|m| m.traceparent.as_deref()).collect();
    diesel::sql_query(
        "INSERT INTO outbox (queue, message_id, body, traceparent)
         SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[])",
    )
    .bind::<Array<Text>, _>(queues)
    .bind::<Array<Text>, _>(ids)
    .bind::<Array<Bytea>, _>(bodies)
    .bind::<Array<Nullable<Text>>, _>(traces)
    .execute(conn)
    .await
    .map(drop)
}

#[derive(QueryableByName)]
struct OutboxRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    queue: String,
    #[diesel(sql_type = Text)]
    message_id: String,
    #[diesel(sql_type = Bytea)]
    body: Vec<u8>,
    #[diesel(sql_type = Nullable<Text>)]
    traceparent: Option<String>,
}

/// Publishes what is in the outbox. Wake it after committing new rows; it also sweeps on a timer.
#[derive(Clone)]
pub struct Relay {
    pool: Pool,
    publisher: Arc<Publisher>,
    wake: Arc<Notify>,
    backlog_metric: &'static str,
}

impl Relay {
    /// A relay for `service` publishing the outbox of `pool` through `publisher`.
    pub fn new(service: &'static str, pool: Pool, publisher: Arc<Publisher>) -> Self {
        let backlog_metric = Box::leak(format!("{service}_outbox_backlog_messages").into_boxed_str());
        Self { pool, publisher, wake: Arc::new(Notify::new()), backlog_metric }
    }

    /// Asks the relay to run a pass soon.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Runs for ever: a pass whenever woken or every [`SWEEP_INTERVAL`], passes back to back while there is a
    /// backlog, and a pause after an error (database or broker down).
    pub async fn run(self) {
        loop {
            match self.pass().await {
                Ok(n) if n as i64 == BATCH => continue,
                Ok(_) => {
                    let _ = tokio::time::timeout(SWEEP_INTERVAL, self.wake.notified()).await;
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "outbox relay pass failed");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    /// Claims up to [`BATCH`] rows, publishes them, deletes them once confirmed; returns how many it published.
    pub async fn pass(&self) -> Result<usize> {
        let mut conn = self.pool.get().await?;
        let publisher = self.publisher.clone();
        let published = conn
            .transaction::<usize, anyhow::Error, _>(async |conn| {
                let rows: Vec<OutboxRow> = diesel::sql_query(
                    "SELECT id, queue, message_id, body, traceparent FROM outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
                )
                .bind::<BigInt, _>(BATCH)
                .load(conn)
                .await?;
                if rows.is_empty() {
                    return Ok(0);
                }
                let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
                let messages: Vec<Outgoing> = rows
                    .into_iter()
                    .map(|r| Outgoing { queue: r.queue, body: r.body, message_id: r.message_id, traceparent: r.traceparent })
                    .collect();
                publisher.publish(&messages).await?;
                diesel::sql_query("DELETE FROM outbox WHERE id = ANY($1)")
                    .bind::<Array<BigInt>, _>(&ids)
                    .execute(conn)
                    .await?;
                Ok(ids.len())
            })
            .await?;
        metrics::gauge!(self.backlog_metric).set(if published as i64 == BATCH { BATCH as f64 } else { 0.0 });
        Ok(published)
    }
}
