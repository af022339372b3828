//! The stock-svc process: reads its configuration, then serves the REST API and the saga worker until stopped.

use stock_svc::{config::Config, startup::Stock};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    platform::startup::main::<Stock>(Config::from_env).await
}
