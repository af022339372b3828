//! Starting a stock-svc for one test, and talking to it over HTTP and as the saga coordinator would.

use std::time::Duration;

use amqprs::{
    channel::{BasicConsumeArguments, Channel, ConsumerMessage},
    connection::{Connection, OpenConnectionArguments},
};
use diesel::{sql_types::BigInt, QueryableByName};
use diesel_async::RunQueryDsl;
use platform::{
    amqp::{Broker, Outgoing, Publisher},
    db::{Pool, PooledConnection},
    testing::{fresh_database, fresh_vhost},
};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use shared_contracts::{queues, CoordinatorMessage, Envelope, SagaId, StockCommand};
use stock_svc::{config::Config, startup::Application};
use tokio::sync::mpsc::UnboundedReceiver;

/// How long a test waits for a message before it fails.
const MESSAGE_DEADLINE: Duration = Duration::from_secs(15);

/// The queues the test side declares, so that it can read replies before the worker first connected.
const QUEUES: &[&str] = &[queues::STOCK_COMMANDS, queues::COORDINATOR];

/// A running stock-svc of one test.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub amqp_url: String,
    pool: Pool,
}

/// Starts stock-svc on a random port with its own database and vhost.
pub async fn spawn_app() -> TestApp {
    let database_url = fresh_database("stock").await.expect("creating a test database");
    let amqp_url = fresh_vhost().await.expect("creating a test vhost");
    let config = Config {
        http_addr: "127.0.0.1:0".into(),
        database_url: database_url.clone(),
        amqp_url: amqp_url.clone(),
        db_pool_size: 16,
        http_workers: 2,
        worker_prefetch: 64,
        worker_batch: 16,
        // One batch at a time: these tests send commands together and expect their replies in order.
        worker_parallel: 1,
    };
    let app = Application::build(config).await.expect("building stock-svc");
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

    /// Connects to the app's vhost as the coordinator would.
    pub async fn coordinator(&self) -> FakeCoordinator {
        let broker = Broker::new(&self.amqp_url, "stock-test", QUEUES).expect("a broker");
        let args = OpenConnectionArguments::try_from(self.amqp_url.as_str()).expect("a valid AMQP URL");
        let connection = Connection::open(&args).await.expect("connecting to RabbitMQ");
        let channel = connection.open_channel(None).await.expect("a channel");
        broker.declare_topology(&channel).await.expect("declaring queues");
        let replies = subscribe(&channel, queues::COORDINATOR).await;
        let dead_letters = subscribe(&channel, queues::DEAD_LETTERS).await;
        FakeCoordinator {
            commands: Publisher::new(broker),
            replies,
            dead_letters,
            _channel: channel,
            _connection: connection,
        }
    }
}

async fn subscribe(channel: &Channel, queue: &str) -> UnboundedReceiver<ConsumerMessage> {
    let args = BasicConsumeArguments::new(queue, &format!("test-{queue}")).auto_ack(true).finish();
    let (_, messages) = channel.basic_consume_rx(args).await.expect("consuming");
    messages
}

/// Stands in for the coordinator: sends stock commands and reads what comes back.
pub struct FakeCoordinator {
    commands: Publisher,
    replies: UnboundedReceiver<ConsumerMessage>,
    dead_letters: UnboundedReceiver<ConsumerMessage>,
    _channel: Channel,
    _connection: Connection,
}

impl FakeCoordinator {
    /// Publishes `commands`, all in one go, each for its saga.
    pub async fn send(&self, commands: &[(SagaId, StockCommand)]) {
        let messages: Vec<Outgoing> = commands
            .iter()
            .map(|(saga_id, command)| {
                Outgoing::envelope(queues::STOCK_COMMANDS, &Envelope::new(*saga_id, command.clone()))
            })
            .collect();
        self.commands.publish(&messages).await.expect("publishing commands");
    }

    /// Publishes raw bytes to the stock queue.
    pub async fn send_raw(&self, body: &[u8]) {
        let message = Outgoing {
            queue: queues::STOCK_COMMANDS.into(),
            body: body.to_vec(),
            message_id: "raw".into(),
            traceparent: None,
        };
        self.commands.publish(&[message]).await.expect("publishing raw bytes");
    }

    /// The next reply from stock-svc.
    pub async fn next_reply(&mut self) -> Envelope<CoordinatorMessage> {
        let body = next_body(&mut self.replies).await;
        Envelope::from_bytes(&body).expect("a readable reply")
    }

    /// The next message that reached the dead-letter queue.
    pub async fn next_dead_letter(&mut self) -> Vec<u8> {
        next_body(&mut self.dead_letters).await
    }
}

async fn next_body(messages: &mut UnboundedReceiver<ConsumerMessage>) -> Vec<u8> {
    let message = tokio::time::timeout(MESSAGE_DEADLINE, messages.recv())
        .await
        .expect("a message within the deadline")
        .expect("the consumer is open");
    message.content.unwrap_or_default()
}
