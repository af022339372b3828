//! The order-svc process: reads its configuration, then serves the REST API and consumes checkout outcomes until
//! stopped.

use order_svc::{config::Config, startup::Application};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    platform::telemetry::init_for("order");
    let config = Config::from_env()?;
    tracing::info!(%config, "starting order-svc");
    let served = Application::build(config).await?.run_until_stopped().await;
    platform::telemetry::shutdown();
    served?;
    Ok(())
}
