//! Runs the whole checkout backend inside a test: stock-svc, payment-svc, the coordinator and order-svc, each
//! with a fresh database, sharing a fresh RabbitMQ vhost, each on a free port. Tests then speak to it over HTTP
//! exactly as the course's clients do. [`chaos`] runs it as separate processes on private servers instead, for
//! tests that kill processes and restart the broker or the database, and [`ha`] runs two of every service behind the
//! gateway on a three-node broker cluster, for tests that kill or restart one process at a time.

pub mod chaos;
pub mod ha;
pub mod model;
pub mod tls;

use anyhow::{bail, Context, Result};
use reqwest::StatusCode;
use serde_json::Value;

/// A running system and a client for it.
pub struct System {
    /// Base URL of order-svc.
    pub orders: String,
    /// Base URL of payment-svc.
    pub payment: String,
    /// Base URL of stock-svc.
    pub stock: String,
    /// Base URL of the coordinator's admin API.
    pub coordinator: String,
    http: reqwest::Client,
    leftovers: Leftovers,
}

/// What a [`System`] made on the shared servers: its databases and its vhost. Tests that start many systems
/// remove them once a system has stopped (its runtime shut down); otherwise `scripts/test.sh` does at the end.
#[derive(Debug, Clone)]
pub struct Leftovers {
    databases: Vec<String>,
    vhost_url: String,
}

impl Leftovers {
    /// Drops the databases (closing any connection still open) and deletes the vhost.
    pub async fn remove(self) -> Result<()> {
        let server = format!("{}/postgres", platform::testing::postgres_server());
        let (client, connection) = tokio_postgres::connect(&server, tokio_postgres::NoTls).await?;
        let connection = tokio::spawn(connection);
        for url in &self.databases {
            let name = last_segment(url);
            client.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await?;
        }
        drop(client);
        let _ = connection.await;
        let vhost = last_segment(&self.vhost_url);
        let output = tokio::process::Command::new("rabbitmqctl").args(["-q", "delete_vhost", vhost]).output().await?;
        if !output.status.success() {
            bail!("rabbitmqctl delete_vhost {vhost}: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(())
    }
}

fn last_segment(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

/// An address on 127.0.0.1 with a port that was free a moment ago, for a service whose URL others need before
/// it starts.
fn reserve_port() -> Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.to_string())
}

/// An HTTP answer: its status and JSON body (`Value::Null` when the body is not JSON).
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: StatusCode,
    /// The body.
    pub body: Value,
}

impl System {
    /// Starts every service. The coordinator's retry timer is short so that lost messages heal quickly.
    ///
    /// The coordinator starts first: stock-svc and payment-svc are given its URL. order-svc and payment-svc are
    /// each given the other's URL, so order-svc's port is reserved before payment-svc starts.
    pub async fn start() -> Result<Self> {
        platform::telemetry::init();
        let amqp_url = platform::testing::fresh_vhost().await?;
        let mut leftovers = Leftovers { databases: Vec::new(), vhost_url: amqp_url.clone() };
        let local = "127.0.0.1:0".to_owned();

        let mut coordinator = coordinator::config::Config::from_env()?;
        coordinator.service.http_addr = local.clone();
        coordinator.service.database_url = platform::testing::fresh_database("coordinator").await?;
        leftovers.databases.push(coordinator.service.database_url.clone());
        coordinator.service.amqp_url = amqp_url.clone();
        coordinator.retry_after = std::time::Duration::from_secs(2);
        let coordinator =
            coordinator::startup::Application::build(coordinator).await.context("starting the coordinator")?;
        let coordinator_url = format!("http://127.0.0.1:{}", coordinator.port());
        tokio::spawn(coordinator.run_until_stopped());

        let orders_addr = reserve_port()?;
        let orders_url = format!("http://{orders_addr}");

        let mut stock = stock_svc::config::Config::from_env()?;
        stock.service.http_addr = local.clone();
        stock.service.database_url = platform::testing::fresh_database("stock").await?;
        leftovers.databases.push(stock.service.database_url.clone());
        stock.service.amqp_url = amqp_url.clone();
        stock.coordinator_url = coordinator_url.clone();
        let stock = stock_svc::startup::Application::build(stock).await.context("starting stock-svc")?;
        let stock_url = format!("http://127.0.0.1:{}", stock.port());
        tokio::spawn(stock.run_until_stopped());

        let mut payment = payment_svc::config::Config::from_env()?;
        payment.service.http_addr = local;
        payment.service.database_url = platform::testing::fresh_database("payment").await?;
        leftovers.databases.push(payment.service.database_url.clone());
        payment.service.amqp_url = amqp_url.clone();
        payment.coordinator_url = coordinator_url.clone();
        payment.order_url = orders_url.clone();
        let payment = payment_svc::startup::Application::build(payment).await.context("starting payment-svc")?;
        let payment_url = format!("http://127.0.0.1:{}", payment.port());
        tokio::spawn(payment.run_until_stopped());

        let mut orders = order_svc::config::Config::from_env()?;
        orders.service.http_addr = orders_addr;
        orders.service.database_url = platform::testing::fresh_database("orders").await?;
        leftovers.databases.push(orders.service.database_url.clone());
        orders.service.amqp_url = amqp_url;
        orders.stock_url = stock_url.clone();
        orders.payment_url = payment_url.clone();
        let orders = order_svc::startup::Application::build(orders).await.context("starting order-svc")?;
        tokio::spawn(orders.run_until_stopped());

        let http = reqwest::Client::builder().pool_max_idle_per_host(1024).build()?;
        Ok(Self {
            orders: orders_url,
            payment: payment_url,
            stock: stock_url,
            coordinator: coordinator_url,
            http,
            leftovers,
        })
    }

    /// The databases and the vhost this system uses, to remove once it has stopped.
    pub fn leftovers(&self) -> Leftovers {
        self.leftovers.clone()
    }

    /// Sends `method` to `url` and reads the answer.
    pub async fn call(&self, method: reqwest::Method, url: String) -> Result<Answer> {
        let response = self.http.request(method, &url).send().await.with_context(|| format!("calling {url}"))?;
        let status = response.status();
        let body = response.json().await.unwrap_or(Value::Null);
        Ok(Answer { status, body })
    }

    /// POSTs to `path` on the service at `base` and fails unless the answer is 2xx; returns the body.
    pub async fn post_ok(&self, base: &str, path: &str) -> Result<Value> {
        let answer = self.call(reqwest::Method::POST, format!("{base}{path}")).await?;
        if !answer.status.is_success() {
            bail!("POST {path} answered {}: {}", answer.status, answer.body);
        }
        Ok(answer.body)
    }

    /// GETs `path` on the service at `base` and fails unless the answer is 2xx; returns the body.
    pub async fn get_ok(&self, base: &str, path: &str) -> Result<Value> {
        let answer = self.call(reqwest::Method::GET, format!("{base}{path}")).await?;
        if !answer.status.is_success() {
            bail!("GET {path} answered {}: {}", answer.status, answer.body);
        }
        Ok(answer.body)
    }

    /// Checks out `order_id`.
    pub async fn checkout(&self, order_id: &str) -> Result<Answer> {
        self.call(reqwest::Method::POST, format!("{}/orders/checkout/{order_id}", self.orders)).await
    }

    /// The stock of `item_id`.
    pub async fn stock_of(&self, item_id: &str) -> Result<i64> {
        let found = self.get_ok(&self.stock, &format!("/stock/find/{item_id}")).await?;
        found["stock"].as_i64().context("stock is not a number")
    }

    /// The credit of `user_id`.
    pub async fn credit_of(&self, user_id: &str) -> Result<i64> {
        let found = self.get_ok(&self.payment, &format!("/payment/find_user/{user_id}")).await?;
        found["credit"].as_i64().context("credit is not a number")
    }

    /// Whether order-svc shows `order_id` as paid.
    pub async fn is_paid(&self, order_id: &str) -> Result<bool> {
        let found = self.get_ok(&self.orders, &format!("/orders/find/{order_id}")).await?;
        found["paid"].as_bool().context("paid is not a boolean")
    }

    /// Creates an order for `user_id` holding `items` (item ID, quantity); returns its ID.
    pub async fn order_with(&self, user_id: &str, items: &[(&str, u64)]) -> Result<String> {
        let created = self.post_ok(&self.orders, &format!("/orders/create/{user_id}")).await?;
        let order_id = created["order_id"].as_str().context("no order_id")?.to_owned();
        for (item_id, quantity) in items {
            self.post_ok(&self.orders, &format!("/orders/addItem/{order_id}/{item_id}/{quantity}")).await?;
        }
        Ok(order_id)
    }

    /// The coordinator's count of sagas per status.
    pub async fn saga_counts(&self) -> Result<Value> {
        Ok(self.get_ok(&self.coordinator, "/admin/stats").await?["sagas"].clone())
    }
}
