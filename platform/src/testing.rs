//! Test support, compiled only with the `testing` feature: every test gets a database and a RabbitMQ vhost of
//! its own, so tests run in parallel without seeing each other's rows or messages.
//!
//! The servers come from `TEST_POSTGRES_URL` (default `postgres://postgres:postgres@127.0.0.1:5432`) and
//! `TEST_AMQP_URL` (default `amqp://guest:guest@127.0.0.1:5672`). Vhosts are made with `rabbitmqctl`, which
//! `scripts/test.sh` makes sure is there. Leftovers of earlier runs are removed by `scripts/test.sh`, which
//! drops every database and vhost whose name starts with `t_`.

use anyhow::{bail, Context, Result};

/// The PostgreSQL server tests use, without a database name.
pub fn postgres_server() -> String {
    crate::config::string("TEST_POSTGRES_URL", "postgres://postgres:postgres@127.0.0.1:5432")
}

/// The RabbitMQ server tests use, without a vhost.
pub fn amqp_server() -> String {
    crate::config::string("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672")
}

/// A unique name for a test resource, starting with `t_` and saying what it is for.
pub fn unique_name(purpose: &str) -> String {
    format!("t_{purpose}_{}", uuid::Uuid::new_v4().simple())
}

/// Creates an empty database for `purpose` and returns its URL.
pub async fn fresh_database(purpose: &str) -> Result<String> {
    let url = format!("{}/{}", postgres_server(), unique_name(purpose));
    crate::db::create_database_if_missing(&url).await?;
    Ok(url)
}

/// Creates an empty vhost on the test broker, open to the broker's user, and returns its URL.
pub async fn fresh_vhost() -> Result<String> {
    let vhost = unique_name("vhost");
    rabbitmqctl(&["add_vhost", &vhost]).await?;
    rabbitmqctl(&["set_permissions", "-p", &vhost, "guest", ".*", ".*", ".*"]).await?;
    Ok(format!("{}/{vhost}", amqp_server()))
}

async fn rabbitmqctl(args: &[&str]) -> Result<()> {
    let output = tokio::process::Command::new("rabbitmqctl")
        .args(args)
        .output()
        .await
        .context("running rabbitmqctl (is RabbitMQ installed? scripts/test.sh installs it)")?;
    if !output.status.success() {
        bail!("rabbitmqctl {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(())
}
