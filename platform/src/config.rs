//! Settings come from the environment, with defaults that suit a local run. What every service reads the same
//! way (where it listens, its database, its broker, how its consumer takes messages, how long it may take to stop)
//! is [`ServiceSettings`],
//! which each service's `Config` embeds next to its own settings, read with the helpers below, once at start,
//! and logged without secrets.

use std::{
    fmt::{self, Display},
    str::FromStr,
    time::Duration,
};

use anyhow::{Context, Result};

use crate::amqp::ConsumerSettings;

/// The settings every service shares, read from the same variables in each.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// Where the HTTP API listens (`HTTP_ADDR`); port 0 picks a free port.
    pub http_addr: String,
    /// HTTP worker threads (`HTTP_WORKERS`).
    pub http_workers: usize,
    /// The service's own PostgreSQL database (`DATABASE_URL`).
    pub database_url: String,
    /// The most database connections the process holds (`DB_POOL_SIZE`).
    pub db_pool_size: usize,
    /// The RabbitMQ broker and vhost (`AMQP_URL`).
    pub amqp_url: String,
    /// How the service's consumer takes messages: `WORKER_PREFETCH` unacked messages at most, `WORKER_BATCH` in
    /// one handler call, `WORKER_PARALLEL` batches at once.
    pub consumer: ConsumerSettings,
    /// How long a graceful shutdown may take, from the signal to the exit (`SHUTDOWN_TIMEOUT_MS`): what is still
    /// running then is abandoned (see [`crate::startup`]).
    pub shutdown_timeout: Duration,
}

/// How long a graceful shutdown may take when `SHUTDOWN_TIMEOUT_MS` says nothing.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// What a service's [`ServiceSettings`] are when the environment says nothing.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// The port it listens on, on the loopback interface.
    pub http_port: u16,
    /// The name of its database on the local PostgreSQL server.
    pub database: &'static str,
    /// Its HTTP worker threads.
    pub http_workers: usize,
    /// How its consumer takes messages.
    pub consumer: ConsumerSettings,
}

impl ServiceSettings {
    /// Reads the shared settings from the environment, falling back to the service's `defaults`.
    pub fn from_env(defaults: Defaults) -> Result<Self> {
        let consumer = defaults.consumer;
        Ok(Self {
            http_addr: string("HTTP_ADDR", &format!("127.0.0.1:{}", defaults.http_port)),
            http_workers: parse("HTTP_WORKERS", defaults.http_workers)?,
            database_url: string(
                "DATABASE_URL",
                &format!("postgres://postgres:postgres@127.0.0.1:5432/{}", defaults.database),
            ),
            db_pool_size: parse("DB_POOL_SIZE", 16)?,
            amqp_url: string("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"),
            consumer: ConsumerSettings {
                prefetch: parse("WORKER_PREFETCH", consumer.prefetch)?,
                // A batch holds one message at least, and one batch at least is handled at a time.
                max_batch: parse("WORKER_BATCH", consumer.max_batch)?.max(1),
                parallel: parse("WORKER_PARALLEL", consumer.parallel)?.max(1),
            },
            shutdown_timeout: Duration::from_millis(parse(
                "SHUTDOWN_TIMEOUT_MS",
                DEFAULT_SHUTDOWN_TIMEOUT.as_millis() as u64,
            )?),
        })
    }
}

/// The settings as they may be logged: passwords in URLs are hidden.
impl Display for ServiceSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "http_addr={} http_workers={} database_url={} db_pool_size={} amqp_url={} worker_prefetch={} \
             worker_batch={} worker_parallel={} shutdown_timeout_ms={}",
            self.http_addr,
            self.http_workers,
            redact_url(&self.database_url),
            self.db_pool_size,
            redact_url(&self.amqp_url),
            self.consumer.prefetch,
            self.consumer.max_batch,
            self.consumer.parallel,
            self.shutdown_timeout.as_millis(),
        )
    }
}

/// The variable `name`, or `default` when it is unset or empty.
pub fn string(name: &str, default: &str) -> String {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => value,
        _ => default.to_owned(),
    }
}

/// The variable `name` parsed as `T`, or `default` when it is unset or empty. A value that does not parse is an
/// error naming the variable, so a typo stops the service at start instead of being ignored.
pub fn parse<T>(name: &str, default: T) -> Result<T>
where
    T: FromStr,
    T::Err: Display,
{
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => {
            value.parse().map_err(|e| anyhow::anyhow!("{e}")).with_context(|| format!("{name}={value:?} is not valid"))
        }
        _ => Ok(default),
    }
}

/// `url` with any password replaced, for logging.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.find(':') {
                Some(colon) => format!("{}{}:***{}", &url[..scheme_end + 3], &credentials[..colon], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden_from_logs() {
        assert_eq!(redact_url("postgres://app:secret@db:5432/stock"), "postgres://app:***@db:5432/stock");
        assert_eq!(redact_url("amqp://localhost:5672/%2f"), "amqp://localhost:5672/%2f");
    }

    #[test]
    fn the_defaults_name_the_service_s_port_and_database() {
        let defaults = Defaults {
            http_port: 8009,
            database: "platform_test_defaults",
            http_workers: 3,
            consumer: ConsumerSettings { prefetch: 7, max_batch: 5, parallel: 2 },
        };
        let settings = ServiceSettings::from_env(defaults).unwrap();
        if std::env::var_os("HTTP_ADDR").is_none() {
            assert_eq!(settings.http_addr, "127.0.0.1:8009");
        }
        if std::env::var_os("DATABASE_URL").is_none() {
            assert!(settings.database_url.ends_with("/platform_test_defaults"));
        }
        let shown = settings.to_string();
        assert!(!shown.contains(":postgres@") && !shown.contains(":guest@"), "{shown}");
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        std::env::set_var("PLATFORM_TEST_BAD_NUMBER", "twelve");
        let err = parse::<u32>("PLATFORM_TEST_BAD_NUMBER", 1).unwrap_err();
        assert!(format!("{err:#}").contains("PLATFORM_TEST_BAD_NUMBER"));
    }
}
