//! The settings of payment-svc, read once from the environment at start.

use std::fmt;

use anyhow::Result;
use platform::{
    amqp::ConsumerSettings,
    config::{redact_url, string, Defaults, ServiceSettings},
};

/// Everything payment-svc needs to know to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// What every service reads: its address, database, broker and the saga worker's consumer.
    pub service: ServiceSettings,
    /// Where the coordinator answers how many checkout sagas are unfinished (`COORDINATOR_URL`); `batch_init`
    /// asks it before overwriting credit.
    pub coordinator_url: String,
    /// Where order-svc answers (`ORDER_URL`): a cancel of an order paid by a checkout cancels the order there.
    pub order_url: String,
}

impl Config {
    /// Reads the settings from the environment, with defaults for a local run.
    pub fn from_env() -> Result<Self> {
        let defaults = Defaults {
            http_port: 8002,
            database: "payment",
            http_workers: 2,
            consumer: ConsumerSettings { prefetch: 512, max_batch: 128, parallel: 1 },
        };
        Ok(Self {
            service: ServiceSettings::from_env(defaults)?,
            coordinator_url: string("COORDINATOR_URL", "http://127.0.0.1:8004"),
            order_url: string("ORDER_URL", "http://127.0.0.1:8001"),
        })
    }
}

/// The settings as they may be logged: passwords in URLs are hidden.
impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} coordinator_url={} order_url={}",
            self.service,
            redact_url(&self.coordinator_url),
            redact_url(&self.order_url),
        )
    }
}
