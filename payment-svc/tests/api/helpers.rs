//! Starting a payment-svc for one test, and talking to it over HTTP and as the saga coordinator would.

use std::time::Duration;

use amqprs::{
    channel::{BasicConsumeArguments, Channel, ConsumerMessage},
    connection::{Connection, OpenConnectionArguments},
};
use diesel::{sql_types::BigInt, QueryableByName};
use diesel_async::RunQueryDsl;
use payment_svc::{config::Config, startup::Application};
use platform::{
    amqp::{Broker, Outgoing, Publisher},
    db::Pool,
    testing::{fresh_database, fresh_vhost},
};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use shared_contracts::{queues, CoordinatorMessage, Envelope, PaymentCommand, PaymentReply, SagaId};
use tokio::sync::mpsc::UnboundedReceiver;

/// How long a test waits for a message before it fails.
const MESSAGE_DEADLINE: Duration = Duration::from_secs(15);

/// The queues the test side declares, so that it can read replies before the worker first connected.
const QUEUES: &[&str] = &[queues::PAYMENT_COMMANDS, queues::COORDINATOR];

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
    start(NO_BROKER.to_owned()).await
}

/// Starts payment-svc on a random port with its own database and vhost, for tests of the saga worker.
pub async fn spawn_app_with_broker() -> TestApp {
    start(fresh_vhost().await.expect("creating a test vhost")).await
}

async fn start(amqp_url: String) -> TestApp {
    let database_url = fresh_database("payment").await.expect("creating a test database");
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
        let broker = Broker::new(&self.amqp_url, "payment-test", QUEUES).expect("a broker");
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

/// Stands in for the coordinator: sends payment commands and reads what comes back.
pub struct FakeCoordinator {
    commands: Publisher,
    replies: UnboundedReceiver<ConsumerMessage>,
    dead_letters: UnboundedReceiver<ConsumerMessage>,
    _channel: Channel,
    _connection: Connection,
}

impl FakeCoordinator {
    /// Publishes `commands`, all in one go, each for its saga.
    pub async fn send(&self, commands: &[(SagaId, PaymentCommand)]) {
        let messages: Vec<Outgoing> = commands
            .iter()
            .map(|(saga_id, command)| {
                Outgoing::envelope(queues::PAYMENT_COMMANDS, &Envelope::new(*saga_id, command.clone()))
            })
            .collect();
        self.commands.publish(&messages).await.expect("publishing commands");
    }

    /// Publishes raw bytes to the payment queue.
    pub async fn send_raw(&self, body: &[u8]) {
        let message = Outgoing {
            queue: queues::PAYMENT_COMMANDS.into(),
            body: body.to_vec(),
            message_id: "raw".into(),
            traceparent: None,
        };
        self.commands.publish(&[message]).await.expect("publishing raw bytes");
    }

    /// The next reply from payment-svc, as (saga, reply).
    pub async fn next_reply(&mut self) -> (SagaId, PaymentReply) {
        let body = next_body(&mut self.replies).await;
        let envelope = Envelope::<CoordinatorMessage>::from_bytes(&body).expect("a readable reply");
        match envelope.body {
            CoordinatorMessage::Payment(reply) => (envelope.saga_id, reply),
            other => panic!("payment-svc sent {other:?}"),
        }
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

/// A `Charge` command.
pub fn charge(user_id: &str, order_id: &str, amount: u64) -> PaymentCommand {
    PaymentCommand::Charge { user_id: user_id.into(), order_id: order_id.into(), amount }
}
