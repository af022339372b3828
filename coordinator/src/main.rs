//! The coordinator process.

use coordinator::{config::Config, startup::Application};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    platform::telemetry::init_for("coordinator");
    let config = Config::from_env()?;
    tracing::info!(?config, "starting coordinator");
    let served = Application::build(config).await?.run_until_stopped().await;
    platform::telemetry::shutdown();
    served?;
    Ok(())
}
