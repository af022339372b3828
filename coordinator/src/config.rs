//! The coordinator's settings, read once from the environment.

use std::{fmt, time::Duration};

use anyhow::Result;
use platform::{
    amqp::ConsumerSettings,
    config::{parse, string, Defaults, ServiceSettings},
};

/// Everything the coordinator needs to start.
#[derive(Clone)]
pub struct Config {
    /// What every service reads: the admin API's address, the database, the broker and the saga consumer.
    pub service: ServiceSettings,
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
        let defaults = Defaults {
            http_port: 8004,
            database: "coordinator",
            http_workers: 1,
            consumer: ConsumerSettings { prefetch: 1024, max_batch: 256, parallel: 1 },
        };
        Ok(Self {
            service: ServiceSettings::from_env(defaults)?,
            retry_after: Duration::from_millis(parse("RETRY_AFTER_MS", 2000)?),
            retry_max: Duration::from_millis(parse("RETRY_MAX_MS", 5000)?),
            saga_deadline: Duration::from_millis(parse("SAGA_DEADLINE_MS", 20_000)?),
            compensation_deadline: Duration::from_millis(parse("COMPENSATION_DEADLINE_MS", 300_000)?),
            admin_token: Some(string("ADMIN_TOKEN", "")).filter(|token| !token.is_empty()),
        })
    }
}

/// The settings as they may be logged: passwords in URLs and the admin token are hidden.
impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} retry_after={:?} retry_max={:?} saga_deadline={:?} compensation_deadline={:?} admin_token={}",
            self.service,
            self.retry_after,
            self.retry_max,
            self.saga_deadline,
            self.compensation_deadline,
            if self.admin_token.is_some() { "***" } else { "none" },
        )
    }
}
