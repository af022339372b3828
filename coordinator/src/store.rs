//! The coordinator's tables: `sagas` (one row per checkout: its request, state and retry schedule) and
//! `saga_transitions` (the history operators read).
//!
//! What the saga loop ([`crate::engine`]) needs of them is the narrow [`SagaStore`] trait, implemented here for
//! PostgreSQL by [`PgSagaStore`] on a connection the caller holds inside a transaction; several rows are written
//! per statement so that a batch of messages costs a handful of round trips, and the statements take a shared
//! reference to the connection, so that the ones that do not depend on each other can be pipelined. The
//! operators' reads (lists, one saga, its history, counts) are plain functions.
//!
//! Statuses are [`Status`] values here as everywhere: stored and bound by their name, parsed when read, and the
//! lists of unfinished statuses the queries need come from [`Status::unfinished`].

use std::collections::BTreeMap;

use async_trait::async_trait;
use diesel::{
    deserialize::{self, FromSql},
    pg::{Pg, PgValue},
    sql_types::{Array, BigInt, Integer, Jsonb, Nullable, Text, Timestamptz},
    QueryResult, QueryableByName,
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use platform::db::prepared;
use serde_json::Value;
use shared_contracts::{CheckoutRequest, SagaId};

use crate::{
    audit::Actor,
    domain::{Command, Event, SagaState, Status},
};

/// What the saga loop needs of storage, all inside one unit of work that the caller commits (for PostgreSQL, its
/// transaction): create sagas, lock the ones it is about to change, and write what changed with its history.
#[async_trait]
pub trait SagaStore: Sync {
    /// Why storage failed.
    type Error: Send;

    /// Creates the sagas that do not exist yet, all in `state`, retried after `retry_in_ms` unless answered, and
    /// returns the IDs it created (a redelivered start creates nothing).
    async fn insert_new(
        &self,
        sagas: &[NewSaga],
        state: &SagaState,
        retry_in_ms: i64,
    ) -> Result<Vec<SagaId>, Self::Error>;

    /// Loads and locks the sagas with these IDs until the unit of work ends; missing ones are left out.
    async fn lock(&self, ids: &[SagaId]) -> Result<Vec<SagaRecord>, Self::Error>;

    /// Loads and locks up to `limit` sagas whose retry time has come, skipping ones another coordinator holds.
    async fn lock_retry_due(&self, limit: i64) -> Result<Vec<SagaRecord>, Self::Error>;

    /// Writes the new states of locked sagas and appends the history lines.
    async fn write(&self, updates: &[SagaUpdate], history: &[TransitionRecord]) -> Result<(), Self::Error>;
}

/// [`SagaStore`] on a PostgreSQL connection inside the caller's transaction.
pub struct PgSagaStore<'c> {
    conn: &'c AsyncPgConnection,
}

impl<'c> PgSagaStore<'c> {
    /// Sagas read and written on `conn`, which the caller has opened a transaction on.
    pub fn new(conn: &'c AsyncPgConnection) -> Self {
        Self { conn }
    }
}

#[async_trait]
impl SagaStore for PgSagaStore<'_> {
    type Error = diesel::result::Error;

    async fn insert_new(&self, sagas: &[NewSaga], state: &SagaState, retry_in_ms: i64) -> QueryResult<Vec<SagaId>> {
        insert_new(self.conn, sagas, state, retry_in_ms).await
    }

    async fn lock(&self, ids: &[SagaId]) -> QueryResult<Vec<SagaRecord>> {
        lock(self.conn, ids).await
    }

    async fn lock_retry_due(&self, limit: i64) -> QueryResult<Vec<SagaRecord>> {
        lock_retry_due(self.conn, limit).await
    }

    async fn write(&self, updates: &[SagaUpdate], history: &[TransitionRecord]) -> QueryResult<()> {
        // Pipelined: they touch different tables.
        futures::try_join!(update(self.conn, updates), record_transitions(self.conn, history)).map(drop)
    }
}

/// A status column: stored by its name, which must be one of [`Status::ALL`].
impl FromSql<Text, Pg> for Status {
    fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
        let name = <String as FromSql<Text, Pg>>::from_sql(bytes)?;
        Ok(name.parse()?)
    }
}

/// The names of the statuses of sagas still under way, bound as a parameter wherever a query needs them.
fn unfinished_statuses() -> Vec<&'static str> {
    Status::unfinished().map(Status::as_str).collect()
}

/// A saga to create.
#[derive(Debug, Clone)]
pub struct NewSaga {
    /// Its ID, also the checkout's.
    pub id: SagaId,
    /// What order-svc asked for.
    pub request: CheckoutRequest,
    /// The trace context of the start, which its first commands and its retries continue.
    pub traceparent: Option<String>,
}

/// The coordinator's schema.
pub const MIGRATIONS: diesel_migrations::EmbeddedMigrations = diesel_migrations::embed_migrations!("migrations");

/// A saga as stored.
#[derive(Debug, Clone)]
pub struct SagaRecord {
    /// Its ID, also the checkout's.
    pub id: SagaId,
    /// What order-svc asked for.
    pub request: CheckoutRequest,
    /// Where it stands.
    pub state: SagaState,
    /// Bumped by every change of state.
    pub version: i32,
    /// Retries since the last progress.
    pub retries: i32,
    /// When the saga began.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// When its state last changed.
    pub updated_at: chrono::DateTime<chrono::Utc>,
    /// The trace context of its start, which its retries continue.
    pub traceparent: Option<String>,
}

#[derive(QueryableByName)]
struct SagaRow {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Jsonb)]
    request: Value,
    #[diesel(sql_type = Jsonb)]
    state: Value,
    #[diesel(sql_type = Integer)]
    version: i32,
    #[diesel(sql_type = Integer)]
    retries: i32,
    #[diesel(sql_type = Timestamptz)]
    created_at: chrono::DateTime<chrono::Utc>,
    #[diesel(sql_type = Timestamptz)]
    updated_at: chrono::DateTime<chrono::Utc>,
    #[diesel(sql_type = Nullable<Text>)]
    traceparent: Option<String>,
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> diesel::result::Error {
    diesel::result::Error::DeserializationError(format!("stored {what} does not parse: {e}").into())
}

impl TryFrom<SagaRow> for SagaRecord {
    type Error = diesel::result::Error;

    fn try_from(row: SagaRow) -> QueryResult<Self> {
        Ok(Self {
            id: row.id.parse().map_err(|e| corrupt("saga id", e))?,
            request: serde_json::from_value(row.request).map_err(|e| corrupt("request", e))?,
            state: serde_json::from_value(row.state).map_err(|e| corrupt("state", e))?,
            version: row.version,
            retries: row.retries,
            created_at: row.created_at,
            updated_at: row.updated_at,
            traceparent: row.traceparent,
        })
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("domain types always serialise")
}

/// See [`SagaStore::insert_new`].
async fn insert_new(
    mut conn: &AsyncPgConnection,
    sagas: &[NewSaga],
    state: &SagaState,
    retry_in_ms: i64,
) -> QueryResult<Vec<SagaId>> {
    if sagas.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = sagas.iter().map(|saga| saga.id.to_string()).collect();
    let orders: Vec<&str> = sagas.iter().map(|saga| saga.request.order_id.as_str()).collect();
    let users: Vec<&str> = sagas.iter().map(|saga| saga.request.user_id.as_str()).collect();
    let requests: Vec<Value> = sagas.iter().map(|saga| to_json(&saga.request)).collect();
    let traceparents: Vec<Option<&str>> = sagas.iter().map(|saga| saga.traceparent.as_deref()).collect();
    #[derive(QueryableByName)]
    struct Inserted {
        #[diesel(sql_type = Text)]
        id: String,
    }
    let inserted: Vec<Inserted> = prepared(
        diesel::sql_query(
            "INSERT INTO sagas (id, order_id, user_id, request, status, state, next_retry_at, traceparent)
         SELECT i::uuid, o, u, r, $5, $6, now() + make_interval(secs => $7::double precision / 1000), tp
         FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[], $8::text[]) AS t(i, o, u, r, tp)
         ON CONFLICT (id) DO NOTHING
         RETURNING id::text",
        )
        .bind::<Array<Text>, _>(&ids)
        .bind::<Array<Text>, _>(&orders)
        .bind::<Array<Text>, _>(&users)
        .bind::<Array<Jsonb>, _>(&requests)
        .bind::<Text, _>(state.status().as_str())
        .bind::<Jsonb, _>(to_json(state))
        .bind::<BigInt, _>(retry_in_ms)
        .bind::<Array<Nullable<Text>>, _>(&traceparents),
    )
    .load(&mut conn)
    .await?;
    inserted.into_iter().map(|row| row.id.parse().map_err(|e| corrupt("saga id", e))).collect()
}

const SAGA_COLUMNS: &str = "id::text AS id, request, state, version, retries, created_at, updated_at, traceparent";

/// Loads and row-locks the sagas with these IDs (missing ones are left out), in ID order so that two
/// transactions locking overlapping sets cannot deadlock.
async fn lock(mut conn: &AsyncPgConnection, ids: &[SagaId]) -> QueryResult<Vec<SagaRecord>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = ids.iter().map(SagaId::to_string).collect();
    let rows: Vec<SagaRow> = prepared(
        diesel::sql_query(format!(
            "SELECT {SAGA_COLUMNS} FROM sagas WHERE id = ANY($1::text[]::uuid[]) ORDER BY id FOR UPDATE"
        ))
        .bind::<Array<Text>, _>(&ids),
    )
    .load(&mut conn)
    .await?;
    rows.into_iter().map(SagaRecord::try_from).collect()
}

/// See [`SagaStore::lock_retry_due`].
async fn lock_retry_due(mut conn: &AsyncPgConnection, limit: i64) -> QueryResult<Vec<SagaRecord>> {
    let rows: Vec<SagaRow> = prepared(
        diesel::sql_query(format!(
            "SELECT {SAGA_COLUMNS} FROM sagas WHERE next_retry_at <= now()
         ORDER BY next_retry_at LIMIT $1 FOR UPDATE SKIP LOCKED"
        ))
        .bind::<BigInt, _>(limit),
    )
    .load(&mut conn)
    .await?;
    rows.into_iter().map(SagaRecord::try_from).collect()
}

/// The new state of a saga after a batch, with when to retry if it still waits for replies.
#[derive(Debug, Clone)]
pub struct SagaUpdate {
    /// Which saga.
    pub id: SagaId,
    /// Its state now.
    pub state: SagaState,
    /// Retries since the last progress.
    pub retries: i32,
    /// Milliseconds until the next retry, or `None` when nothing is awaited.
    pub retry_in_ms: Option<i64>,
}

/// Writes the new states (and bumps versions) in one statement. `updated_at` moves only when the state
/// changes, so a saga that is merely retried still shows as stuck.
async fn update(mut conn: &AsyncPgConnection, updates: &[SagaUpdate]) -> QueryResult<()> {
    if updates.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = updates.iter().map(|u| u.id.to_string()).collect();
    let statuses: Vec<&str> = updates.iter().map(|u| u.state.status().as_str()).collect();
    let states: Vec<Value> = updates.iter().map(|u| to_json(&u.state)).collect();
    let retries: Vec<i32> = updates.iter().map(|u| u.retries).collect();
    let delays: Vec<Option<i64>> = updates.iter().map(|u| u.retry_in_ms).collect();
    prepared(
        diesel::sql_query(
            "UPDATE sagas SET status = t.s, state = t.st, retries = t.r, version = version + 1,
             updated_at = CASE WHEN sagas.state IS DISTINCT FROM t.st THEN now() ELSE sagas.updated_at END,
             next_retry_at = now() + make_interval(secs => t.d::double precision / 1000)
         FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::int[], $5::bigint[]) AS t(i, s, st, r, d)
         WHERE sagas.id = t.i::uuid",
        )
        .bind::<Array<Text>, _>(&ids)
        .bind::<Array<Text>, _>(&statuses)
        .bind::<Array<Jsonb>, _>(&states)
        .bind::<Array<Integer>, _>(&retries)
        .bind::<Array<Nullable<BigInt>>, _>(&delays),
    )
    .execute(&mut conn)
    .await
    .map(drop)
}

/// One line of a saga's history.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TransitionRecord {
    /// Which saga.
    pub saga_id: SagaId,
    /// What happened: `"start"`, or an [`Event`].
    pub event: Value,
    /// The status before, `None` for the start.
    pub from: Option<Status>,
    /// The state after.
    pub state: SagaState,
    /// What it sent.
    pub commands: Vec<Command>,
    /// The operator whose action it was; `None` for the participants' replies and the retry timer.
    pub actor: Option<Actor>,
}

impl TransitionRecord {
    /// The history line of applying `event`.
    pub fn of_event(saga_id: SagaId, event: &Event, from: Status, state: &SagaState, commands: &[Command]) -> Self {
        Self {
            saga_id,
            event: to_json(event),
            from: Some(from),
            state: state.clone(),
            commands: commands.to_vec(),
            actor: None,
        }
    }

    /// The history line of creating a saga.
    pub fn of_start(saga_id: SagaId, state: &SagaState, commands: &[Command]) -> Self {
        let event = serde_json::json!({"event": "start"});
        Self { saga_id, event, from: None, state: state.clone(), commands: commands.to_vec(), actor: None }
    }
}

/// Appends history lines in one statement.
async fn record_transitions(mut conn: &AsyncPgConnection, records: &[TransitionRecord]) -> QueryResult<()> {
    if records.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = records.iter().map(|r| r.saga_id.to_string()).collect();
    let events: Vec<&Value> = records.iter().map(|r| &r.event).collect();
    let from: Vec<Option<&str>> = records.iter().map(|r| r.from.map(Status::as_str)).collect();
    let to: Vec<&str> = records.iter().map(|r| r.state.status().as_str()).collect();
    let states: Vec<Value> = records.iter().map(|r| to_json(&r.state)).collect();
    let commands: Vec<Value> = records.iter().map(|r| to_json(&r.commands)).collect();
    let actors: Vec<Option<Value>> = records.iter().map(|r| r.actor.as_ref().map(to_json)).collect();
    prepared(
        diesel::sql_query(
            "INSERT INTO saga_transitions (saga_id, event, from_status, to_status, state, commands, actor)
         SELECT i::uuid, e, f, t, s, c, a
         FROM unnest($1::text[], $2::jsonb[], $3::text[], $4::text[], $5::jsonb[], $6::jsonb[], $7::jsonb[])
             AS x(i, e, f, t, s, c, a)",
        )
        .bind::<Array<Text>, _>(&ids)
        .bind::<Array<Jsonb>, _>(&events)
        .bind::<Array<Nullable<Text>>, _>(&from)
        .bind::<Array<Text>, _>(&to)
        .bind::<Array<Jsonb>, _>(&states)
        .bind::<Array<Jsonb>, _>(&commands)
        .bind::<Array<Nullable<Jsonb>>, _>(&actors),
    )
    .execute(&mut conn)
    .await
    .map(drop)
}

/// A saga as operators see it.
#[derive(Debug, QueryableByName, serde::Serialize, utoipa::ToSchema)]
pub struct SagaSummary {
    /// The saga ID.
    #[diesel(sql_type = Text)]
    pub id: String,
    /// The order being checked out.
    #[diesel(sql_type = Text)]
    pub order_id: String,
    /// Who pays.
    #[diesel(sql_type = Text)]
    pub user_id: String,
    /// Where it stands, coarsely.
    #[diesel(sql_type = Text)]
    pub status: Status,
    /// Why it fails or failed, as the `kind` of its failure reason (`out_of_stock`, `insufficient_credit`,
    /// `timed_out`, `aborted`, ...); `null` while nothing has failed.
    #[diesel(sql_type = Nullable<Text>)]
    pub reason: Option<String>,
    /// The full state.
    #[diesel(sql_type = Jsonb)]
    pub state: Value,
    /// What order-svc asked for.
    #[diesel(sql_type = Jsonb)]
    pub request: Value,
    /// Changes so far.
    #[diesel(sql_type = Integer)]
    pub version: i32,
    /// Retries since the last progress.
    #[diesel(sql_type = Integer)]
    pub retries: i32,
    /// When unanswered commands are next re-sent.
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub next_retry_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Created.
    #[diesel(sql_type = Timestamptz)]
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Last changed.
    #[diesel(sql_type = Timestamptz)]
    pub updated_at: chrono::DateTime<chrono::Utc>,
    /// The W3C trace context of the checkout, to find its trace.
    #[diesel(sql_type = Nullable<Text>)]
    pub traceparent: Option<String>,
}

/// Which timestamp a list is sorted by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SortKey {
    /// When the saga was created.
    #[default]
    CreatedAt,
    /// When its state last changed.
    UpdatedAt,
}

impl SortKey {
    /// The name in the API, also the column's.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CreatedAt => "created_at",
            Self::UpdatedAt => "updated_at",
        }
    }
}

/// Which way a list is sorted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SortOrder {
    /// Oldest first.
    Asc,
    /// Newest first.
    #[default]
    Desc,
}

impl SortOrder {
    /// The name in the API, also the SQL keyword's.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Asc => "asc",
            Self::Desc => "desc",
        }
    }
}

/// Which sagas an operator asks for, in which order, which page. Every condition that is set must hold.
#[derive(Debug, Clone, Default)]
pub struct SagaFilter {
    /// Only these statuses; empty for any.
    pub statuses: Vec<Status>,
    /// Only sagas failing or failed for this reason (see [`SagaSummary::reason`]).
    pub reason: Option<String>,
    /// Only this order.
    pub order_id: Option<String>,
    /// Only this user.
    pub user_id: Option<String>,
    /// Only sagas created at or after this.
    pub created_after: Option<chrono::DateTime<chrono::Utc>>,
    /// Only sagas created before this.
    pub created_before: Option<chrono::DateTime<chrono::Utc>>,
    /// Only sagas last changed at or after this.
    pub updated_after: Option<chrono::DateTime<chrono::Utc>>,
    /// Only sagas last changed before this.
    pub updated_before: Option<chrono::DateTime<chrono::Utc>>,
    /// Only unfinished sagas unchanged for at least this many seconds, at most [`MAX_STUCK_SECS`].
    pub stuck_for_secs: Option<i64>,
    /// Sorted by this timestamp (then by ID, so that pages never overlap).
    pub sort: SortKey,
    /// This way round.
    pub order: SortOrder,
    /// Page size.
    pub limit: i64,
    /// Rows to skip.
    pub offset: i64,
}

const SUMMARY_COLUMNS: &str = "id::text AS id, order_id, user_id, status, reason, state, request, version, retries,
     next_retry_at, created_at, updated_at, traceparent";

/// The longest "unchanged for" a filter may ask the database about: about 3,000 years, older than any saga and
/// within PostgreSQL's timestamps, so that `now()` minus it cannot overflow. Callers refuse larger values.
pub const MAX_STUCK_SECS: i64 = 100_000_000_000;

/// The conditions of a [`SagaFilter`], on parameters `$1` to `$10` as [`bind_filter`] binds them.
const FILTER_CONDITIONS: &str = "(cardinality($1::text[]) = 0 OR status = ANY($1::text[]))
       AND ($2::text IS NULL OR reason = $2)
       AND ($3::text IS NULL OR order_id = $3)
       AND ($4::text IS NULL OR user_id = $4)
       AND ($5::timestamptz IS NULL OR created_at >= $5)
       AND ($6::timestamptz IS NULL OR created_at < $6)
       AND ($7::timestamptz IS NULL OR updated_at >= $7)
       AND ($8::timestamptz IS NULL OR updated_at < $8)
       AND ($9::bigint IS NULL OR (status = ANY($10::text[])
                                   AND updated_at <= now() - make_interval(secs => $9::double precision)))";

type FilterQuery<'f> = diesel::query_builder::BoxedSqlQuery<'f, Pg, diesel::query_builder::SqlQuery>;

/// Binds the parameters of [`FILTER_CONDITIONS`].
fn bind_filter<'f>(query: FilterQuery<'f>, filter: &'f SagaFilter) -> FilterQuery<'f> {
    let statuses: Vec<&'static str> = filter.statuses.iter().map(|s| s.as_str()).collect();
    query
        .bind::<Array<Text>, _>(statuses)
        .bind::<Nullable<Text>, _>(filter.reason.as_deref())
        .bind::<Nullable<Text>, _>(filter.order_id.as_deref())
        .bind::<Nullable<Text>, _>(filter.user_id.as_deref())
        .bind::<Nullable<Timestamptz>, _>(filter.created_after)
        .bind::<Nullable<Timestamptz>, _>(filter.created_before)
        .bind::<Nullable<Timestamptz>, _>(filter.updated_after)
        .bind::<Nullable<Timestamptz>, _>(filter.updated_before)
        .bind::<Nullable<BigInt>, _>(filter.stuck_for_secs.map(|s| s.min(MAX_STUCK_SECS)))
        .bind::<Array<Text>, _>(unfinished_statuses())
}

/// The page of sagas `filter` asks for, in its order.
pub async fn list(conn: &mut AsyncPgConnection, filter: &SagaFilter) -> QueryResult<Vec<SagaSummary>> {
    let (column, direction) = (filter.sort.as_str(), filter.order.as_str());
    let query = diesel::sql_query(format!(
        "SELECT {SUMMARY_COLUMNS} FROM sagas WHERE {FILTER_CONDITIONS}
         ORDER BY {column} {direction}, id {direction} LIMIT $11 OFFSET $12"
    ))
    .into_boxed();
    bind_filter(query, filter).bind::<BigInt, _>(filter.limit).bind::<BigInt, _>(filter.offset).load(conn).await
}

/// The page of sagas `filter` asks for and how many match on every page, both read from one snapshot so that
/// the total counts what the page was drawn from.
pub async fn page(conn: &mut AsyncPgConnection, filter: &SagaFilter) -> QueryResult<(Vec<SagaSummary>, i64)> {
    conn.build_transaction()
        .repeatable_read()
        .read_only()
        .run(async |conn| {
            let sagas = list(conn, filter).await?;
            let total = count_matching(conn, filter).await?;
            Ok((sagas, total))
        })
        .await
}

/// How many sagas match `filter`, on every page.
pub async fn count_matching(conn: &mut AsyncPgConnection, filter: &SagaFilter) -> QueryResult<i64> {
    let query = diesel::sql_query(format!("SELECT count(*) AS n FROM sagas WHERE {FILTER_CONDITIONS}")).into_boxed();
    let count: Count = bind_filter(query, filter).get_result(conn).await?;
    Ok(count.n)
}

/// A count, as a query returns it.
#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// How many sagas started, completed and failed in one minute.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct MinuteActivity {
    /// The minute's start.
    #[diesel(sql_type = Timestamptz)]
    pub minute: chrono::DateTime<chrono::Utc>,
    /// Sagas created in it.
    #[diesel(sql_type = BigInt)]
    pub started: i64,
    /// Sagas completed in it (and still completed).
    #[diesel(sql_type = BigInt)]
    pub completed: i64,
    /// Sagas failed in it.
    #[diesel(sql_type = BigInt)]
    pub failed: i64,
}

/// Sagas started, completed and failed per minute over the last `minutes` minutes, the current one last, every
/// minute present. A saga's end is when it last changed, which for a terminal state is when it got there;
/// both come from indexes on `sagas` (`created_at`, and `status, updated_at`), so the history is not scanned.
pub async fn activity_per_minute(conn: &mut AsyncPgConnection, minutes: i32) -> QueryResult<Vec<MinuteActivity>> {
    diesel::sql_query(
        "WITH bounds AS (SELECT date_trunc('minute', now()) - make_interval(mins => $1 - 1) AS since),
         minutes AS (
             SELECT generate_series(since, date_trunc('minute', now()), interval '1 minute') AS minute FROM bounds),
         events AS (
             SELECT date_trunc('minute', created_at) AS minute, 'started' AS what
             FROM sagas, bounds WHERE created_at >= since
             UNION ALL
             SELECT date_trunc('minute', updated_at), status
             FROM sagas, bounds WHERE status IN ('completed', 'failed') AND updated_at >= since)
         SELECT m.minute,
                count(*) FILTER (WHERE e.what = 'started') AS started,
                count(*) FILTER (WHERE e.what = 'completed') AS completed,
                count(*) FILTER (WHERE e.what = 'failed') AS failed
         FROM minutes m LEFT JOIN events e ON e.minute = m.minute
         GROUP BY m.minute ORDER BY m.minute",
    )
    .bind::<Integer, _>(minutes)
    .load(conn)
    .await
}

/// How many sagas are still under way (not in a terminal status).
pub async fn count_unfinished(conn: &mut AsyncPgConnection) -> QueryResult<i64> {
    let count: Count = diesel::sql_query("SELECT count(*) AS n FROM sagas WHERE status = ANY($1::text[])")
        .bind::<Array<Text>, _>(unfinished_statuses())
        .get_result(conn)
        .await?;
    Ok(count.n)
}

/// One saga, if it exists.
pub async fn find(conn: &mut AsyncPgConnection, id: SagaId) -> QueryResult<Option<SagaSummary>> {
    let mut rows: Vec<SagaSummary> =
        diesel::sql_query(format!("SELECT {SUMMARY_COLUMNS} FROM sagas WHERE id = $1::uuid"))
            .bind::<Text, _>(id.to_string())
            .load(conn)
            .await?;
    Ok(rows.pop())
}

/// One line of history as operators see it.
#[derive(Debug, QueryableByName, serde::Serialize, utoipa::ToSchema)]
pub struct HistoryLine {
    /// When.
    #[diesel(sql_type = Timestamptz)]
    pub at: chrono::DateTime<chrono::Utc>,
    /// What happened.
    #[diesel(sql_type = Jsonb)]
    pub event: Value,
    /// Status before.
    #[diesel(sql_type = Nullable<Text>)]
    pub from_status: Option<Status>,
    /// Status after.
    #[diesel(sql_type = Text)]
    pub to_status: Status,
    /// State after.
    #[diesel(sql_type = Jsonb)]
    pub state: Value,
    /// Commands sent.
    #[diesel(sql_type = Jsonb)]
    pub commands: Value,
    /// The operator whose action this was (`name` and `credential`); null for replies and the retry timer.
    #[diesel(sql_type = Nullable<Jsonb>)]
    #[schema(value_type = Option<Actor>)]
    pub actor: Option<Value>,
}

/// A saga's history, oldest first.
pub async fn history(conn: &mut AsyncPgConnection, id: SagaId) -> QueryResult<Vec<HistoryLine>> {
    diesel::sql_query(
        "SELECT at, event, from_status, to_status, state, commands, actor FROM saga_transitions
         WHERE saga_id = $1::uuid ORDER BY id",
    )
    .bind::<Text, _>(id.to_string())
    .load(conn)
    .await
}

/// How many sagas are in each status, every status included (with 0 when none is in it).
pub async fn counts(conn: &mut AsyncPgConnection) -> QueryResult<BTreeMap<Status, i64>> {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = Text)]
        status: Status,
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let rows: Vec<Count> =
        diesel::sql_query("SELECT status, count(*) AS n FROM sagas GROUP BY status").load(conn).await?;
    let mut counts: BTreeMap<Status, i64> = Status::ALL.into_iter().map(|status| (status, 0)).collect();
    counts.extend(rows.into_iter().map(|c| (c.status, c.n)));
    Ok(counts)
}

/// The reason a saga fails, as SQL on `sagas.state`: the `kind` of its [`shared_contracts::FailureReason`]
/// (where [`SagaState::Failed`] and [`SagaState::Compensating`] keep it, or the goal of a
/// [`SagaState::NeedsAttention`] compensation), `cancel` for a cancellation that needs attention, else NULL.
pub const REASON_SQL: &str =
    "COALESCE(state->'reason'->>'kind', state->'goal'->'reason'->>'kind', state->'goal'->>'goal')";

/// The sagas that failed or need attention for one reason, like an incident in a workflow engine's console.
#[derive(Debug, QueryableByName, serde::Serialize, utoipa::ToSchema)]
pub struct FailureGroup {
    /// `failed` or `needs_attention`.
    #[diesel(sql_type = Text)]
    pub status: Status,
    /// The reason (see [`REASON_SQL`]); null when the state names none.
    #[diesel(sql_type = Nullable<Text>)]
    pub reason: Option<String>,
    /// How many sagas.
    #[diesel(sql_type = BigInt)]
    pub count: i64,
    /// When the one that has been in this status longest got there.
    #[diesel(sql_type = Timestamptz)]
    pub oldest: chrono::DateTime<chrono::Utc>,
    /// When the latest got there.
    #[diesel(sql_type = Timestamptz)]
    pub newest: chrono::DateTime<chrono::Utc>,
}

/// The failed and needs-attention sagas grouped by status and reason, the largest groups first.
pub async fn failure_groups(conn: &mut AsyncPgConnection) -> QueryResult<Vec<FailureGroup>> {
    diesel::sql_query(format!(
        "SELECT status, {REASON_SQL} AS reason, count(*) AS count, min(updated_at) AS oldest, max(updated_at) AS newest
         FROM sagas WHERE status = ANY($1::text[])
         GROUP BY 1, 2 ORDER BY count DESC, status, reason"
    ))
    .bind::<Array<Text>, _>(vec![Status::Failed.as_str(), Status::NeedsAttention.as_str()])
    .load(conn)
    .await
}
