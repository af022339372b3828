//! Starting a payment-svc for one test, and talking to it over HTTP and as the saga coordinator would; and
//! starting it inside the whole checkout backend, for what payment-svc asks order-svc to do.

use std::time::Duration;

use diesel::{sql_types::BigInt, QueryableByName};
use diesel_async::RunQueryDsl;
use payment_svc::{config::Config, startup::Application};
use platform::{
    amqp::ConsumerSettings,
    config::ServiceSettings,
    db::Pool,
    testing::{fresh_database, fresh_vhost, FakeCoordinator, TestBroker},
};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use shared_contracts::{
    queues, CheckoutRequest, CoordinatorMessage, Envelope, LineItem, PaymentCommand, PaymentReply, SagaId,
};

/// Nothing listens here: REST-only tests need no broker, and the worker just keeps retrying to connect.
const NO_BROKER: &str = "amqp://guest:guest@127.0.0.1:1/%2f";
/// Nothing listens here either: a payment-svc sent here for the coordinator or order-svc cannot reach them.
const NOBODY: &str = "http://127.0.0.1:1";

/// A running payment-svc of one test.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub amqp_url: String,
    pool: Pool,
    /// The vhost of the real coordinator the app asks, when it has one of its own.
    coordinator_amqp_url: Option<String>,
}

/// Where a payment-svc finds the services it calls; nobody where `None`.
struct Peers {
    coordinator_url: Option<String>,
    order_url: Option<String>,
    coordinator_amqp_url: Option<String>,
}

const NO_PEERS: Peers = Peers { coordinator_url: None, order_url: None, coordinator_amqp_url: None };

/// Starts payment-svc on a random port with its own database, for tests of the REST API. It cannot reach a
/// coordinator (`batch_init` cannot go ahead) nor order-svc.
pub async fn spawn_app() -> TestApp {
    start(NO_BROKER.to_owned(), 1, NO_PEERS).await
}

/// Like [`spawn_app`], with a real coordinator to ask before `batch_init`. The coordinator has a vhost of its own
/// and nothing answers its commands, so that the sagas it is given stay unfinished.
pub async fn spawn_app_with_coordinator() -> TestApp {
    let amqp_url = fresh_vhost().await.expect("creating a vhost for the coordinator");
    let coordinator_url = start_coordinator(&amqp_url).await;
    let peers = Peers { coordinator_url: Some(coordinator_url), order_url: None, coordinator_amqp_url: Some(amqp_url) };
    start(NO_BROKER.to_owned(), 1, peers).await
}

/// Starts payment-svc on a random port with its own database and vhost, for tests of the saga worker. It handles
/// one batch at a time: these tests send commands together and expect their replies in order.
pub async fn spawn_app_with_broker() -> TestApp {
    start(fresh_vhost().await.expect("creating a test vhost"), 1, NO_PEERS).await
}

/// Like [`spawn_app_with_broker`], with a worker that handles two batches at once, for tests of concurrent batches.
pub async fn spawn_app_with_parallel_batches() -> TestApp {
    start(fresh_vhost().await.expect("creating a test vhost"), 2, NO_PEERS).await
}

/// A coordinator on a random port with its own database, on the vhost at `amqp_url`; returns its base URL.
async fn start_coordinator(amqp_url: &str) -> String {
    let mut config = coordinator::config::Config::from_env().expect("the coordinator's configuration");
    config.service.http_addr = "127.0.0.1:0".into();
    config.service.database_url = fresh_database("coordinator").await.expect("creating a coordinator database");
    config.service.amqp_url = amqp_url.to_owned();
    config.retry_after = Duration::from_secs(1);
    let coordinator = coordinator::startup::Application::build(config).await.expect("building the coordinator");
    let url = format!("http://127.0.0.1:{}", coordinator.port());
    tokio::spawn(coordinator.run_until_stopped());
    url
}

async fn start(amqp_url: String, worker_parallel: usize, peers: Peers) -> TestApp {
    let database_url = fresh_database("payment").await.expect("creating a test database");
    let config = Config {
        service: ServiceSettings {
            http_addr: "127.0.0.1:0".into(),
            database_url: database_url.clone(),
            amqp_url: amqp_url.clone(),
            db_pool_size: 16,
            http_workers: 2,
            consumer: ConsumerSettings { prefetch: 64, max_batch: 16, parallel: worker_parallel },
            shutdown_timeout: platform::config::DEFAULT_SHUTDOWN_TIMEOUT,
        },
        coordinator_url: peers.coordinator_url.unwrap_or_else(|| NOBODY.to_owned()),
        order_url: peers.order_url.unwrap_or_else(|| NOBODY.to_owned()),
    };
    let app = Application::build(config).await.expect("building payment-svc");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    let pool = platform::db::pool(&database_url, 2).expect("a pool for the test's own queries");
    TestApp {
        address,
        client: reqwest::Client::new(),
        amqp_url,
        pool,
        coordinator_amqp_url: peers.coordinator_amqp_url,
    }
}

/// The whole checkout backend around the payment-svc under test, on one vhost: a coordinator, stock-svc and
/// order-svc, each with its own database, so that a checkout charges through payment-svc's saga worker and a
/// cancellation runs through order-svc.
pub struct TestSystem {
    /// The payment-svc under test.
    pub payment: TestApp,
    /// Base URL of order-svc.
    pub orders: String,
    /// Base URL of stock-svc.
    pub stock: String,
}

/// Starts [`TestSystem`].
pub async fn spawn_system() -> TestSystem {
    let amqp_url = fresh_vhost().await.expect("creating a test vhost");
    let coordinator_url = start_coordinator(&amqp_url).await;

    let mut stock = stock_svc::config::Config::from_env().expect("stock-svc's configuration");
    stock.service.http_addr = "127.0.0.1:0".into();
    stock.service.database_url = fresh_database("stock").await.expect("creating a stock database");
    stock.service.amqp_url = amqp_url.clone();
    stock.coordinator_url = coordinator_url.clone();
    let stock = stock_svc::startup::Application::build(stock).await.expect("building stock-svc");
    let stock_url = format!("http://127.0.0.1:{}", stock.port());
    tokio::spawn(stock.run_until_stopped());

    // payment-svc and order-svc each call the other: order-svc gets a port known before either starts.
    let orders_addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port for order-svc");
    let orders_url = format!("http://{orders_addr}");
    let peers = Peers {
        coordinator_url: Some(coordinator_url),
        order_url: Some(orders_url.clone()),
        coordinator_amqp_url: None,
    };
    let payment = start(amqp_url.clone(), 1, peers).await;

    let mut orders = order_svc::config::Config::from_env().expect("order-svc's configuration");
    orders.service.http_addr = orders_addr.to_string();
    orders.service.database_url = fresh_database("orders").await.expect("creating an order database");
    orders.service.amqp_url = amqp_url;
    orders.stock_url = stock_url.clone();
    orders.payment_url = payment.address.clone();
    let orders = order_svc::startup::Application::build(orders).await.expect("building order-svc");
    tokio::spawn(orders.run_until_stopped());

    TestSystem { payment, orders: orders_url, stock: stock_url }
}

impl TestSystem {
    /// Sends `method url` and returns the status and the JSON body.
    pub async fn call(&self, method: Method, url: &str) -> (StatusCode, Value) {
        let response = self.payment.client.request(method, url).send().await.expect("the service answers");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// `POST path` to order-svc, which must succeed; returns the body.
    pub async fn orders_ok(&self, path: &str) -> Value {
        let (status, body) = self.call(Method::POST, &format!("{}{path}", self.orders)).await;
        assert!(status.is_success(), "POST {path}: {status} {body}");
        body
    }

    /// An item with `stock` units at `price`; returns its ID.
    pub async fn item_with(&self, stock: u64, price: u64) -> String {
        let (status, body) = self.call(Method::POST, &format!("{}/stock/item/create/{price}", self.stock)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let item_id = body["item_id"].as_str().expect("an item_id").to_owned();
        let (status, body) = self.call(Method::POST, &format!("{}/stock/add/{item_id}/{stock}", self.stock)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        item_id
    }

    /// The stock of `item_id`.
    pub async fn stock_of(&self, item_id: &str) -> i64 {
        let (status, body) = self.call(Method::GET, &format!("{}/stock/find/{item_id}", self.stock)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["stock"].as_i64().expect("a stock")
    }

    /// An order of `user_id` for `quantity` of `item_id`, checked out and paid; returns its ID.
    pub async fn paid_order(&self, user_id: &str, item_id: &str, quantity: u64) -> String {
        let created = self.orders_ok(&format!("/orders/create/{user_id}")).await;
        let order_id = created["order_id"].as_str().expect("an order_id").to_owned();
        self.orders_ok(&format!("/orders/addItem/{order_id}/{item_id}/{quantity}")).await;
        self.orders_ok(&format!("/orders/checkout/{order_id}")).await;
        order_id
    }

    /// Whether order-svc shows `order_id` as paid.
    pub async fn order_is_paid(&self, order_id: &str) -> bool {
        let (status, body) = self.call(Method::GET, &format!("{}/orders/find/{order_id}", self.orders)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["paid"].as_bool().expect("a paid flag")
    }
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
            self.client.request(method, format!("{}{path}", self.address)).send().await.expect("payment-svc answers");
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

    /// Runs `sql` on the app's database, for a situation the API cannot make.
    pub async fn execute(&self, sql: &str) {
        let mut conn = self.pool.get().await.expect("a test connection");
        diesel::sql_query(sql).execute(&mut conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Makes the user `user_id` with `credit`, straight in the database (as `batch_init` would, without asking the
    /// coordinator).
    pub async fn given_user(&self, user_id: &str, credit: u64) {
        self.execute(&format!("INSERT INTO users (id, credit) VALUES ('{user_id}', {credit})")).await;
    }

    /// Starts a checkout saga at the app's own coordinator, which no participant answers, so that it stays
    /// unfinished; returns once the saga is recorded (its first payment command is out).
    pub async fn start_an_unfinished_saga(&self) {
        let amqp_url = self.coordinator_amqp_url.as_deref().expect("an app with a coordinator");
        let broker = TestBroker::connect(amqp_url).await.expect("connecting to the coordinator's vhost");
        let request = CheckoutRequest {
            order_id: "order-1".into(),
            user_id: "0".into(),
            items: vec![LineItem { item_id: "item-1".into(), quantity: 1 }],
            total: 1,
        };
        let start = Envelope::new(SagaId::new(), CoordinatorMessage::StartCheckout(request));
        broker.publish(queues::COORDINATOR, start.to_bytes()).await.expect("publishing a checkout");
        broker
            .next_envelope::<PaymentCommand>(queues::PAYMENT_COMMANDS, Duration::from_secs(15))
            .await
            .expect("the coordinator recorded the saga and sent its first command");
    }

    /// Creates a user with `credit` and returns its ID.
    pub async fn user_with(&self, credit: u64) -> String {
        let (status, body) = self.post("/payment/create_user").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let user_id = body["user_id"].as_str().expect("a user_id").to_owned();
        let (status, body) = self.post(&format!("/payment/add_funds/{user_id}/{credit}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        user_id
    }

    /// The credit of `user_id`, read through the API.
    pub async fn credit_of(&self, user_id: &str) -> u64 {
        let (status, body) = self.get(&format!("/payment/find_user/{user_id}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["credit"].as_u64().expect("a credit")
    }

    /// Whether `user_id` has paid for `order_id`, read through the API.
    pub async fn is_paid(&self, user_id: &str, order_id: &str) -> bool {
        let (status, body) = self.get(&format!("/payment/status/{user_id}/{order_id}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["paid"].as_bool().expect("a paid flag")
    }

    /// How many rows a `SELECT count(*) AS count ...` query counts, read from the database.
    pub async fn count(&self, query: &str) -> i64 {
        let mut conn = self.pool.get().await.expect("a test connection");
        let row: Count = diesel::sql_query(query).get_result(&mut conn).await.expect("counting");
        row.count
    }

    /// Connects to the app's vhost as the coordinator would.
    pub async fn coordinator(&self) -> FakeCoordinator {
        FakeCoordinator::connect(&self.amqp_url, queues::PAYMENT_COMMANDS).await
    }
}

/// Replies read as payment-svc's: (saga, reply).
pub trait PaymentReplies {
    /// The next reply, which must be payment-svc's.
    async fn next_payment_reply(&mut self) -> (SagaId, PaymentReply);
}

impl PaymentReplies for FakeCoordinator {
    async fn next_payment_reply(&mut self) -> (SagaId, PaymentReply) {
        let envelope = self.next_reply().await;
        match envelope.body {
            CoordinatorMessage::Payment(reply) => (envelope.saga_id, reply),
            other => panic!("payment-svc sent {other:?}"),
        }
    }
}

/// A `Charge` command.
pub fn charge(user_id: &str, order_id: &str, amount: u64) -> PaymentCommand {
    PaymentCommand::Charge { user_id: user_id.into(), order_id: order_id.into(), amount }
}
