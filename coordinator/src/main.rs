//! The coordinator process: reads its configuration, then runs the sagas and serves the admin API until stopped.

use coordinator::{config::Config, startup::Coordinator};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    platform::startup::main::<Coordinator>(Config::from_env).await
}
