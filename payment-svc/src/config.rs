//! The settings of payment-svc, read once from the environment at start.

use std::fmt;

use anyhow::Result;
use platform::{
    amqp::ConsumerSettings,
    config::{parse, redact_url, string},
};

/// Everything payment-svc needs to know to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the REST API listens (`HTTP_ADDR`); port 0 picks a free port.
    pub http_addr: String,
    /// The service's own PostgreSQL database (`DATABASE_URL`).
    pub database_url: String,
    /// The RabbitMQ broker and vhost (`AMQP_URL`).
    pub amqp_url: String,
    /// The most database connections the process holds (`DB_POOL_SIZE`).
    pub db_pool_size: usize,
    /// HTTP worker threads (`HTTP_WORKERS`).
    pub http_workers: usize,
    /// Unacked saga commands the broker may hand the worker at once (`WORKER_PREFETCH`).
    pub worker_prefetch: u16,
    /// The most saga commands handled in one database transaction (`WORKER_BATCH`).
    pub worker_batch: usize,
    /// Batches of saga messages handled at once (`WORKER_PARALLEL`).
    pub worker_parallel: usize,
    /// Where the coordinator answers how many checkout sagas are unfinished (`COORDINATOR_URL`); `batch_init`
    /// asks it before overwriting credit.
    pub coordinator_url: String,
    /// Where order-svc answers (`ORDER_URL`): a cancel of an order paid by a checkout cancels the order there.
    pub order_url: String,
}

impl Config {
    /// Reads the settings from the environment, with defaults for a local run.
    pub fn from_env() -> Result<Self> {
        Ok(Self {
            http_addr: string("HTTP_ADDR", "127.0.0.1:8002"),
            database_url: string("DATABASE_URL", "postgres://postgres:postgres@127.0.0.1:5432/payment"),
            amqp_url: string("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"),
            db_pool_size: parse("DB_POOL_SIZE", 16)?,
            http_workers: parse("HTTP_WORKERS", 2)?,
            worker_prefetch: parse("WORKER_PREFETCH", 512)?,
            worker_batch: parse("WORKER_BATCH", 128)?,
            worker_parallel: parse("WORKER_PARALLEL", 1)?,
            coordinator_url: string("COORDINATOR_URL", "http://127.0.0.1:8004"),
            order_url: string("ORDER_URL", "http://127.0.0.1:8001"),
        })
    }

    /// How the saga worker takes commands from the broker.
    pub fn consumer_settings(&self) -> ConsumerSettings {
        ConsumerSettings {
            prefetch: self.worker_prefetch,
            max_batch: self.worker_batch.max(1),
            parallel: self.worker_parallel.max(1),
        }
    }
}

/// The settings as they may be logged: passwords in URLs are hidden.
impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "http_addr={} database_url={} amqp_url={} db_pool_size={} http_workers={} worker_prefetch={} worker_batch={} worker_parallel={} coordinator_url={} order_url={}",
            self.http_addr,
            redact_url(&self.database_url),
            redact_url(&self.amqp_url),
            self.db_pool_size,
            self.http_workers,
            self.worker_prefetch,
            self.worker_batch,
            self.worker_parallel,
            redact_url(&self.coordinator_url),
            redact_url(&self.order_url),
        )
    }
}
