//! The payment-svc process: reads its configuration, then serves the REST API and the saga worker until stopped.

use payment_svc::{config::Config, startup::Application};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    platform::telemetry::init_for("payment");
    let config = Config::from_env()?;
    tracing::info!(%config, "starting payment-svc");
    let served = Application::build(config).await?.run_until_stopped().await;
    platform::telemetry::shutdown();
    served?;
    Ok(())
}
