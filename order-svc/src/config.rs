//! The settings of order-svc, read once from the environment at start.

use std::{fmt, time::Duration};

use anyhow::Result;
use platform::{
    amqp::ConsumerSettings,
    config::{parse, redact_url, string, Defaults, ServiceSettings},
};

/// Everything order-svc needs to know to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// What every service reads: its address, database, broker and the outcome consumer's settings.
    pub service: ServiceSettings,
    /// Where stock-svc answers, for the price of an item added to an order (`STOCK_URL`).
    pub stock_url: String,
    /// Where payment-svc answers, to check that the user of a new order exists (`PAYMENT_URL`).
    pub payment_url: String,
    /// How long a checkout or cancellation request waits for the saga's outcome before answering 504
    /// (`CHECKOUT_TIMEOUT_MS`).
    pub checkout_timeout_ms: u64,
    /// How long a checkout (or cancellation) may go without an outcome before its `StartCheckout` (or
    /// `CancelCheckout`) is sent again (`RESEND_AFTER_MS`, default 2 s); doubles per send.
    pub resend_after: Duration,
    /// The longest pause between two sends of one checkout's message (`RESEND_MAX_MS`, default 5 s): after an
    /// outage, a start or cancel that was lost goes out again within this long.
    pub resend_max: Duration,
}

impl Config {
    /// Reads the settings from the environment, with defaults for a local run.
    pub fn from_env() -> Result<Self> {
        let defaults = Defaults {
            http_port: 8001,
            database: "orders",
            http_workers: 2,
            consumer: ConsumerSettings { prefetch: 512, max_batch: 128, parallel: 1 },
        };
        Ok(Self {
            service: ServiceSettings::from_env(defaults)?,
            stock_url: string("STOCK_URL", "http://127.0.0.1:8003"),
            payment_url: string("PAYMENT_URL", "http://127.0.0.1:8002"),
            checkout_timeout_ms: parse("CHECKOUT_TIMEOUT_MS", 30_000)?,
            resend_after: Duration::from_millis(parse("RESEND_AFTER_MS", 2000)?),
            resend_max: Duration::from_millis(parse("RESEND_MAX_MS", 5000)?),
        })
    }
}

/// The settings as they may be logged: passwords in URLs are hidden.
impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} stock_url={} payment_url={} checkout_timeout_ms={} resend_after={:?} resend_max={:?}",
            self.service,
            redact_url(&self.stock_url),
            redact_url(&self.payment_url),
            self.checkout_timeout_ms,
            self.resend_after,
            self.resend_max,
        )
    }
}
