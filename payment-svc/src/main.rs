//! The payment-svc process: reads its configuration, then serves the REST API and the saga worker until stopped.

use payment_svc::{config::Config, startup::Payment};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    platform::startup::main::<Payment>(Config::from_env).await
}
