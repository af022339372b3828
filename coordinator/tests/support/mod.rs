//! Starting a coordinator for one test, on a random port with its own database and vhost, and playing the other
//! services on the broker.

#![allow(dead_code)] // Each test crate uses a different part of this.

pub mod browser;

use std::time::Duration;

use coordinator::{config::Config, startup::Application};
use platform::testing::{eventually_ok, fresh_database, fresh_vhost, TestBroker};
use serde_json::Value;
use shared_contracts::{queues, CheckoutRequest, CoordinatorMessage, Envelope, LineItem, SagaId};

/// How long a test waits for something that should happen promptly.
pub const WAIT: Duration = Duration::from_secs(15);

/// A running coordinator and a raw broker client on its vhost.
pub struct Harness {
    pub broker: TestBroker,
    pub amqp_url: String,
    pub database_url: String,
    pub admin: String,
    pub http: reqwest::Client,
}

/// Starts a coordinator whose admin API demands `admin_token`, or answers loopback callers without one.
pub async fn start(admin_token: Option<&str>) -> Harness {
    start_with(|config| config.admin_token = admin_token.map(str::to_owned)).await
}

/// Starts a coordinator with the test's settings, then whatever `adjust` changes (retries come after a minute
/// unless it says otherwise).
pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Harness {
    platform::telemetry::init();
    let mut config = Config::from_env().expect("the default configuration");
    config.service.http_addr = "127.0.0.1:0".into();
    config.service.database_url = fresh_database("coordinator").await.expect("a test database");
    config.service.amqp_url = fresh_vhost().await.expect("a test vhost");
    config.retry_after = Duration::from_secs(60);
    config.retry_max = Duration::from_secs(60);
    adjust(&mut config);
    let broker = TestBroker::connect(&config.service.amqp_url).await.expect("connecting to the test vhost");
    let amqp_url = config.service.amqp_url.clone();
    let database_url = config.service.database_url.clone();
    let app = Application::build(config).await.expect("building the coordinator");
    let admin = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("a client");
    Harness { broker, amqp_url, database_url, admin, http }
}

/// A checkout of two lines by `order_id`.
pub fn request(order_id: &str) -> CheckoutRequest {
    CheckoutRequest {
        order_id: order_id.into(),
        user_id: "user-1".into(),
        items: vec![LineItem { item_id: "a".into(), quantity: 2 }, LineItem { item_id: "b".into(), quantity: 1 }],
        total: 30,
    }
}

impl Harness {
    /// Publishes `message` for `saga_id` to the coordinator's queue, as a participant would.
    pub async fn send(&self, saga_id: SagaId, message: CoordinatorMessage) {
        self.broker.publish(queues::COORDINATOR, Envelope::new(saga_id, message).to_bytes()).await.expect("publishing");
    }

    /// `GET path` on the admin API, as status and JSON body.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.http.get(format!("{}{path}", self.admin)).send().await.expect("the coordinator answers");
        (response.status().as_u16(), response.json().await.expect("a JSON body"))
    }

    /// `POST path` on the admin API, as status and JSON body.
    pub async fn post(&self, path: &str) -> (u16, Value) {
        let response = self.http.post(format!("{}{path}", self.admin)).send().await.expect("the coordinator answers");
        (response.status().as_u16(), response.json().await.expect("a JSON body"))
    }

    /// Asks `GET path` until `done` holds for its body, and returns that body.
    pub async fn get_until(&self, path: &str, done: impl Fn(&Value) -> bool) -> Value {
        let what = format!("GET {path} to get there");
        let answered = eventually_ok(&what, WAIT, async || {
            let (status, body) = self.get(path).await;
            match status == 200 && done(&body) {
                true => Ok(Some(body)),
                false => Err(anyhow::anyhow!("the last answer was {status} {body}")),
            }
        });
        answered.await.unwrap_or_else(|e| panic!("{e:#}"))
    }
}

impl Harness {
    /// Publishes `body` straight to the dead-letter queue with AMQP message ID `message_id` (none if `None`), and
    /// an `x-death` header naming `died_in` when given, the way RabbitMQ records where a message died.
    pub async fn plant_dead_letter(&self, body: Vec<u8>, died_in: Option<&str>, message_id: Option<&str>) {
        use amqprs::{
            channel::BasicPublishArguments,
            connection::{Connection, OpenConnectionArguments},
            BasicProperties, FieldTable, FieldValue,
        };
        let connection =
            Connection::open(&OpenConnectionArguments::try_from(self.amqp_url.as_str()).unwrap()).await.unwrap();
        let channel = connection.open_channel(None).await.unwrap();
        let mut properties = BasicProperties::default();
        properties.with_persistence(true);
        if let Some(id) = message_id {
            properties.with_message_id(id);
        }
        if let Some(queue) = died_in {
            let mut death = FieldTable::new();
            death.insert("queue".try_into().unwrap(), FieldValue::S(queue.try_into().unwrap()));
            death.insert("reason".try_into().unwrap(), FieldValue::S("rejected".try_into().unwrap()));
            death.insert("count".try_into().unwrap(), FieldValue::l(1));
            death.insert("time".try_into().unwrap(), FieldValue::T(1_764_640_000));
            let mut headers = FieldTable::new();
            let deaths = vec![FieldValue::F(death)].try_into().unwrap();
            headers.insert("x-death".try_into().unwrap(), FieldValue::A(deaths));
            properties.with_headers(headers);
        }
        let publish = BasicPublishArguments::new("", queues::DEAD_LETTERS);
        channel.basic_publish(properties, body, publish).await.unwrap();
        channel.close().await.unwrap();
        connection.close().await.unwrap();
    }
}
