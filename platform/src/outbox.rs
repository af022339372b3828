//! The transactional outbox: a service that must send messages as a consequence of a database change writes them
//! into its `outbox` table in the same transaction as the change, and the [`Relay`] publishes them afterwards
//! with confirms and deletes them once confirmed. The writer hands what it wrote to the relay after its commit, so
//! the common case publishes without reading the table back; a periodic sweep publishes whatever a crash or a
//! failed publish left behind. Receivers are idempotent, so a message published twice (crash between confirm and
//! delete, or a slow publish overtaken by a sweep) is harmless.
//!
//! Handed-over messages do not queue behind each other: several publishes wait for their confirms at once, and the
//! deletes of confirmed rows run beside them, several publishes' rows per statement. So a message committed while
//! an earlier one waits for its confirm goes out at once.
//!
//! Each service that uses the outbox creates the table in its own migrations with [`OUTBOX_TABLE_SQL`].
//! Several replicas may relay at once: rows are claimed with `FOR UPDATE SKIP LOCKED`.

use std::{
    sync::{Arc, Mutex as StdMutex},
    time::Duration,
};

use anyhow::Result;
use diesel::{
    sql_types::{Array, BigInt, Bytea, Double, Nullable, Text},
    QueryableByName,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use tokio::{sync::Notify, task::JoinSet};

use crate::{
    amqp::{Outgoing, Publisher},
    db::{prepared, Pool},
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

/// The most rows one sweep claims and publishes.
const BATCH: i64 = 1000;
/// How often the relay sweeps the table for rows nobody handed it (left by a crashed process or a failed publish).
const SWEEP_INTERVAL: Duration = Duration::from_millis(500);
/// How old a row must be before a sweep takes it: younger ones are still on their way through [`Relay::send`].
const SWEEP_AFTER_SECS: f64 = 2.0;
/// Handed-over batches published at once, each waiting for its own confirms.
const MAX_PUBLISHING: usize = 4;

/// Messages that a transaction wrote into the outbox with [`enqueue`]. Once that transaction has committed, hand
/// them to [`Relay::send`], which publishes them at once instead of waiting for a sweep to read them back.
#[derive(Debug, Default)]
#[must_use = "hand queued messages to Relay::send after the commit, or they wait for a sweep"]
pub struct Queued {
    ids: Vec<i64>,
    messages: Vec<Outgoing>,
}

impl Queued {
    /// How many messages.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Adds the messages of `other`.
    pub fn extend(&mut self, other: Queued) {
        self.ids.extend(other.ids);
        self.messages.extend(other.messages);
    }
}

/// Writes `messages` into the outbox on `conn`, which should be inside the transaction that makes the change
/// they announce, and returns them with their row IDs for [`Relay::send`]. Takes a shared reference, so that it
/// can be pipelined with the transaction's other writes.
pub async fn enqueue(mut conn: &AsyncPgConnection, messages: Vec<Outgoing>) -> diesel::QueryResult<Queued> {
    if messages.is_empty() {
        return Ok(Queued::default());
    }
    #[derive(QueryableByName)]
    struct Inserted {
        #[diesel(sql_type = BigInt)]
        id: i64,
    }
    let queues: Vec<&str> = messages.iter().map(|m| m.queue.as_str()).collect();
    let ids: Vec<&str> = messages.iter().map(|m| m.message_id.as_str()).collect();
    let bodies: Vec<&[u8]> = messages.iter().map(|m| m.body.as_slice()).collect();
    let traces: Vec<Option<&str>> = messages.iter().map(|m| m.traceparent.as_deref()).collect();
    let inserted: Vec<Inserted> = prepared(
        diesel::sql_query(
            "INSERT INTO outbox (queue, message_id, body, traceparent)
         SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[])
         RETURNING id",
        )
        .bind::<Array<Text>, _>(queues)
        .bind::<Array<Text>, _>(ids)
        .bind::<Array<Bytea>, _>(bodies)
        .bind::<Array<Nullable<Text>>, _>(traces),
    )
    .load(&mut conn)
    .await?;
    Ok(Queued { ids: inserted.into_iter().map(|row| row.id).collect(), messages })
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

/// Publishes what is in the outbox: at once what committed transactions hand it with [`Relay::send`], and on a
/// timer whatever else is in the table.
#[derive(Clone)]
pub struct Relay {
    pool: Pool,
    publisher: Arc<Publisher>,
    sent: Arc<StdMutex<Queued>>,
    wake: Arc<Notify>,
    /// Rows whose messages the broker confirmed, to delete.
    published: Arc<StdMutex<Vec<i64>>>,
    published_wake: Arc<Notify>,
    backlog_metric: &'static str,
}

impl Relay {
    /// A relay for `service` publishing the outbox of `pool` through `publisher`.
    pub fn new(service: &'static str, pool: Pool, publisher: Arc<Publisher>) -> Self {
        let backlog_metric = Box::leak(format!("{service}_outbox_backlog_messages").into_boxed_str());
        Self {
            pool,
            publisher,
            sent: Arc::default(),
            wake: Arc::default(),
            published: Arc::default(),
            published_wake: Arc::default(),
            backlog_metric,
        }
    }

    /// Publishes `queued`, whose transaction has committed, as soon as possible. If that fails, the rows stay
    /// in the table for a sweep.
    pub fn send(&self, queued: Queued) {
        if queued.is_empty() {
            return;
        }
        self.sent.lock().expect("relay queue poisoned").extend(queued);
        self.wake.notify_one();
    }

    /// Runs for ever: publishes what [`Relay::send`] hands it as it comes, deletes what was confirmed, and sweeps
    /// the table every [`SWEEP_INTERVAL`] (back to back while there is a backlog), pausing after an error
    /// (database or broker down).
    pub async fn run(self) {
        tokio::join!(self.publish_handed_over(), self.delete_published());
    }

    async fn publish_handed_over(&self) {
        let mut publishing = JoinSet::new();
        let mut next_sweep = tokio::time::Instant::now();
        loop {
            while publishing.try_join_next().is_some() {}
            if publishing.len() < MAX_PUBLISHING {
                let sent = std::mem::take(&mut *self.sent.lock().expect("relay queue poisoned"));
                if !sent.is_empty() {
                    let relay = self.clone();
                    publishing.spawn(async move { relay.forward(sent).await });
                    continue;
                }
            }
            if tokio::time::Instant::now() >= next_sweep {
                match self.pass().await {
                    Ok(n) if n as i64 == BATCH => continue,
                    Ok(_) => next_sweep = tokio::time::Instant::now() + SWEEP_INTERVAL,
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "outbox sweep failed");
                        next_sweep = tokio::time::Instant::now() + Duration::from_millis(500);
                    }
                }
            }
            // Woken by a hand-over, a publish that finished (freeing a place), or the next sweep.
            tokio::select! {
                _ = self.wake.notified() => {}
                Some(_) = publishing.join_next(), if publishing.len() >= MAX_PUBLISHING => {}
                _ = tokio::time::sleep_until(next_sweep) => {}
            }
        }
    }

    /// Publishes rows handed over by [`Relay::send`] and passes them on to be deleted.
    async fn forward(&self, sent: Queued) {
        if let Err(e) = self.publisher.publish(&sent.messages).await {
            tracing::warn!(error = %format!("{e:#}"), "publishing committed outbox messages failed; a sweep will retry");
            return;
        }
        self.published.lock().expect("relay queue poisoned").extend(sent.ids);
        self.published_wake.notify_one();
    }

    /// Deletes the rows of confirmed messages as they come, all that are waiting in one statement. The delete does
    /// not wait for its commit to reach the disk: if a crash or an error loses it, a sweep publishes the rows once
    /// more, which receivers shrug off.
    async fn delete_published(&self) {
        loop {
            self.published_wake.notified().await;
            let ids = std::mem::take(&mut *self.published.lock().expect("relay queue poisoned"));
            if ids.is_empty() {
                continue;
            }
            if let Err(e) = self.delete(&ids).await {
                tracing::warn!(error = %format!("{e:#}"), "deleting published outbox rows failed; a sweep re-sends them");
            }
        }
    }

    async fn delete(&self, ids: &[i64]) -> Result<()> {
        let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
        let mut conn = self.pool.get().await?;
        conn.batch_execute(&format!(
            "SET LOCAL synchronous_commit = off; DELETE FROM outbox WHERE id = ANY('{{{}}}'::bigint[])",
            ids.join(",")
        ))
        .await?;
        Ok(())
    }

    /// One sweep: claims up to [`BATCH`] rows old enough not to be on their way through [`Relay::send`],
    /// publishes them, deletes them once confirmed; returns how many it published.
    pub async fn pass(&self) -> Result<usize> {
        let mut conn = self.pool.get().await?;
        let publisher = self.publisher.clone();
        let published = conn
            .transaction::<usize, anyhow::Error, _>(async |conn| {
                let rows: Vec<OutboxRow> = prepared(
                    diesel::sql_query(
                        "SELECT id, queue, message_id, body, traceparent FROM outbox
                     WHERE created_at < now() - make_interval(secs => $2)
                     ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
                    )
                    .bind::<BigInt, _>(BATCH)
                    .bind::<Double, _>(SWEEP_AFTER_SECS),
                )
                .load(conn)
                .await?;
                if rows.is_empty() {
                    return Ok(0);
                }
                let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
                let messages: Vec<Outgoing> = rows
                    .into_iter()
                    .map(|r| Outgoing {
                        queue: r.queue,
                        body: r.body,
                        message_id: r.message_id,
                        traceparent: r.traceparent,
                    })
                    .collect();
                publisher.publish(&messages).await?;
                prepared(diesel::sql_query("DELETE FROM outbox WHERE id = ANY($1)").bind::<Array<BigInt>, _>(&ids))
                    .execute(conn)
                    .await?;
                Ok(ids.len())
            })
            .await?;
        metrics::gauge!(self.backlog_metric).set(if published as i64 == BATCH { BATCH as f64 } else { 0.0 });
        Ok(published)
    }
}
