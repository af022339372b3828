//! PostgreSQL access: the connection pool every service uses, embedded migrations, and creation of a service's
//! database when it does not exist yet (a fresh machine, a fresh test).

use std::{path::PathBuf, str::FromStr, sync::Arc, time::Duration};

use anyhow::{bail, Context, Result};
use diesel::{
    connection::TransactionManagerStatus,
    pg::Pg,
    query_builder::{AstPass, Query, QueryFragment, QueryId},
    Connection,
};
use diesel_async::{
    async_connection_wrapper::AsyncConnectionWrapper,
    pooled_connection::{deadpool, AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod},
    AsyncPgConnection, SimpleAsyncConnection, TransactionManager,
};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};

/// The pool type every service uses.
pub type Pool = deadpool::Pool<AsyncPgConnection>;
/// A connection borrowed from the [`Pool`].
pub type PooledConnection = deadpool::Object<AsyncPgConnection>;

/// How long a caller waits for a free connection, or for a new one to open, before the pool reports an error.
/// Short, so that a database outage turns into a quick 503 rather than piled-up requests.
const POOL_WAIT: Duration = Duration::from_secs(5);

/// A pool of at most `max_size` connections to `url`. Connections are opened lazily and replaced when broken, so
/// a restart of PostgreSQL costs the requests in flight and nothing more. The URL's TLS settings are read here,
/// once: see [`Target`].
///
/// Each connection is opened on the runtime that built the pool, whoever asks for it, because the task that
/// drives a connection's socket stays on the runtime that opened it. Opened from an HTTP worker (each runs a
/// runtime of its own), every statement the saga workers later send on that connection would hop to that
/// worker's thread and back: two more thread wake-ups per round trip.
pub fn pool(url: &str, max_size: usize) -> Result<Pool> {
    let target = Arc::new(Target::parse(url)?);
    let home = tokio::runtime::Handle::try_current().ok();
    // No test query when a connection is handed out: that would be one more round trip per request. A
    // connection whose socket closed (a PostgreSQL restart) still counts as broken and is replaced.
    let mut config = ManagerConfig::default();
    config.recycling_method = RecyclingMethod::Fast;
    config.custom_setup = Box::new(move |_| {
        let (target, home) = (target.clone(), home.clone());
        Box::pin(async move {
            match home {
                Some(home) => home.spawn(establish(target)).await.unwrap_or_else(|e| {
                    Err(diesel::ConnectionError::BadConnection(format!("opening a connection: {e}")))
                }),
                None => establish(target).await,
            }
        })
    });
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, config);
    deadpool::Pool::builder(manager)
        .max_size(max_size)
        .wait_timeout(Some(POOL_WAIT))
        .create_timeout(Some(POOL_WAIT))
        .recycle_timeout(Some(POOL_WAIT))
        .runtime(::deadpool::Runtime::Tokio1)
        .build()
        .context("building the database pool")
}

/// Opens a connection for the pool, with sequential scans priced out. Every statement of the services is meant to
/// find its rows by an index, and the hot paths read and lock batches with `= ANY($1)`. On a table that has never
/// been analysed (a fresh database, a server with autovacuum off, or simply the time before autovacuum first
/// visits a growing table) PostgreSQL guesses that each key matches 0.5% of the rows, so a batch of a few hundred
/// keys was planned as a scan of the whole table: the order intake read all of `order_items` per batch. A
/// statement with no index to use (an operator's count over all sagas) still runs, as a scan.
///
/// Statements marked [`prepared`] stay prepared on the connection, and after its fifth run PostgreSQL plans such
/// a statement once for all bind values and keeps that plan. Made while a table was tiny (a fresh database), such
/// a plan used to scan the table long after it had grown, so every run was planned anew
/// (`plan_cache_mode = force_custom_plan`). With scans priced out the plan kept is an index's too, and planning
/// each run again cost the databases about a tenth of their CPU per checkout.
async fn establish(target: Arc<Target>) -> diesel::ConnectionResult<AsyncPgConnection> {
    let mut conn = target.connect_diesel().await?;
    conn.batch_execute("SET enable_seqscan = off")
        .await
        .map_err(|e| diesel::ConnectionError::BadConnection(format!("configuring the connection: {e}")))?;
    Ok(conn)
}

/// How libpq's `sslmode` asks a client to protect its link to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP only.
    Disable,
    /// TLS when the server offers it, plain TCP otherwise; the certificate is not checked. libpq's default.
    Prefer,
    /// TLS or no connection; the certificate is not checked (unless a CA file is given: then as `VerifyCa`).
    Require,
    /// TLS with a certificate signed by a trusted CA, whatever host it names.
    VerifyCa,
    /// TLS with a certificate signed by a trusted CA that names the host connected to.
    VerifyFull,
}

impl FromStr for SslMode {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Self> {
        Ok(match text {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => bail!("sslmode {other:?} is not supported (disable, prefer, require, verify-ca, verify-full)"),
        })
    }
}

/// The stream of a connection opened by [`Target::connect`]: TLS over TCP, or plain TCP under the same type.
pub type TlsStream =
    <tokio_postgres_rustls::MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>>::Stream;

/// Where a database is and how to reach it safely: a `postgres://` URL split into what tokio-postgres reads
/// and the TLS settings it does not know, `sslmode` (libpq's five modes; `prefer` when absent) and
/// `sslrootcert` (a PEM file of CA certificates; without it the Mozilla roots are trusted).
pub struct Target {
    config: tokio_postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    mode: SslMode,
}

impl Target {
    /// Reads `url`; fails on an unknown `sslmode` or a CA file that cannot be read.
    pub fn parse(url: &str) -> Result<Self> {
        let shown = crate::config::redact_url(url);
        let (rest, mode, ca_file) = split_tls_params(url).with_context(|| format!("database URL {shown}"))?;
        let mut config: tokio_postgres::Config =
            rest.parse().with_context(|| format!("database URL {shown} is not valid"))?;
        config.ssl_mode(match mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => tokio_postgres::config::SslMode::Require,
        });
        // As libpq: `require` with a CA file verifies the chain; `prefer` never verifies (it would fall back to
        // plain TCP anyway).
        let verification = match (mode, &ca_file) {
            (SslMode::VerifyFull, _) => crate::tls::Verification::Full,
            (SslMode::VerifyCa, _) | (SslMode::Require, Some(_)) => crate::tls::Verification::Chain,
            _ => crate::tls::Verification::None,
        };
        let client = crate::tls::client_config(verification, ca_file.as_deref())
            .with_context(|| format!("TLS settings of database URL {shown}"))?;
        Ok(Self { config, tls: tokio_postgres_rustls::MakeRustlsConnect::new(client), mode })
    }

    /// The `sslmode` asked for.
    pub fn ssl_mode(&self) -> SslMode {
        self.mode
    }

    /// Opens a tokio-postgres connection; the caller drives the returned connection future.
    pub async fn connect(
        &self,
    ) -> Result<
        (tokio_postgres::Client, tokio_postgres::Connection<tokio_postgres::Socket, TlsStream>),
        tokio_postgres::Error,
    > {
        self.config.connect(self.tls.clone()).await
    }

    /// Opens a diesel connection.
    pub async fn connect_diesel(&self) -> diesel::ConnectionResult<AsyncPgConnection> {
        let (client, connection) =
            self.connect().await.map_err(|e| diesel::ConnectionError::BadConnection(error_chain(&e)))?;
        AsyncPgConnection::try_from_client_and_connection(client, connection).await
    }
}

/// `error` with its sources, which for a refused TLS handshake say why.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let shown = cause.to_string();
        if !text.contains(&shown) {
            text = format!("{text}: {shown}");
        }
        source = cause.source();
    }
    text
}

/// `url` without its `sslmode` and `sslrootcert` query parameters (which tokio-postgres rejects), and their
/// values, percent-decoded.
fn split_tls_params(url: &str) -> Result<(String, SslMode, Option<PathBuf>)> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut mode = SslMode::Prefer;
    let mut ca_file = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" => mode = crate::amqp::percent_decode(value).parse()?,
            "sslrootcert" => ca_file = Some(PathBuf::from(crate::amqp::percent_decode(value))),
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
    Ok((rest, mode, ca_file))
}

/// Applies the pending `migrations` to the database at `url`. Several replicas may start at once: a
/// transaction-wide advisory lock lets one of them migrate while the others wait.
pub async fn migrate(url: &str, migrations: EmbeddedMigrations) -> Result<()> {
    let conn = Target::parse(url)?
        .connect_diesel()
        .await
        .with_context(|| format!("connecting to {}", crate::config::redact_url(url)))?;
    tokio::task::spawn_blocking(move || -> Result<()> {
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::from(conn);
        conn.transaction(|conn| -> Result<()> {
            diesel::RunQueryDsl::execute(diesel::sql_query("SELECT pg_advisory_xact_lock(7472301)"), conn)?;
            conn.run_pending_migrations(migrations).map_err(|e| anyhow::anyhow!("running migrations: {e}"))?;
            Ok(())
        })
    })
    .await
    .context("migration task panicked")?
}

/// Creates the database named in `url` if it does not exist, connecting to the server's `postgres` database to
/// do so. Harmless when it exists, and when another process creates it at the same moment.
pub async fn create_database_if_missing(url: &str) -> Result<()> {
    let (admin_url, name) = admin_url(url)?;
    let (client, connection) = Target::parse(&admin_url)?
        .connect()
        .await
        .with_context(|| format!("connecting to {}", crate::config::redact_url(&admin_url)))?;
    let driver = tokio::spawn(connection);
    let exists = client.query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name]).await?.is_some();
    if !exists {
        let quoted = name.replace('"', "\"\"");
        if let Err(e) = client.batch_execute(&format!("CREATE DATABASE \"{quoted}\"")).await {
            // Created by another replica in the meantime: 42P04, or 23505 on pg_database's unique index when the
            // two CREATE DATABASE statements overlap.
            let raced = [
                tokio_postgres::error::SqlState::DUPLICATE_DATABASE,
                tokio_postgres::error::SqlState::UNIQUE_VIOLATION,
            ];
            if !e.code().is_some_and(|code| raced.contains(code)) {
                return Err(e).context(format!("creating database {name}"));
            }
        }
    }
    drop(client);
    let _ = driver.await;
    Ok(())
}

/// Drops the database named in `url` (tests clean up after themselves with it).
pub async fn drop_database(url: &str) -> Result<()> {
    let (admin_url, name) = admin_url(url)?;
    let (client, connection) = Target::parse(&admin_url)?.connect().await?;
    let driver = tokio::spawn(connection);
    let quoted = name.replace('"', "\"\"");
    client.batch_execute(&format!("DROP DATABASE IF EXISTS \"{quoted}\" WITH (FORCE)")).await?;
    drop(client);
    let _ = driver.await;
    Ok(())
}

/// The URL of the server's `postgres` database, with the options of `url` (TLS settings included), and the name
/// of the database `url` names.
fn admin_url(url: &str) -> Result<(String, String)> {
    let (server_url, name) = split_database_name(url)?;
    let options = url.split_once('?').map(|(_, options)| format!("?{options}")).unwrap_or_default();
    Ok((format!("{server_url}/postgres{options}"), name))
}

/// Splits `postgres://user@host:port/name?options` into the part before the database name and the name.
fn split_database_name(url: &str) -> Result<(&str, String)> {
    let without_query = url.split('?').next().unwrap_or(url);
    let slash = without_query.rfind('/').filter(|&i| i > "postgres://".len() - 1);
    match slash {
        Some(i) if i + 1 < without_query.len() => Ok((&without_query[..i], without_query[i + 1..].to_owned())),
        _ => anyhow::bail!("database URL {} names no database", crate::config::redact_url(url)),
    }
}

/// Publishes the pool's use every few seconds as `<service>_db_pool_connections{state="in_use"|"idle"}` and
/// `<service>_db_pool_waiting_requests`, for as long as it runs (for ever, unless its task is stopped).
pub async fn report_pool_usage(service: &'static str, pool: Pool) {
    let connections: &'static str = Box::leak(format!("{service}_db_pool_connections").into_boxed_str());
    let waiting: &'static str = Box::leak(format!("{service}_db_pool_waiting_requests").into_boxed_str());
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        let status = pool.status();
        let idle = status.available;
        metrics::gauge!(connections, "state" => "in_use").set(status.size.saturating_sub(idle) as f64);
        metrics::gauge!(connections, "state" => "idle").set(idle as f64);
        metrics::gauge!(waiting).set(status.waiting as f64);
    }
}

/// What every service does with its database at start: create it if missing, migrate it and open the pool.
pub async fn prepare(url: &str, migrations: EmbeddedMigrations, max_size: usize) -> Result<Pool> {
    create_database_if_missing(url).await?;
    migrate(url, migrations).await?;
    pool(url, max_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_name_is_split_off_the_url() {
        let (server, name) = split_database_name("postgres://app:pw@127.0.0.1:5432/stock?sslmode=disable").unwrap();
        assert_eq!(server, "postgres://app:pw@127.0.0.1:5432");
        assert_eq!(name, "stock");
        assert!(split_database_name("postgres://127.0.0.1:5432").is_err());
    }

    #[test]
    fn the_admin_url_keeps_the_options() {
        let (admin, name) = admin_url("postgres://app@db:5432/stock?sslmode=verify-full&sslrootcert=/ca.pem").unwrap();
        assert_eq!(admin, "postgres://app@db:5432/postgres?sslmode=verify-full&sslrootcert=/ca.pem");
        assert_eq!(name, "stock");
    }

    #[test]
    fn tls_params_are_taken_out_of_the_url() {
        let (rest, mode, ca) =
            split_tls_params("postgres://db/x?application_name=a&sslmode=verify-ca&sslrootcert=%2Fetc%2Fca.pem")
                .unwrap();
        assert_eq!(rest, "postgres://db/x?application_name=a");
        assert_eq!(mode, SslMode::VerifyCa);
        assert_eq!(ca, Some(PathBuf::from("/etc/ca.pem")));
        let (rest, mode, ca) = split_tls_params("postgres://db/x").unwrap();
        assert_eq!((rest.as_str(), mode, ca), ("postgres://db/x", SslMode::Prefer, None));
        assert!(split_tls_params("postgres://db/x?sslmode=allow").is_err());
    }

    #[test]
    fn a_missing_ca_file_is_reported_when_the_url_is_read() {
        assert!(Target::parse("postgres://db/x?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem").is_err());
        assert_eq!(Target::parse("postgres://db/x?sslmode=disable").unwrap().ssl_mode(), SslMode::Disable);
    }
}

/// Runs `body` in a transaction on `conn`, one round trip shorter than diesel's
/// [`transaction`](diesel_async::AsyncConnection::transaction): the `BEGIN` goes out together with the body's
/// first statements instead of on its own. PostgreSQL runs what one connection sends in the order sent, so those
/// statements still run inside the transaction. The body gets the connection shared, so that it can pipeline
/// statements of its own. The transaction commits when the body returns `Ok` and rolls back when it returns `Err`.
/// On each connection a round trip costs both processes a wake-up; see `docs/performance.md`, seventh round.
///
/// Should this future be dropped while the transaction is open, or its `COMMIT` or `ROLLBACK` fail, the
/// connection counts as broken and the pool discards it instead of lending it out in the middle of a
/// transaction.
pub async fn transaction<T, E, F>(conn: &mut AsyncPgConnection, body: F) -> Result<T, E>
where
    F: AsyncFnOnce(&AsyncPgConnection) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    if status_of(conn).transaction_depth()?.is_some() {
        return Err(diesel::result::Error::AlreadyInTransaction.into());
    }
    status_of(conn).set_in_error();
    let ended = {
        let shared: &AsyncPgConnection = conn;
        let mut begin_on = shared;
        // `join!` polls in order, and the first poll of a statement sends it: BEGIN leaves first.
        let (begun, result) = futures::join!(begin_on.batch_execute("BEGIN"), body(shared));
        // A plain BEGIN fails only with its connection, which then fails the body's statements too.
        let result = begun.map_err(E::from).and(result);
        let mut end_on = shared;
        match result {
            Ok(value) => end_on.batch_execute("COMMIT").await.map(|()| Ok(value)),
            Err(e) => end_on.batch_execute("ROLLBACK").await.map(|()| Err(e)),
        }
    };
    match ended {
        Ok(result) => {
            *status_of(conn) = TransactionManagerStatus::default();
            result
        }
        Err(e) => Err(e.into()),
    }
}

/// What diesel knows of `conn`'s transaction; the pool discards a connection whose status is in error.
fn status_of(conn: &mut AsyncPgConnection) -> &mut TransactionManagerStatus {
    type Manager = <AsyncPgConnection as diesel_async::AsyncConnection>::TransactionManager;
    <Manager as TransactionManager<AsyncPgConnection>>::transaction_manager_status_mut(conn)
}

/// A query whose SQL text never changes (only its bind values do), to be prepared once per connection and reused.
///
/// Queries written with [`diesel::sql_query`] are otherwise prepared anew on every run, which costs a round trip
/// to PostgreSQL of its own (parse and describe) before the one that executes. Only wrap queries built from
/// fixed text: every distinct text stays prepared on every connection of the pool for its lifetime.
#[derive(Debug, Clone)]
pub struct Prepared<Q>(Q);

/// Marks `query`, built from fixed SQL text, to be kept prepared: see [`Prepared`].
pub fn prepared<Q>(query: Q) -> Prepared<Q> {
    Prepared(query)
}

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for Prepared<Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, Pg>) -> diesel::QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &Pg) -> diesel::QueryResult<bool> {
        Ok(true)
    }
}

/// No type-level ID: the statement cache keys these queries by their SQL text and bind types.
impl<Q> QueryId for Prepared<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for Prepared<Q> {
    type SqlType = Q::SqlType;
}
