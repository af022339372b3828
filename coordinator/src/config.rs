//! The coordinator's settings, read once from the environment.

use std::{fmt, time::Duration};

use anyhow::Result;
use platform::config::{parse, redact_url, string};

/// Everything the coordinator needs to start.
#[derive(Clone)]
pub struct Config {
    /// Where the admin API listens (`HTTP_ADDR`); port 0 picks a free one.
    pub http_addr: String,
    /// The coordinator's own database (`DATABASE_URL`).
    pub database_url: String,
    /// The broker (`AMQP_URL`).
    pub amqp_url: String,
    /// Connections in the pool (`DB_POOL_SIZE`).
    pub db_pool_size: usize,
    /// actix workers for the admin API (`HTTP_WORKERS`).
    pub http_workers: usize,
    /// Unacked messages the consumer may hold (`WORKER_PREFETCH`).
    pub worker_prefetch: u16,
    /// The most messages handled in one transaction (`WORKER_BATCH`).
    pub worker_batch: usize,
    /// Batches of saga messages handled at once (`WORKER_PARALLEL`).
    pub worker_parallel: usize,
    /// How long a command may go unanswered before it is sent again (`RETRY_AFTER_MS`); doubles per retry.
    pub retry_after: Duration,
    /// The longest pause between two retries of one saga (`RETRY_MAX_MS`).
    pub retry_max: Duration,
    /// How long a checkout may run before it gives up and compensates (`SAGA_DEADLINE_MS`).
    pub saga_deadline: Duration,
    /// How long a compensation may go without progress before its saga needs attention
    /// (`COMPENSATION_DEADLINE_MS`).
    pub compensation_deadline: Duration,
    /// The bearer token the admin API demands (`ADMIN_TOKEN`); without one, it answers loopback callers only.
    pub admin_token: Option<String>,
}

impl Config {
    /// When the sagas' unanswered commands are sent again and when the sagas give up.
    pub fn retry_policy(&self) -> crate::engine::RetryPolicy {
        crate::engine::RetryPolicy {
            first: self.retry_after,
            max: self.retry_max,
            deadline: self.saga_deadline,
            compensation_deadline: self.compensation_deadline,
        }
    }

    /// Reads the environment, with defaults for a local run.
    pub fn from_env() -> Result<Self> {
        Ok(Self {
            http_addr: string("HTTP_ADDR", "127.0.0.1:8004"),
            database_url: string("DATABASE_URL", "postgres://postgres:postgres@127.0.0.1:5432/coordinator"),
            amqp_url: string("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"),
            db_pool_size: parse("DB_POOL_SIZE", 16)?,
            http_workers: parse("HTTP_WORKERS", 1)?,
            worker_prefetch: parse("WORKER_PREFETCH", 1024)?,
            worker_batch: parse("WORKER_BATCH", 256)?,
            worker_parallel: parse("WORKER_PARALLEL", 1)?,
            retry_after: Duration::from_millis(parse("RETRY_AFTER_MS", 2000)?),
            retry_max: Duration::from_millis(parse("RETRY_MAX_MS", 5000)?),
            saga_deadline: Duration::from_millis(parse("SAGA_DEADLINE_MS", 20_000)?),
            compensation_deadline: Duration::from_millis(parse("COMPENSATION_DEADLINE_MS", 300_000)?),
            admin_token: Some(string("ADMIN_TOKEN", "")).filter(|token| !token.is_empty()),
        })
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("http_addr", &self.http_addr)
            .field("database_url", &redact_url(&self.database_url))
            .field("amqp_url", &redact_url(&self.amqp_url))
            .field("db_pool_size", &self.db_pool_size)
            .field("http_workers", &self.http_workers)
            .field("worker_prefetch", &self.worker_prefetch)
            .field("worker_batch", &self.worker_batch)
            .field("worker_parallel", &self.worker_parallel)
            .field("retry_after", &self.retry_after)
            .field("retry_max", &self.retry_max)
            .field("saga_deadline", &self.saga_deadline)
            .field("compensation_deadline", &self.compensation_deadline)
            .field("admin_token", &self.admin_token.as_ref().map(|_| "***"))
            .finish()
    }
}
