//! The coordinator process.

use coordinator::{config::Config, startup::Application};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    platform::telemetry::init();
    let config = Config::from_env()?;
    tracing::info!(?config, "starting coordinator");
    Application::build(config).await?.run_until_stopped().await?;
    Ok(())
}
