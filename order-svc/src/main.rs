//! The order-svc process: reads its configuration, then serves the REST API and consumes checkout outcomes until
//! stopped.

use order_svc::{config::Config, startup::Order};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    platform::startup::main::<Order>(Config::from_env).await
}
