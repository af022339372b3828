//! Spawning order-svc with the stock-svc and payment-svc it depends on, calling them, and standing in for the
//! coordinator.

use std::{future::Future, time::Duration};

use amqprs::{
    channel::{BasicGetArguments, Channel},
    connection::{Connection, OpenConnectionArguments},
};
use diesel::{
    sql_types::{BigInt, Text},
    QueryableByName,
};
use diesel_async::RunQueryDsl;
use order_svc::{config::Config, startup::Application};
use platform::{
    amqp::ConsumerSettings,
    amqp::{Broker, Outgoing, Publisher},
    config::ServiceSettings,
    db::Pool,
    startup::ShutdownHandle,
    testing::{eventually, fresh_database, fresh_vhost},
};
use reqwest::StatusCode;
use serde_json::Value;
use shared_contracts::{queues, CheckoutOutcome, CheckoutRequest, CoordinatorMessage, Envelope, SagaId};

/// How long a test waits for something that should happen promptly.
pub const PATIENCE: Duration = Duration::from_secs(15);

/// A running order-svc, stock-svc and payment-svc, and what a test needs to look inside them.
pub struct TestApp {
    /// Base URL of order-svc.
    pub orders: String,
    /// Base URL of stock-svc.
    pub stock: String,
    /// Base URL of payment-svc.
    pub payment: String,
    /// order-svc's database.
    pub db: Pool,
    /// stock-svc's database.
    pub stock_db: Pool,
    /// The vhost the services use.
    pub amqp_url: String,
    http: reqwest::Client,
    /// Shuts order-svc down, as SIGTERM does.
    shutdown: ShutdownHandle,
    /// order-svc, running until it is shut down.
    running: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Starts the services with the default settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_configured(|_| {}).await
}

/// Starts the services; checkout requests of order-svc wait at most `checkout_timeout` for an outcome.
pub async fn spawn_app_with_checkout_timeout(checkout_timeout: Duration) -> TestApp {
    spawn_app_configured(|config| config.checkout_timeout_ms = checkout_timeout.as_millis() as u64).await
}

/// Starts the services, order-svc with its test settings changed by `configure`.
pub async fn spawn_app_configured(configure: impl FnOnce(&mut Config)) -> TestApp {
    // Logs only on demand: they go straight to stderr, past the test harness's capture.
    if std::env::var_os("TEST_LOG").is_some() {
        platform::telemetry::init();
    }
    let amqp_url = fresh_vhost().await.expect("a fresh vhost");
    let stock_database_url = fresh_database("stock").await.expect("a stock database");
    let mut stock_config = stock_svc::config::Config::from_env().expect("stock-svc's settings");
    stock_config.service.http_addr = "127.0.0.1:0".into();
    stock_config.service.database_url = stock_database_url.clone();
    stock_config.service.amqp_url = amqp_url.clone();
    stock_config.service.db_pool_size = 4;
    stock_config.service.http_workers = 1;
    let stock = stock_svc::startup::Application::build(stock_config).await.expect("stock-svc starts");
    let stock_url = format!("http://127.0.0.1:{}", stock.port());
    tokio::spawn(stock.run_until_stopped());

    let mut payment_config = payment_svc::config::Config::from_env().expect("payment-svc's settings");
    payment_config.service.http_addr = "127.0.0.1:0".into();
    payment_config.service.database_url = fresh_database("payment").await.expect("a payment database");
    payment_config.service.amqp_url = amqp_url.clone();
    payment_config.service.db_pool_size = 2;
    payment_config.service.http_workers = 1;
    let payment = payment_svc::startup::Application::build(payment_config).await.expect("payment-svc starts");
    let payment_url = format!("http://127.0.0.1:{}", payment.port());
    tokio::spawn(payment.run_until_stopped());

    let database_url = fresh_database("order").await.expect("an order database");
    let mut config = Config {
        service: ServiceSettings {
            http_addr: "127.0.0.1:0".into(),
            database_url: database_url.clone(),
            amqp_url: amqp_url.clone(),
            db_pool_size: 8,
            http_workers: 2,
            consumer: ConsumerSettings::default(),
            shutdown_timeout: platform::config::DEFAULT_SHUTDOWN_TIMEOUT,
        },
        stock_url: stock_url.clone(),
        payment_url: payment_url.clone(),
        checkout_timeout_ms: 30_000,
        // Longer than any test waits for an outcome, so that no test sees a start sent twice unless it asks to.
        resend_after: Duration::from_secs(60),
        resend_max: Duration::from_secs(60),
    };
    configure(&mut config);
    let app = Application::build(config).await.expect("order-svc starts");
    let orders = format!("http://127.0.0.1:{}", app.port());
    let shutdown = app.shutdown_handle();
    let running = tokio::spawn(app.run_until_stopped());

    TestApp {
        orders,
        stock: stock_url,
        payment: payment_url,
        db: platform::db::pool(&database_url, 2).expect("a pool"),
        stock_db: platform::db::pool(&stock_database_url, 1).expect("a pool"),
        amqp_url,
        http: reqwest::Client::new(),
        shutdown,
        running,
    }
}

/// A status and a JSON body.
pub type Answer = (StatusCode, Value);

impl TestApp {
    /// `method` on `path` of order-svc.
    pub async fn call(&self, method: reqwest::Method, path: &str) -> Answer {
        answer(self.http.request(method, format!("{}{path}", self.orders))).await
    }

    /// POST on `path` of order-svc.
    pub async fn post(&self, path: &str) -> Answer {
        self.call(reqwest::Method::POST, path).await
    }

    /// GET on `path` of order-svc.
    pub async fn get(&self, path: &str) -> Answer {
        self.call(reqwest::Method::GET, path).await
    }

    /// DELETE on `path` of order-svc.
    pub async fn delete(&self, path: &str) -> Answer {
        self.call(reqwest::Method::DELETE, path).await
    }

    /// A future checking out `order_id`, to be spawned for concurrent checkouts.
    pub fn checkout(&self, order_id: &str) -> impl Future<Output = Answer> + Send + 'static {
        answer(self.http.post(format!("{}/orders/checkout/{order_id}", self.orders)))
    }

    /// A future cancelling `order_id`, to be spawned for concurrent cancellations.
    pub fn cancel(&self, order_id: &str) -> impl Future<Output = Answer> + Send + 'static {
        answer(self.http.post(format!("{}/orders/cancel/{order_id}", self.orders)))
    }

    /// A new payment-svc user (with no credit: the tests play the coordinator, so nothing is charged).
    pub async fn create_user(&self) -> String {
        let created = answer(self.http.post(format!("{}/payment/create_user", self.payment))).await;
        assert_eq!(created.0, StatusCode::OK, "{}", created.1);
        created.1["user_id"].as_str().expect("a user ID").to_owned()
    }

    /// A new order of `user_id`.
    pub async fn create_order(&self, user_id: &str) -> String {
        let (status, body) = self.post(&format!("/orders/create/{user_id}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["order_id"].as_str().expect("an order ID").to_owned()
    }

    /// The order as `find` shows it.
    pub async fn find(&self, order_id: &str) -> Value {
        let (status, body) = self.get(&format!("/orders/find/{order_id}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// A new stock-svc item at `price`, with `stock` units.
    pub async fn create_item(&self, price: u64, stock: u64) -> String {
        let created = answer(self.http.post(format!("{}/stock/item/create/{price}", self.stock))).await;
        assert_eq!(created.0, StatusCode::OK, "{}", created.1);
        let item_id = created.1["item_id"].as_str().expect("an item ID").to_owned();
        if stock > 0 {
            let added = answer(self.http.post(format!("{}/stock/add/{item_id}/{stock}", self.stock))).await;
            assert_eq!(added.0, StatusCode::OK, "{}", added.1);
        }
        item_id
    }

    /// An order of `user_id` holding `quantity` units of each of `items`.
    pub async fn order_with(&self, user_id: &str, items: &[(&str, u64)]) -> String {
        let order_id = self.create_order(user_id).await;
        for (item_id, quantity) in items {
            let (status, body) = self.post(&format!("/orders/addItem/{order_id}/{item_id}/{quantity}")).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        order_id
    }

    /// An order of a new user holding `quantity` units of each of `items`, checked out and paid: `coordinator`
    /// answers its `StartCheckout` with `Paid`. Returns the order and the saga of its checkout.
    pub async fn paid_order(&self, coordinator: &FakeCoordinator, items: &[(&str, u64)]) -> (String, SagaId) {
        let order_id = self.order_with(&self.create_user().await, items).await;
        let checkout = tokio::spawn(self.checkout(&order_id));
        let (saga_id, _) = coordinator.next_checkout().await;
        coordinator.send_outcome(saga_id, CheckoutOutcome::Paid { order_id: order_id.clone() }).await;
        let paid = checkout.await.expect("the request task finishes");
        assert_eq!(paid.0, StatusCode::OK, "{}", paid.1);
        (order_id, saga_id)
    }

    /// Like [`Self::paid_order`], but the paid checkout is written straight into the database, as if it had been
    /// paid long before: no `StartCheckout` of it is ever sent, so a test that resends often sees none.
    pub async fn order_paid_before(&self, items: &[(&str, u64)]) -> (String, SagaId) {
        let order_id = self.order_with(&self.create_user().await, items).await;
        let saga_id = SagaId::new();
        self.execute(&format!(
            "WITH paid AS (INSERT INTO checkouts (saga_id, order_id, state, finished_at)
                           VALUES ('{saga_id}', '{order_id}', 'paid', now()) RETURNING order_id)
             UPDATE orders SET paid = true FROM paid WHERE orders.id = paid.order_id"
        ))
        .await;
        (order_id, saga_id)
    }

    /// The one number `sql` selects (as `n`) from order-svc's database.
    pub async fn count(&self, sql: &str) -> i64 {
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let mut conn = self.db.get().await.expect("a connection");
        let row: Count = diesel::sql_query(sql).get_result(&mut conn).await.expect("the query runs");
        row.n
    }

    /// Runs `sql` on order-svc's database, to set up what a crash would have left behind.
    pub async fn execute(&self, sql: &str) {
        let mut conn = self.db.get().await.expect("a connection");
        diesel::sql_query(sql).execute(&mut conn).await.expect("the statement runs");
    }

    /// Changes the price of `item_id` in stock-svc's database (its API has no way to).
    pub async fn set_price(&self, item_id: &str, price: i64) {
        let mut conn = self.stock_db.get().await.expect("a connection");
        let updated = diesel::sql_query("UPDATE items SET price = $2 WHERE item_id = $1")
            .bind::<Text, _>(item_id)
            .bind::<BigInt, _>(price)
            .execute(&mut conn)
            .await
            .expect("the update runs");
        assert_eq!(updated, 1);
    }

    /// The state column of every checkout of `order_id`, oldest first.
    pub async fn checkout_states(&self, order_id: &str) -> Vec<String> {
        #[derive(QueryableByName)]
        struct State {
            #[diesel(sql_type = Text)]
            state: String,
        }
        let mut conn = self.db.get().await.expect("a connection");
        let rows: Vec<State> = diesel::sql_query("SELECT state FROM checkouts WHERE order_id = $1 ORDER BY created_at")
            .bind::<Text, _>(order_id)
            .load(&mut conn)
            .await
            .expect("the query runs");
        rows.into_iter().map(|row| row.state).collect()
    }

    /// Every message order-svc sent `coordinator` before a marker: the checkout of a new order, asked for now.
    /// Checkout requests begin one batch after the other, and a batch hands its messages to the publisher before
    /// the next begins, as a request hands over its cancellation before it waits for the outcome; so a message
    /// that a request before this call should not have sent is on the queue ahead of the marker's `StartCheckout`,
    /// and waiting for the marker shows it without waiting a fixed time. The marker's saga is answered `Paid`, so
    /// its request ends; the new order, user and item are the marker's own.
    pub async fn messages_before_marker(&self, coordinator: &FakeCoordinator) -> Vec<Envelope<CoordinatorMessage>> {
        let item = self.create_item(1, 1).await;
        let marker = self.order_with(&self.create_user().await, &[(&item, 1)]).await;
        let checkout = tokio::spawn(self.checkout(&marker));
        let is_marker = |envelope: &Envelope<CoordinatorMessage>| matches!(&envelope.body, CoordinatorMessage::StartCheckout(request) if request.order_id == marker);
        let (before, start) = coordinator.messages_before(is_marker, 1).await;
        coordinator.send_outcome(start.saga_id, CheckoutOutcome::Paid { order_id: marker.clone() }).await;
        let paid = checkout.await.expect("the request task finishes");
        assert_eq!(paid.0, StatusCode::OK, "the marker's checkout: {}", paid.1);
        before
    }

    /// A pending checkout of a new order, due to be sent again now, as a marker for what the resending sends
    /// (see [`FakeCoordinator::messages_before`]). Returns its saga.
    pub async fn pending_marker(&self) -> SagaId {
        let item = self.create_item(1, 1).await;
        let order_id = self.order_with(&self.create_user().await, &[(&item, 1)]).await;
        let saga_id = SagaId::new();
        self.execute(&format!(
            "INSERT INTO checkouts (saga_id, order_id, state, resend_at) VALUES ('{saga_id}', '{order_id}', 'pending', now())"
        ))
        .await;
        saga_id
    }

    /// Begins order-svc's graceful shutdown, as SIGTERM does.
    pub fn shut_down(&self) {
        self.shutdown.shut_down();
    }

    /// Whether order-svc refuses a new connection.
    pub async fn refuses_connections(&self) -> bool {
        reqwest::Client::new().get(format!("{}/health", self.orders)).send().await.is_err()
    }

    /// Waits for the end of order-svc's shutdown, which must be over within `within`.
    pub async fn stopped(self, within: Duration) {
        let ended = tokio::time::timeout(within, self.running).await.expect("order-svc stops in time");
        ended.expect("order-svc's task ends").expect("order-svc served without an error");
    }

    /// Stands in for the coordinator on the test's vhost.
    pub async fn coordinator(&self) -> FakeCoordinator {
        FakeCoordinator::connect(&self.amqp_url).await
    }
}

async fn answer(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.expect("the service answers");
    let status = response.status();
    let body = response.json().await.expect("the answer is JSON");
    (status, body)
}

/// The coordinator's side of the queues: reads what order-svc sends it and answers with outcomes.
pub struct FakeCoordinator {
    _connection: Connection,
    channel: Channel,
    broker: Broker,
    publisher: Publisher,
    /// Messages taken from the coordinator's queue in a bundle and not yet handed out.
    unread: std::sync::Mutex<std::collections::VecDeque<Vec<u8>>>,
}

impl FakeCoordinator {
    async fn connect(amqp_url: &str) -> Self {
        const QUEUES: [&str; 2] = [queues::COORDINATOR, queues::ORDER_OUTCOMES];
        let broker = Broker::new(amqp_url, "test-coordinator", &QUEUES).expect("a valid AMQP URL");
        let args = OpenConnectionArguments::try_from(amqp_url).expect("a valid AMQP URL");
        let connection = Connection::open(&args).await.expect("RabbitMQ answers");
        let channel = connection.open_channel(None).await.expect("a channel");
        broker.declare_topology(&channel).await.expect("the queues are declared");
        let publisher = Publisher::new(broker.clone());
        Self { _connection: connection, channel, broker, publisher, unread: Default::default() }
    }

    /// The next message on the coordinator's queue, if there is one now.
    pub async fn try_next(&self) -> Option<Envelope<CoordinatorMessage>> {
        let decode = |body: Vec<u8>| Envelope::from_bytes(&body).expect("order-svc sends decodable messages");
        if let Some(body) = self.unread.lock().expect("not poisoned").pop_front() {
            return Some(decode(body));
        }
        let got = self
            .channel
            .basic_get(BasicGetArguments::new(queues::COORDINATOR).no_ack(true).finish())
            .await
            .expect("basic.get works");
        let (_, properties, body) = got?;
        let mut bodies = platform::amqp::bodies_of(Some(&properties), body).into_iter();
        let first = bodies.next();
        self.unread.lock().expect("not poisoned").extend(bodies);
        first.map(decode)
    }

    /// Waits for the next `StartCheckout` and returns its saga and request.
    pub async fn next_checkout(&self) -> (SagaId, CheckoutRequest) {
        let envelope = eventually("a StartCheckout message", PATIENCE, async || self.try_next().await).await;
        match envelope.body {
            CoordinatorMessage::StartCheckout(request) => (envelope.saga_id, request),
            other => panic!("expected StartCheckout, got {other:?}"),
        }
    }

    /// Waits for the next `CancelCheckout` and returns its saga and order.
    pub async fn next_cancel(&self) -> (SagaId, String) {
        let envelope = eventually("a CancelCheckout message", PATIENCE, async || self.try_next().await).await;
        match envelope.body {
            CoordinatorMessage::CancelCheckout { order_id } => (envelope.saga_id, order_id),
            other => panic!("expected CancelCheckout, got {other:?}"),
        }
    }

    /// Every message on the coordinator's queue ahead of the `count`th one that `is_marker` picks, with those that
    /// came in the same delivery as that one (the messages of one publish travel as one bundle), and that marker.
    /// The markers before it are not returned.
    pub async fn messages_before(
        &self,
        is_marker: impl Fn(&Envelope<CoordinatorMessage>) -> bool,
        count: usize,
    ) -> (Vec<Envelope<CoordinatorMessage>>, Envelope<CoordinatorMessage>) {
        let mut before = Vec::new();
        let mut seen = 0;
        loop {
            let envelope = eventually("the marker message", PATIENCE, async || self.try_next().await).await;
            if !is_marker(&envelope) {
                before.push(envelope);
                continue;
            }
            seen += 1;
            if seen == count {
                let bundled: Vec<Vec<u8>> = self.unread.lock().expect("not poisoned").drain(..).collect();
                before.extend(bundled.iter().map(|body| Envelope::from_bytes(body).expect("a decodable message")));
                return (before, envelope);
            }
        }
    }

    /// Sends `outcome` of `saga_id` to order-svc.
    pub async fn send_outcome(&self, saga_id: SagaId, outcome: CheckoutOutcome) {
        let envelope = Envelope::new(saga_id, outcome);
        self.send_raw(envelope.to_bytes()).await;
    }

    /// Puts `body` on the outcome queue as it is.
    pub async fn send_raw(&self, body: Vec<u8>) {
        let message = Outgoing {
            queue: queues::ORDER_OUTCOMES.to_owned(),
            body,
            message_id: uuid::Uuid::new_v4().to_string(),
            traceparent: None,
        };
        self.publisher.publish(&[message]).await.expect("RabbitMQ confirms");
    }

    /// How many messages sit on the dead-letter queue.
    pub async fn dead_letters(&self) -> u32 {
        self.broker.queue_depth(queues::DEAD_LETTERS).await.expect("the queue exists")
    }
}
