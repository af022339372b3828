//! The shared start-up path with a service of the test's own, a probe: it serves the shared routes and its own,
//! and its graceful shutdown answers the requests in flight, finishes the batch in flight, leaves the messages it
//! has not handled in their queue, keeps a consumer that requests wait for running until they are answered, stops
//! the background tasks, and ends within the shutdown timeout even when a request never ends.
#![cfg(feature = "testing")]

use std::{
    fmt,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use actix_web::web;
use amqprs::channel::QueueDeclareArguments;
use anyhow::Result;
use async_trait::async_trait;
use diesel_migrations::{embed_migrations, EmbeddedMigrations};
use platform::{
    amqp::{BatchHandler, Broker, ConsumerSettings, Delivery, Outgoing, Publisher, Verdict},
    config::ServiceSettings,
    startup::{Application, Parts, Routes, Service, StopConsuming},
    testing::{eventually, fresh_database, fresh_vhost},
};
use tokio::sync::{oneshot, Notify};

/// The queue of the probe's consumer that stops as the shutdown begins.
const WORK: &str = "probe_work";
/// The queue of the probe's consumer that stops once the requests are answered.
const OUTCOMES: &str = "probe_outcomes";
/// Where the probe replies to each message of `WORK` it handles.
const REPLIES: &str = "probe_replies";
/// The body of a `WORK` message whose batch waits for `Control::release_batch`.
const BLOCKING: &str = "block";
/// Long enough for anything a test waits for here, short enough to fail fast.
const WITHIN: Duration = Duration::from_secs(10);

/// A service with two consumers, one background task and routes that wait for the test.
struct Probe;

struct ProbeConfig {
    service: ServiceSettings,
    control: Arc<Control>,
    /// Held by the probe's background task for as long as it runs.
    task_running: oneshot::Sender<()>,
}

impl fmt::Display for ProbeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.service)
    }
}

/// What the test and the probe's handlers tell each other.
#[derive(Default)]
struct Control {
    /// A request to `/slow`, `/hang` or `/outcome` has arrived.
    request_arrived: Notify,
    /// `/slow` may answer.
    release_request: Notify,
    /// A batch holding the blocking message is being handled.
    batch_started: Notify,
    /// That batch may finish.
    release_batch: Notify,
    /// The outcome consumer handled a message; `/outcome` answers.
    outcome_seen: Notify,
    /// The bodies of the `WORK` messages handled, in order.
    handled: Mutex<Vec<String>>,
}

impl Service for Probe {
    const NAME: &'static str = "probe";
    const MIGRATIONS: EmbeddedMigrations = embed_migrations!("tests/probe_migrations");
    const QUEUES: &'static [&'static str] = &[WORK, OUTCOMES, REPLIES];
    type Config = ProbeConfig;

    fn settings(config: &ProbeConfig) -> &ServiceSettings {
        &config.service
    }

    fn wire(config: ProbeConfig, parts: &mut Parts) -> anyhow::Result<impl Routes> {
        let control = config.control;
        let settings = config.service.consumer;
        let publisher = Arc::new(Publisher::new(parts.broker.clone()));
        let work = Arc::new(Work { control: control.clone(), publisher });
        parts.consume(WORK, settings, work, StopConsuming::AtOnce);
        let outcomes = Arc::new(Outcomes(control.clone()));
        parts.consume(OUTCOMES, settings, outcomes, StopConsuming::AfterRequests);
        let task_running = config.task_running;
        parts.spawn(async move {
            let _held_while_running = task_running;
            std::future::pending::<()>().await
        });
        let control = web::Data::from(control);
        Ok(move |cfg: &mut web::ServiceConfig| {
            cfg.app_data(control.clone())
                .route("/probe", web::get().to(async || "probe"))
                .route("/slow", web::get().to(slow))
                .route("/hang", web::get().to(hang))
                .route("/outcome", web::get().to(outcome));
        })
    }
}

/// Answers once the test releases it.
async fn slow(control: web::Data<Control>) -> &'static str {
    control.request_arrived.notify_one();
    control.release_request.notified().await;
    "slow"
}

/// Never answers.
async fn hang(control: web::Data<Control>) -> &'static str {
    control.request_arrived.notify_one();
    std::future::pending().await
}

/// Answers once the outcome consumer has handled a message, as order-svc's checkout waits for its saga's outcome.
async fn outcome(control: web::Data<Control>) -> &'static str {
    control.request_arrived.notify_one();
    control.outcome_seen.notified().await;
    "outcome"
}

/// Handles `WORK`: records each message and replies to it on `REPLIES`, after the test's release for a batch that
/// holds the blocking message.
struct Work {
    control: Arc<Control>,
    publisher: Arc<Publisher>,
}

#[async_trait]
impl BatchHandler for Work {
    async fn handle(&self, batch: &[Delivery]) -> Result<Vec<Verdict>> {
        let bodies: Vec<String> = batch.iter().map(|d| String::from_utf8_lossy(&d.body).into_owned()).collect();
        if bodies.iter().any(|body| body == BLOCKING) {
            self.control.batch_started.notify_one();
            self.control.release_batch.notified().await;
        }
        self.control.handled.lock().expect("not poisoned").extend(bodies.iter().cloned());
        let replies: Vec<Outgoing> = bodies.iter().map(|body| outgoing(REPLIES, &format!("reply to {body}"))).collect();
        self.publisher.publish(&replies).await?;
        Ok(vec![Verdict::Done; batch.len()])
    }
}

/// Handles `OUTCOMES`: tells the waiting `/outcome` request.
struct Outcomes(Arc<Control>);

#[async_trait]
impl BatchHandler for Outcomes {
    async fn handle(&self, batch: &[Delivery]) -> Result<Vec<Verdict>> {
        self.0.outcome_seen.notify_one();
        Ok(vec![Verdict::Done; batch.len()])
    }
}

fn outgoing(queue: &str, body: &str) -> Outgoing {
    Outgoing { queue: queue.into(), body: body.into(), message_id: body.into(), traceparent: None }
}

/// A running probe, and what its test needs to drive it.
struct Running {
    base: String,
    control: Arc<Control>,
    task_running: oneshot::Receiver<()>,
    shutdown: platform::startup::ShutdownHandle,
    running: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Starts a probe on a fresh database and `amqp_url`, shutting down within `shutdown_timeout`, its consumers
/// taking one message per batch.
async fn start(amqp_url: String, shutdown_timeout: Duration) -> Running {
    let service = ServiceSettings {
        http_addr: "127.0.0.1:0".into(),
        http_workers: 1,
        database_url: fresh_database("startup").await.expect("a test database"),
        db_pool_size: 1,
        amqp_url,
        consumer: ConsumerSettings { prefetch: 16, max_batch: 1, parallel: 1 },
        shutdown_timeout,
    };
    let control = Arc::new(Control::default());
    let (task_running, is_running) = oneshot::channel();
    let config = ProbeConfig { service, control: control.clone(), task_running };
    let app = Application::<Probe>::build(config).await.expect("the probe starts");
    let base = format!("http://127.0.0.1:{}", app.port());
    let shutdown = app.shutdown_handle();
    let running = tokio::spawn(app.run_until_stopped());
    Running { base, control, task_running: is_running, shutdown, running }
}

impl Running {
    /// Sends `GET path` on a connection of its own.
    fn get(&self, path: &str) -> impl std::future::Future<Output = reqwest::Result<reqwest::Response>> + 'static {
        let url = format!("{}{path}", self.base);
        async move { reqwest::Client::new().get(url).send().await }
    }

    /// The status of `GET path`, which must be answered.
    async fn status(&self, path: &str) -> u16 {
        self.get(path).await.expect("an answer").status().as_u16()
    }

    /// Waits until the probe's listener refuses new connections.
    async fn wait_until_refusing(&self) {
        eventually("the listener to close", WITHIN, async || self.get("/probe").await.is_err().then_some(())).await;
    }

    /// Waits for the end of the shutdown and returns how long it took from `began`.
    async fn stopped(self, began: Instant) -> (Duration, oneshot::Receiver<()>) {
        let ended = tokio::time::timeout(WITHIN, self.running).await.expect("the shutdown ends");
        ended.expect("the application ends").expect("it served without an error");
        (began.elapsed(), self.task_running)
    }
}

/// The broker of `amqp_url`, seen by a test: publishing one message at a time, counting and draining queues.
struct Queues {
    amqp_url: String,
    broker: Broker,
    publisher: Publisher,
}

impl Queues {
    fn new(amqp_url: &str) -> Self {
        let broker = Broker::new(amqp_url, "probe-test", Probe::QUEUES).expect("a broker");
        Self { amqp_url: amqp_url.to_owned(), publisher: Publisher::new(broker.clone()), broker }
    }

    /// Publishes each of `bodies` to `queue` as a message of its own (not one bundle), in order.
    async fn publish(&self, queue: &str, bodies: &[&str]) {
        for body in bodies {
            self.publisher.publish(&[outgoing(queue, body)]).await.expect("published");
        }
    }

    /// The messages waiting in `queue` and the consumers it has.
    async fn count(&self, queue: &str) -> (u32, u32) {
        let (connection, channel) = self.broker.connect().await.expect("connected");
        let declare = QueueDeclareArguments::new(queue).passive(true).finish();
        let (_, messages, consumers) = channel.queue_declare(declare).await.expect("declared").expect("an answer");
        let _ = channel.close().await;
        let _ = connection.close().await;
        (messages, consumers)
    }

    /// Takes every message waiting in `queue` and returns their bodies.
    async fn drain(&self, queue: &str) -> Vec<String> {
        let test = platform::testing::TestBroker::connect(&self.amqp_url).await.expect("connected");
        let mut bodies = Vec::new();
        while let Some(body) = test.get(queue).await.expect("read") {
            bodies.push(String::from_utf8_lossy(&body).into_owned());
        }
        bodies
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shutdown_stops_the_background_tasks() {
    let mut probe = start(fresh_vhost().await.expect("a vhost"), Duration::from_secs(10)).await;
    let statuses = (probe.status("/probe").await, probe.status("/health").await, probe.status("/nowhere").await);
    assert_eq!(statuses, (200, 200, 404));
    assert_eq!(probe.task_running.try_recv(), Err(oneshot::error::TryRecvError::Empty), "the task runs while serving");

    let began = Instant::now();
    probe.shutdown.shut_down();
    let (_, mut task_running) = probe.stopped(began).await;
    assert_eq!(task_running.try_recv(), Err(oneshot::error::TryRecvError::Closed), "the task was stopped");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shutdown_finishes_what_is_in_flight_and_leaves_the_rest_in_the_queue() {
    let amqp_url = fresh_vhost().await.expect("a vhost");
    let queues = Queues::new(&amqp_url);
    // The consumer takes one message per batch: the blocking one first, the others wait, prefetched.
    queues.publish(WORK, &[BLOCKING, "second", "third", "fourth"]).await;
    let probe = start(amqp_url, Duration::from_secs(10)).await;
    let control = probe.control.clone();
    control.batch_started.notified().await;
    let request = tokio::spawn(probe.get("/slow"));
    control.request_arrived.notified().await;

    let began = Instant::now();
    probe.shutdown.shut_down();
    probe.wait_until_refusing().await;
    control.release_request.notify_one();
    let answer = request.await.expect("the request task").expect("the request in flight is answered");
    assert_eq!(answer.status().as_u16(), 200);
    control.release_batch.notify_one();
    probe.stopped(began).await;

    assert_eq!(*control.handled.lock().expect("not poisoned"), [BLOCKING], "nothing is handled after the signal");
    assert_eq!(queues.drain(REPLIES).await, ["reply to block"], "the batch in flight published its reply");
    // Acked, the batch in flight is gone from the queue; the messages the probe held unhandled are back in it.
    eventually("the unhandled messages back in their queue", WITHIN, async || {
        (queues.count(WORK).await == (3, 0)).then_some(())
    })
    .await;
    assert_eq!(queues.drain(WORK).await, ["second", "third", "fourth"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_consumer_that_requests_wait_for_runs_until_they_are_answered() {
    let amqp_url = fresh_vhost().await.expect("a vhost");
    let queues = Queues::new(&amqp_url);
    let probe = start(amqp_url, Duration::from_secs(10)).await;
    let control = probe.control.clone();
    eventually("both consumers to subscribe", WITHIN, async || {
        ((queues.count(WORK).await.1, queues.count(OUTCOMES).await.1) == (1, 1)).then_some(())
    })
    .await;
    let request = tokio::spawn(probe.get("/outcome"));
    control.request_arrived.notified().await;

    let began = Instant::now();
    probe.shutdown.shut_down();
    eventually("the work consumer to stop", WITHIN, async || (queues.count(WORK).await.1 == 0).then_some(())).await;
    queues.publish(WORK, &["after the signal"]).await;
    queues.publish(OUTCOMES, &["the outcome"]).await;
    let answer = request.await.expect("the request task").expect("the waiting request is answered");
    assert_eq!(answer.status().as_u16(), 200);
    probe.stopped(began).await;

    assert!(control.handled.lock().expect("not poisoned").is_empty());
    assert_eq!(queues.count(OUTCOMES).await, (0, 0), "the outcome was consumed, then the consumer stopped");
    assert_eq!(queues.drain(WORK).await, ["after the signal"], "a message sent after the signal is left queued");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_that_never_ends_does_not_hold_the_exit_past_the_timeout() {
    let timeout = Duration::from_millis(1500);
    let probe = start(fresh_vhost().await.expect("a vhost"), timeout).await;
    let control = probe.control.clone();
    let request = tokio::spawn(probe.get("/hang"));
    control.request_arrived.notified().await;

    let began = Instant::now();
    probe.shutdown.shut_down();
    let (took, _) = probe.stopped(began).await;
    assert!(took >= timeout, "the request had the whole timeout to finish, not {took:?}");
    assert!(took < timeout + Duration::from_secs(2), "the shutdown took {took:?}, more than {timeout:?}");
    assert!(request.await.expect("the request task").is_err(), "the hanging request's connection was closed");
}
