//! Starting a stock-svc for one test, and talking to it over HTTP and as the saga coordinator would.

use std::time::Duration;

use diesel::{sql_types::BigInt, QueryableByName};
use diesel_async::RunQueryDsl;
use platform::{
    amqp::ConsumerSettings,
    config::ServiceSettings,
    db::{Pool, PooledConnection},
    testing::{fresh_database, fresh_vhost, FakeCoordinator, TestBroker},
};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use shared_contracts::{queues, CheckoutRequest, CoordinatorMessage, Envelope, LineItem, SagaId, StockCommand};
use stock_svc::{config::Config, startup::Application};

/// Nothing listens here: a stock-svc told the coordinator is here cannot ask it anything.
const NO_COORDINATOR: &str = "http://127.0.0.1:1";

/// A running stock-svc of one test.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub amqp_url: String,
    pool: Pool,
    /// The vhost of the real coordinator the app asks, when it has one.
    coordinator_amqp_url: Option<String>,
}

/// Starts stock-svc on a random port with its own database and vhost, and no coordinator to ask: `batch_init`
/// cannot go ahead.
pub async fn spawn_app() -> TestApp {
    start(NO_COORDINATOR.to_owned(), None).await
}

/// Like [`spawn_app`], with a real coordinator to ask before `batch_init`. The coordinator has a vhost of its own,
/// so that it neither drives this stock-svc nor takes the replies the test reads as the coordinator.
pub async fn spawn_app_with_coordinator() -> TestApp {
    let amqp_url = fresh_vhost().await.expect("creating a vhost for the coordinator");
    let mut config = coordinator::config::Config::from_env().expect("the coordinator's configuration");
    config.service.http_addr = "127.0.0.1:0".into();
    config.service.database_url = fresh_database("coordinator").await.expect("creating a coordinator database");
    config.service.amqp_url = amqp_url.clone();
    let coordinator = coordinator::startup::Application::build(config).await.expect("building the coordinator");
    let coordinator_url = format!("http://127.0.0.1:{}", coordinator.port());
    tokio::spawn(coordinator.run_until_stopped());
    start(coordinator_url, Some(amqp_url)).await
}

async fn start(coordinator_url: String, coordinator_amqp_url: Option<String>) -> TestApp {
    let database_url = fresh_database("stock").await.expect("creating a test database");
    let amqp_url = fresh_vhost().await.expect("creating a test vhost");
    let service = ServiceSettings {
        http_addr: "127.0.0.1:0".into(),
        database_url: database_url.clone(),
        amqp_url: amqp_url.clone(),
        db_pool_size: 16,
        http_workers: 2,
        // One batch at a time: these tests send commands together and expect their replies in order.
        consumer: ConsumerSettings { prefetch: 64, max_batch: 16, parallel: 1 },
        shutdown_timeout: platform::config::DEFAULT_SHUTDOWN_TIMEOUT,
    };
    let config = Config { service, coordinator_url };
    let app = Application::build(config).await.expect("building stock-svc");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    let pool = platform::db::pool(&database_url, 2).expect("a pool for the test's own queries");
    TestApp { address, client: reqwest::Client::new(), amqp_url, pool, coordinator_amqp_url }
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

impl TestApp {
    /// Sends `method path` and returns the status and the JSON body.
    pub async fn call(&self, method: Method, path: &str) -> (StatusCode, Value) {
        let response =
            self.client.request(method, format!("{}{path}", self.address)).send().await.expect("stock-svc answers");
        let status = response.status();
        let body = response.json().await.expect("a JSON body");
        (status, body)
    }

    /// `POST path`.
    pub async fn post(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::POST, path).await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path).await
    }

    /// Creates an item at `price` with `stock` units and returns its ID.
    pub async fn item_with(&self, stock: i64, price: i64) -> String {
        let (status, body) = self.post(&format!("/stock/item/create/{price}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let item_id = body["item_id"].as_str().expect("an item_id").to_owned();
        let (status, body) = self.post(&format!("/stock/add/{item_id}/{stock}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        item_id
    }

    /// The stock of `item_id`, read through the API.
    pub async fn stock_of(&self, item_id: &str) -> i64 {
        let (status, body) = self.get(&format!("/stock/find/{item_id}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["stock"].as_i64().expect("a stock")
    }

    /// A connection to the app's database, for tests that drive the store directly.
    pub async fn connection(&self) -> PooledConnection {
        self.pool.get().await.expect("a test connection")
    }

    /// How many items exist, read from the database.
    pub async fn item_count(&self) -> i64 {
        let mut conn = self.pool.get().await.expect("a test connection");
        let row: Count =
            diesel::sql_query("SELECT count(*) AS count FROM items").get_result(&mut conn).await.expect("counting");
        row.count
    }

    /// Runs `sql` on the app's database, for a situation the API cannot make.
    pub async fn execute(&self, sql: &str) {
        let mut conn = self.pool.get().await.expect("a test connection");
        diesel::sql_query(sql).execute(&mut conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Connects to the app's vhost as the coordinator would.
    pub async fn coordinator(&self) -> FakeCoordinator {
        FakeCoordinator::connect(&self.amqp_url, queues::STOCK_COMMANDS).await
    }

    /// Starts a checkout saga at the app's real coordinator, which no participant answers, so that it stays
    /// unfinished; returns once the saga is recorded (its first stock command is out).
    pub async fn start_an_unfinished_saga(&self) {
        let amqp_url = self.coordinator_amqp_url.as_deref().expect("an app with a coordinator");
        let broker = TestBroker::connect(amqp_url).await.expect("connecting to the coordinator's vhost");
        let request = CheckoutRequest {
            order_id: "order-1".into(),
            user_id: "user-1".into(),
            items: vec![LineItem { item_id: "0".into(), quantity: 1 }],
            total: 1,
        };
        let start = Envelope::new(SagaId::new(), CoordinatorMessage::StartCheckout(request));
        broker.publish(queues::COORDINATOR, start.to_bytes()).await.expect("publishing a checkout");
        broker
            .next_envelope::<StockCommand>(queues::STOCK_COMMANDS, Duration::from_secs(15))
            .await
            .expect("the coordinator recorded the saga and sent its first command");
    }
}
