//! Starting a payment-svc for one test, and talking to it over HTTP and as the saga coordinator would.

use diesel::{sql_types::BigInt, QueryableByName};
use diesel_async::RunQueryDsl;
use payment_svc::{config::Config, startup::Application};
use platform::{
    db::Pool,
    testing::{fresh_database, fresh_vhost, FakeCoordinator},
};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use shared_contracts::{queues, CoordinatorMessage, PaymentCommand, PaymentReply, SagaId};

/// Nothing listens here: REST-only tests need no broker, and the worker just keeps retrying to connect.
const NO_BROKER: &str = "amqp://guest:guest@127.0.0.1:1/%2f";

/// A running payment-svc of one test.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub amqp_url: String,
    pool: Pool,
}

/// Starts payment-svc on a random port with its own database, for tests of the REST API.
pub async fn spawn_app() -> TestApp {
    start(NO_BROKER.to_owned(), 1).await
}

/// Starts payment-svc on a random port with its own database and vhost, for tests of the saga worker. It handles
/// one batch at a time: these tests send commands together and expect their replies in order.
pub async fn spawn_app_with_broker() -> TestApp {
    start(fresh_vhost().await.expect("creating a test vhost"), 1).await
}

/// Like [`spawn_app_with_broker`], with a worker that handles two batches at once, for tests of concurrent batches.
pub async fn spawn_app_with_parallel_batches() -> TestApp {
    start(fresh_vhost().await.expect("creating a test vhost"), 2).await
}

async fn start(amqp_url: String, worker_parallel: usize) -> TestApp {
    let database_url = fresh_database("payment").await.expect("creating a test database");
    let config = Config {
        http_addr: "127.0.0.1:0".into(),
        database_url: database_url.clone(),
        amqp_url: amqp_url.clone(),
        db_pool_size: 16,
        http_workers: 2,
        worker_prefetch: 64,
        worker_batch: 16,
        worker_parallel,
    };
    let app = Application::build(config).await.expect("building payment-svc");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    let pool = platform::db::pool(&database_url, 2).expect("a pool for the test's own queries");
    TestApp { address, client: reqwest::Client::new(), amqp_url, pool }
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
