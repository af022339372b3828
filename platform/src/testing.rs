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

/// A raw AMQP client for tests that play one side of the conversation: publish a message as if a service sent
/// it, and take what a service sent from its queue.
pub struct TestBroker {
    _connection: amqprs::connection::Connection,
    channel: amqprs::channel::Channel,
    /// Messages taken from a queue in a bundle and not yet handed out, per queue.
    unread: std::sync::Mutex<std::collections::HashMap<String, std::collections::VecDeque<Vec<u8>>>>,
}

impl TestBroker {
    /// Connects to the vhost at `url` and declares the work queues and the dead-letter queue the way the
    /// services do.
    pub async fn connect(url: &str) -> Result<Self> {
        use amqprs::connection::{Connection, OpenConnectionArguments};
        let args = OpenConnectionArguments::try_from(url).map_err(|e| anyhow::anyhow!("{e}"))?;
        let connection = Connection::open(&args).await?;
        let channel = connection.open_channel(None).await?;
        let broker = crate::amqp::Broker::new(url, "test", &shared_contracts::queues::WORK_QUEUES)?;
        broker.declare_topology(&channel).await?;
        Ok(Self { _connection: connection, channel, unread: Default::default() })
    }

    /// Publishes `body` to `queue` (not waiting for a confirm; the next `get` on the same channel sees it).
    pub async fn publish(&self, queue: &str, body: Vec<u8>) -> Result<()> {
        let mut properties = amqprs::BasicProperties::default();
        properties.with_persistence(true);
        self.channel.basic_publish(properties, body, amqprs::channel::BasicPublishArguments::new("", queue)).await?;
        Ok(())
    }

    /// Takes one message from `queue` if there is one (acked at once); the messages of a bundle one by one.
    pub async fn get(&self, queue: &str) -> Result<Option<Vec<u8>>> {
        if let Some(body) = self.unread.lock().expect("not poisoned").get_mut(queue).and_then(|u| u.pop_front()) {
            return Ok(Some(body));
        }
        let args = amqprs::channel::BasicGetArguments::new(queue).no_ack(true).finish();
        let Some((_, properties, body)) = self.channel.basic_get(args).await? else { return Ok(None) };
        let mut bodies = crate::amqp::bodies_of(Some(&properties), body).into_iter();
        let first = bodies.next();
        self.unread.lock().expect("not poisoned").entry(queue.to_owned()).or_default().extend(bodies);
        Ok(first)
    }

    /// Takes the next message from `queue`, waiting up to `timeout` for one to arrive.
    pub async fn next(&self, queue: &str, timeout: std::time::Duration) -> Result<Vec<u8>> {
        eventually_ok(&format!("a message on {queue}"), timeout, async || self.get(queue).await).await
    }

    /// Takes the next message from `queue` and decodes it as an envelope of `T`.
    pub async fn next_envelope<T>(
        &self,
        queue: &str,
        timeout: std::time::Duration,
    ) -> Result<shared_contracts::Envelope<T>>
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
    {
        let body = self.next(queue, timeout).await?;
        Ok(shared_contracts::Envelope::from_bytes(&body)?)
    }
}

/// The methods an OpenAPI path item may describe, lower-case as the document has them.
const OPENAPI_METHODS: [&str; 7] = ["get", "post", "put", "patch", "delete", "options", "trace"];

/// The environment variable that makes [`assert_openapi_matches`] write the served document to the committed
/// file instead of comparing them.
pub const OPENAPI_WRITE: &str = "OPENAPI_WRITE";

/// `schema`, or the schema its `$ref` names in `doc`'s components.
fn resolve<'a>(doc: &'a serde_json::Value, schema: &'a serde_json::Value) -> &'a serde_json::Value {
    match schema["$ref"].as_str().and_then(|name| name.strip_prefix("#/components/schemas/")) {
        Some(name) => &doc["components"]["schemas"][name],
        None => schema,
    }
}

/// A value `schema` accepts in a path: a UUID where it says `format: uuid`, its minimum (or 1) where it takes an
/// integer, `sample` otherwise.
fn sample_segment(schema: &serde_json::Value) -> String {
    if schema["format"] == "uuid" {
        "6f1c1d1e-8a40-4c43-9d8e-5f3f2b7d9a10".to_owned()
    } else if schema["type"] == "integer" {
        schema["minimum"].as_u64().unwrap_or(1).max(1).to_string()
    } else {
        "sample".to_owned()
    }
}

/// Every operation of an OpenAPI document as `(METHOD, path)`, each `{parameter}` of the path replaced by a
/// sample value (see [`sample_segment`]). Tests call them all to check that the document names no route the
/// service lacks.
pub fn openapi_operations(doc: &serde_json::Value) -> Vec<(String, String)> {
    operations_by_template(doc).into_iter().map(|(method, _, concrete)| (method, concrete)).collect()
}

/// Every operation of an OpenAPI document as `(METHOD, path template, path with samples)`.
fn operations_by_template(doc: &serde_json::Value) -> Vec<(String, String, String)> {
    let mut operations = Vec::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for method in OPENAPI_METHODS {
            let Some(operation) = item.get(method) else { continue };
            let mut concrete = path.clone();
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                if parameter["in"] != "path" {
                    continue;
                }
                let sample = sample_segment(resolve(doc, &parameter["schema"]));
                let name = parameter["name"].as_str().unwrap_or_default();
                concrete = concrete.replace(&format!("{{{name}}}"), &sample);
            }
            operations.push((method.to_uppercase(), path.clone(), concrete));
        }
    }
    operations
}

/// The `(METHOD, path template)` of every operation an OpenAPI document describes.
pub fn openapi_routes(doc: &serde_json::Value) -> Vec<(String, String)> {
    let mut routes = Vec::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for method in OPENAPI_METHODS {
            if item.get(method).is_some() {
                routes.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    routes
}

/// Checks a running service's OpenAPI document against its routes, both ways, and panics with what is wrong: the
/// service at `base_url` serves exactly the committed file `committed` at `/openapi.json` (with
/// [`OPENAPI_WRITE`]`=1` in the environment, the file is rewritten from the served document instead); every
/// operation the document describes is a route the service has (no "no route for" 404, no 405); every route in
/// `known_routes` is described.
pub async fn assert_openapi_matches(base_url: &str, committed: &std::path::Path, known_routes: &[(&str, &str)]) {
    let client = reqwest::Client::new();
    let served = client.get(format!("{base_url}/openapi.json")).send().await.expect("GET /openapi.json");
    assert_eq!(served.status(), 200);
    let text = served.text().await.expect("the document");
    let doc: serde_json::Value = serde_json::from_str(&text).expect("the document is JSON");
    if std::env::var(OPENAPI_WRITE).is_ok_and(|value| value == "1") {
        std::fs::write(committed, &text).expect("writing the committed document");
    }
    let on_disk = std::fs::read_to_string(committed).unwrap_or_default();
    let on_disk: serde_json::Value = serde_json::from_str(&on_disk).unwrap_or_default();
    assert!(
        doc == on_disk,
        "{} is not the served document; regenerate it with {OPENAPI_WRITE}=1 and this test \
         (e.g. `{OPENAPI_WRITE}=1 cargo test -p <service> --test <its API tests> openapi`)",
        committed.display()
    );
    assert_eq!(doc["openapi"], "3.1.0");

    let operations = openapi_operations(&doc);
    assert!(operations.len() >= known_routes.len(), "{operations:?}");
    for (method, path) in operations {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("an HTTP method");
        let response = client.request(method.clone(), format!("{base_url}{path}")).send().await.expect("a response");
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        let unknown = status == 404 && body["error"].as_str().is_some_and(|e| e.starts_with("no route for"));
        assert!(!unknown && status != 405, "{method} {path} is documented but not served: {status} {body}");
    }

    let documented = openapi_routes(&doc);
    for (method, path) in known_routes {
        assert!(
            documented.iter().any(|(m, p)| m == method && p == path),
            "{method} {path} is served but not documented"
        );
    }
}

/// Checks that the service at `base_url` answers every method its OpenAPI document does not describe for a path
/// with a 405, a JSON error body, and an `Allow` header that names the described methods, on every path of the
/// document.
pub async fn assert_unsupported_methods_refused(base_url: &str) {
    let client = reqwest::Client::new();
    let doc: serde_json::Value = client
        .get(format!("{base_url}/openapi.json"))
        .send()
        .await
        .expect("GET /openapi.json")
        .json()
        .await
        .expect("the document is JSON");
    let mut by_path: std::collections::BTreeMap<String, (String, Vec<String>)> = Default::default();
    for (method, template, concrete) in operations_by_template(&doc) {
        by_path.entry(template).or_insert_with(|| (concrete, Vec::new())).1.push(method);
    }
    for (template, (concrete, documented)) in by_path {
        for method in OPENAPI_METHODS.map(str::to_uppercase) {
            if documented.contains(&method) {
                continue;
            }
            let request = reqwest::Method::from_bytes(method.as_bytes()).expect("an HTTP method");
            let response = client.request(request, format!("{base_url}{concrete}")).send().await.expect("a response");
            let status = response.status().as_u16();
            let allow = response.headers().get("allow").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            assert!(
                status == 405 && body["error"].is_string(),
                "{method} {template} answered {status} {body}, not a JSON 405"
            );
            for allowed in &documented {
                assert!(
                    allow.split(", ").any(|a| a == allowed),
                    "{method} {template}: Allow {allow:?} lacks {allowed}"
                );
            }
        }
    }
}

/// How long a [`FakeCoordinator`] waits for a message before the test fails.
const MESSAGE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(15);

/// Stands in for the coordinator towards one participant (stock-svc or payment-svc): sends commands to the
/// participant's queue and reads the replies and dead letters as they arrive.
pub struct FakeCoordinator {
    commands: crate::amqp::Publisher,
    queue: &'static str,
    replies: Subscription,
    dead_letters: Subscription,
    _channel: amqprs::channel::Channel,
    _connection: amqprs::connection::Connection,
}

impl FakeCoordinator {
    /// Connects to the vhost at `amqp_url`, declares the queues, and subscribes to the coordinator's queue and the
    /// dead letters; commands go to `commands_queue`.
    pub async fn connect(amqp_url: &str, commands_queue: &'static str) -> Self {
        use amqprs::connection::{Connection, OpenConnectionArguments};
        use shared_contracts::queues;
        let broker = crate::amqp::Broker::new(amqp_url, "fake-coordinator", &queues::WORK_QUEUES).expect("a broker");
        let args = OpenConnectionArguments::try_from(amqp_url).expect("a valid AMQP URL");
        let connection = Connection::open(&args).await.expect("connecting to RabbitMQ");
        let channel = connection.open_channel(None).await.expect("a channel");
        broker.declare_topology(&channel).await.expect("declaring queues");
        let replies = Subscription::new(&channel, queues::COORDINATOR).await;
        let dead_letters = Subscription::new(&channel, queues::DEAD_LETTERS).await;
        Self {
            commands: crate::amqp::Publisher::new(broker),
            queue: commands_queue,
            replies,
            dead_letters,
            _channel: channel,
            _connection: connection,
        }
    }

    /// Publishes `commands`, all in one go, each for its saga.
    pub async fn send<T>(&self, commands: &[(shared_contracts::SagaId, T)])
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Clone,
    {
        let messages: Vec<crate::amqp::Outgoing> = commands
            .iter()
            .map(|(saga_id, command)| {
                crate::amqp::Outgoing::envelope(self.queue, &shared_contracts::Envelope::new(*saga_id, command.clone()))
            })
            .collect();
        self.commands.publish(&messages).await.expect("publishing commands");
    }

    /// Publishes raw bytes to the participant's queue.
    pub async fn send_raw(&self, body: &[u8]) {
        let message = crate::amqp::Outgoing {
            queue: self.queue.to_owned(),
            body: body.to_vec(),
            message_id: "raw".into(),
            traceparent: None,
        };
        self.commands.publish(&[message]).await.expect("publishing raw bytes");
    }

    /// The next reply the participant sent.
    pub async fn next_reply(&mut self) -> shared_contracts::Envelope<shared_contracts::CoordinatorMessage> {
        let body = self.replies.next().await;
        shared_contracts::Envelope::from_bytes(&body).expect("a readable reply")
    }

    /// The next message that reached the dead-letter queue.
    pub async fn next_dead_letter(&mut self) -> Vec<u8> {
        self.dead_letters.next().await
    }
}

/// The messages of one queue as they arrive, the messages of a bundle one by one.
struct Subscription {
    messages: tokio::sync::mpsc::UnboundedReceiver<amqprs::channel::ConsumerMessage>,
    unread: std::collections::VecDeque<Vec<u8>>,
}

impl Subscription {
    async fn new(channel: &amqprs::channel::Channel, queue: &str) -> Self {
        let args = amqprs::channel::BasicConsumeArguments::new(queue, &format!("test-{queue}")).auto_ack(true).finish();
        let (_, messages) = channel.basic_consume_rx(args).await.expect("consuming");
        Self { messages, unread: Default::default() }
    }

    async fn next(&mut self) -> Vec<u8> {
        while self.unread.is_empty() {
            let message = tokio::time::timeout(MESSAGE_DEADLINE, self.messages.recv())
                .await
                .expect("a message within the deadline")
                .expect("the consumer is open");
            let body = message.content.unwrap_or_default();
            self.unread.extend(crate::amqp::bodies_of(message.basic_properties.as_ref(), body));
        }
        self.unread.pop_front().expect("not empty")
    }
}

/// How often [`eventually`] asks again.
const POLL_EVERY: std::time::Duration = std::time::Duration::from_millis(20);

/// Asks `check` until it returns `Some`, and returns that; panics naming `what` when `within` passes first. The one
/// polling helper of the test suites: a test waits for the event it expects, never for a fixed time.
pub async fn eventually<T>(what: &str, within: std::time::Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "gave up after {within:?} waiting for {what}");
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Like [`eventually`], for a condition that may fail in a way worth reporting: the last error is returned when
/// `within` passes before `check` answers `Ok(Some(..))`.
pub async fn eventually_ok<T>(
    what: &str,
    within: std::time::Duration,
    mut check: impl AsyncFnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let last = match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => anyhow::anyhow!("not yet"),
            Err(e) => e,
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(last.context(format!("gave up after {within:?} waiting for {what}")));
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}
