//! RabbitMQ plumbing on amqprs: connections that come back after the broker restarts, the queue topology, a
//! publisher that only reports success once the broker has confirmed every message, and a batching consumer with
//! manual acks.
//!
//! Delivery guarantees rest on three rules. A publish counts only when confirmed. A delivery is acked only after
//! its handler has committed its effect, so a crash between the two redelivers it and the handler's idempotency
//! makes the repeat harmless. A message that can never be processed (it does not parse, or its handler says so)
//! is moved to the dead-letter queue instead of blocking its queue. A batch that fails is never requeued: the
//! consumer holds it and tries it again, with pauses, for as long as the database is out of reach, and one
//! message at a time when the database refuses it, so one message the database refuses never holds back the
//! others in its batch; a message that the database refuses alone, again and again, is dead-lettered (see
//! [`crate::poison`]). Only a broken link to the broker (or a crash) gives a held batch back to the broker.
//!
//! Quorum queues count how often each message was given back to them and dead-letter one given back more than
//! [`DELIVERY_LIMIT`] times. As the consumer never gives a message back on purpose, only a crash or a broken
//! link counts, so the limit catches a message that crashes its consumer every time, and no outage, however
//! long, pushes innocent messages past it.
//!
//! Queues are durable, but the services' messages are transient by default: every one of them is derived from
//! committed database state and sent again from that state when it is lost (see [`crate::dispatch`]), so a
//! broker restart that drops them loses nothing, and a persistent message would only make every publish wait for
//! the broker's disk. `AMQP_PERSISTENT_MESSAGES=true` makes them persistent, so that a broker restart delays
//! nothing that was queued. Messages put on the dead-letter queue by a consumer are always persistent: they are
//! kept for operators and nothing sends them again.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex as StdMutex},
    time::Duration,
};

use amqprs::{
    callbacks::{ChannelCallback, ConnectionCallback},
    channel::{
        BasicAckArguments, BasicCancelArguments, BasicConsumeArguments, BasicPublishArguments, BasicQosArguments,
        Channel, ConfirmSelectArguments, ExchangeDeclareArguments, ExchangeType, QueueBindArguments,
        QueueDeclareArguments,
    },
    connection::{Connection, OpenConnectionArguments},
    Ack, BasicProperties, Cancel, Close, CloseChannel, FieldTable, FieldValue, Nack, Return,
};
use anyhow::{anyhow, bail, Context, Result};
use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use serde::{de::DeserializeOwned, Serialize};
use shared_contracts::{
    queues::{DEAD_LETTERS, DEAD_LETTER_EXCHANGE},
    Envelope,
};

use crate::trace::TRACEPARENT;
use tokio::sync::{Mutex, Notify};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// How long a publisher waits for the broker to confirm a batch before it gives up and reports failure.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a publisher waiting for confirms checks that its connection is still up. amqprs marks a connection
/// closed when its socket fails but tells the channel's callback nothing, so without this check a publish caught
/// by a broker crash would wait out the whole [`CONFIRM_TIMEOUT`] before it fails and is retried.
const LINK_CHECK_INTERVAL: Duration = Duration::from_millis(200);
/// The content type of a bundle: one AMQP message carrying several messages for one queue, so that a batch costs
/// the broker one message instead of one per command. See [`bundle`] for the format.
pub const BUNDLE_CONTENT_TYPE: &str = "application/vnd.checkout.bundle";
/// The most messages one bundle carries.
const MAX_BUNDLE: usize = 512;
/// The longest pause between two attempts to reach the broker. Short, because it is also how long messages may
/// sit unconsumed after a broker restart (the chaos test measured up to 4 s with 5 s here), and a refused
/// connection attempt costs next to nothing.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// How often a message may be given back to a quorum work queue (its consumer crashed or lost its link before
/// acking it) before the broker dead-letters it: the `x-delivery-limit` the work queues are declared with. The
/// consumer never gives a message back on purpose, so this only counts crashes and broken links; it is high
/// enough that the crashes and rolling restarts an innocent message may live through never reach it, and low
/// enough that a message that kills its consumer every time reaches the dead letters after that many restarts.
/// It is RabbitMQ 4's default, made explicit so that a 3.x broker (no limit by default) behaves the same. A
/// `delivery-limit` policy can lower it on a running broker (the lower of the two applies); raising it means
/// declaring the queues again.
pub const DELIVERY_LIMIT: u32 = 20;

/// The pauses between attempts to reach the broker: 100 ms, doubling up to [`MAX_BACKOFF`], with no limit on
/// the attempts.
fn reconnect_backoff() -> ExponentialBuilder {
    ExponentialBuilder::new().with_min_delay(Duration::from_millis(100)).with_max_delay(MAX_BACKOFF).without_max_times()
}

/// Where the broker is, and what this process calls itself there.
#[derive(Clone)]
pub struct Broker {
    args: OpenConnectionArguments,
    /// The service name, used as connection name and metric prefix.
    service: &'static str,
    queues: &'static [&'static str],
    metrics: Arc<MetricNames>,
    /// Declare the queues as quorum queues (`AMQP_QUORUM_QUEUES=true`), replicated over a RabbitMQ cluster.
    quorum: bool,
    /// The delivery limit of the quorum work queues: [`DELIVERY_LIMIT`], lower in tests.
    delivery_limit: u32,
    /// Publish persistent messages (`AMQP_PERSISTENT_MESSAGES=true`) instead of transient ones.
    persistent: bool,
}

struct MetricNames {
    published: &'static str,
    consumed: &'static str,
    redelivered: &'static str,
    dead_lettered: &'static str,
    batch_seconds: &'static str,
    publish_seconds: &'static str,
}

fn leak(name: String) -> &'static str {
    Box::leak(name.into_boxed_str())
}

impl Broker {
    /// A broker at `url` (`amqp://user:password@host:port/vhost`), for `service`, which declares the durable
    /// work `queues` (each dead-lettering to the shared dead-letter queue) whenever it connects.
    ///
    /// An `amqps://` URL (port 5671 unless given) connects over TLS and checks that the broker's certificate
    /// names the URL's host and is signed by a CA from the PEM file named by the URL's `cacertfile` query
    /// parameter, else by `AMQP_CA_FILE`, else by one of the Mozilla roots.
    pub fn new(url: &str, service: &'static str, queues: &'static [&'static str]) -> Result<Self> {
        let shown = crate::config::redact_url(url);
        let (url, ca_file) = take_ca_file(url);
        let ca_file = ca_file.or_else(|| std::env::var_os("AMQP_CA_FILE").filter(|f| !f.is_empty()).map(Into::into));
        let secure = url.starts_with("amqps:");
        if secure {
            // amqprs builds a rustls configuration of its own while parsing an amqps URL.
            crate::tls::provider();
        }
        let mut args = OpenConnectionArguments::try_from(url.as_str())
            .map_err(|e| anyhow!("AMQP URL {shown} is not valid: {e}"))?;
        if secure {
            let config = crate::tls::client_config(crate::tls::Verification::Full, ca_file.as_deref())
                .with_context(|| format!("TLS settings of AMQP URL {shown}"))?;
            let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
            args.tls_adaptor(amqprs::tls::TlsAdaptor::new(connector, args.get_host().to_owned()));
        }
        // amqprs takes the vhost from the URL path verbatim, so the standard spelling of the default vhost,
        // `/%2f`, would name a vhost called "%2f" that a stock broker does not have.
        let vhost = percent_decode(args.get_virtual_host());
        args.virtual_host(&vhost).connection_name(service).heartbeat(10);
        let metrics = Arc::new(MetricNames {
            published: leak(format!("{service}_amqp_published_total")),
            consumed: leak(format!("{service}_amqp_consumed_total")),
            redelivered: leak(format!("{service}_amqp_redelivered_total")),
            dead_lettered: leak(format!("{service}_amqp_dead_lettered_total")),
            batch_seconds: leak(format!("{service}_amqp_batch_duration_seconds")),
            publish_seconds: leak(format!("{service}_amqp_publish_duration_seconds")),
        });
        let quorum = crate::config::parse("AMQP_QUORUM_QUEUES", false)?;
        let persistent = crate::config::parse("AMQP_PERSISTENT_MESSAGES", false)?;
        Ok(Self { args, service, queues, metrics, quorum, delivery_limit: DELIVERY_LIMIT, persistent })
    }

    /// The same broker declaring quorum queues, whatever `AMQP_QUORUM_QUEUES` says, whose work queues dead-letter
    /// a message given back to them more than `delivery_limit` times (tests use a low one; services
    /// [`DELIVERY_LIMIT`]).
    pub fn with_quorum_queues(mut self, delivery_limit: u32) -> Self {
        self.quorum = true;
        self.delivery_limit = delivery_limit;
        self
    }

    /// One attempt to connect, open a channel and declare the topology.
    async fn open(&self) -> Result<(Connection, Channel)> {
        let connection = Connection::open(&self.args).await.context("connecting to RabbitMQ")?;
        connection.register_callback(QuietConnectionCallback).await?;
        let channel = connection.open_channel(None).await.context("opening a channel")?;
        self.declare_topology(&channel).await?;
        Ok((connection, channel))
    }

    /// Opens a connection and a channel on it, with the topology declared, for one-off work such as an
    /// operator inspecting a queue. The caller closes both when done.
    pub async fn connect(&self) -> Result<(Connection, Channel)> {
        self.open().await
    }

    /// Connects, retrying with [`reconnect_backoff`] until the broker answers (so it never returns an error).
    async fn open_with_retry(&self) -> Result<(Connection, Channel)> {
        (|| self.open())
            .retry(reconnect_backoff())
            .notify(|e, _| {
                tracing::warn!(error = %format!("{e:#}"), service = self.service, "RabbitMQ unreachable, retrying")
            })
            .await
    }

    /// Declares the dead-letter exchange and queue and this broker's work queues; idempotent.
    pub async fn declare_topology(&self, channel: &Channel) -> Result<()> {
        let dlx = ExchangeDeclareArguments::of_type(DEAD_LETTER_EXCHANGE, ExchangeType::Fanout).durable(true).finish();
        channel.exchange_declare(dlx).await.context("declaring the dead-letter exchange")?;
        let dead_letters =
            QueueDeclareArguments::durable_client_named(DEAD_LETTERS).arguments(self.queue_type()).finish();
        channel.queue_declare(dead_letters).await?;
        channel.queue_bind(QueueBindArguments::new(DEAD_LETTERS, DEAD_LETTER_EXCHANGE, "")).await?;
        for queue in self.queues {
            let mut arguments = self.queue_type();
            arguments.insert("x-dead-letter-exchange".try_into().expect("short name"), DEAD_LETTER_EXCHANGE.into());
            if self.quorum {
                let limit = FieldValue::l(self.delivery_limit.into());
                arguments.insert("x-delivery-limit".try_into().expect("short name"), limit);
            }
            let declare = QueueDeclareArguments::durable_client_named(queue).arguments(arguments).finish();
            channel.queue_declare(declare).await.with_context(|| format!("declaring queue {queue}"))?;
        }
        Ok(())
    }

    /// The queue arguments that pick the queue type. A queue keeps the type (and delivery limit) it was first
    /// declared with: switching an existing vhost to quorum queues, or quorum queues declared before they had a
    /// delivery limit, means deleting its queues first (the broker refuses a mismatched declare).
    fn queue_type(&self) -> FieldTable {
        let mut arguments = FieldTable::new();
        if self.quorum {
            arguments.insert("x-queue-type".try_into().expect("short name"), "quorum".into());
        }
        arguments
    }

    /// The number of messages waiting in `queue` (for tests and operators).
    pub async fn queue_depth(&self, queue: &str) -> Result<u32> {
        let (connection, channel) = self.open().await?;
        let declared = channel
            .queue_declare(QueueDeclareArguments::new(queue).passive(true).finish())
            .await?
            .ok_or_else(|| anyhow!("no answer to a passive declare of {queue}"))?;
        let _ = channel.close().await;
        let _ = connection.close().await;
        Ok(declared.1)
    }
}

/// `url` without its `cacertfile` query parameter, and that parameter's value (percent-decoded).
fn take_ca_file(url: &str) -> (String, Option<std::path::PathBuf>) {
    let Some((base, query)) = url.split_once('?') else { return (url.to_owned(), None) };
    let mut ca_file = None;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.strip_prefix("cacertfile=") {
            Some(path) => {
                ca_file = Some(percent_decode(path).into());
                false
            }
            None => !pair.is_empty(),
        })
        .collect();
    let url = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
    (url, ca_file)
}

/// `text` with every `%XX` escape replaced by the byte it stands for (as URLs escape a vhost); anything that is
/// not a valid escape is kept as it is.
pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                i += 3;
            }
            None => {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// Logs connection events instead of amqprs's default handler.
struct QuietConnectionCallback;

#[async_trait]
impl ConnectionCallback for QuietConnectionCallback {
    async fn close(&mut self, _: &Connection, close: Close) -> Result<(), amqprs::error::Error> {
        tracing::warn!(reason = %close, "RabbitMQ closed the connection");
        Ok(())
    }
    async fn blocked(&mut self, _: &Connection, reason: String) {
        tracing::warn!(%reason, "RabbitMQ blocked the connection");
    }
    async fn unblocked(&mut self, _: &Connection) {
        tracing::info!("RabbitMQ unblocked the connection");
    }
    async fn secret_updated(&mut self, _: &Connection) {}
}

/// One message to publish.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The queue it goes to (through the default exchange).
    pub queue: String,
    /// Its body, an encoded `shared_contracts::Envelope`.
    pub body: Vec<u8>,
    /// The envelope's message ID, repeated as the AMQP property for tracing on the broker side.
    pub message_id: String,
    /// The W3C trace context of the span that sends it, carried in the `traceparent` header.
    pub traceparent: Option<String>,
}

impl Outgoing {
    /// `envelope`, encoded, for `queue`, outside any trace.
    pub fn envelope<T: Serialize + DeserializeOwned>(queue: &str, envelope: &Envelope<T>) -> Self {
        Self {
            queue: queue.to_owned(),
            body: envelope.to_bytes(),
            message_id: envelope.message_id.to_string(),
            traceparent: None,
        }
    }

    /// The same message, sent as part of the trace `traceparent` names.
    pub fn in_trace(mut self, traceparent: Option<String>) -> Self {
        self.traceparent = traceparent;
        self
    }
}

/// Publishes with confirms. Safe to share: concurrent callers pipeline their messages on one channel and each
/// waits only for its own confirms. Reconnects on the next call after the link broke.
pub struct Publisher {
    broker: Broker,
    link: Mutex<Option<PublishLink>>,
}

struct PublishLink {
    connection: Connection,
    channel: Channel,
    confirms: Arc<Confirms>,
    next_tag: u64,
}

/// Delivery tags published and not yet confirmed, shared with the channel callback.
#[derive(Default)]
struct Confirms {
    state: StdMutex<ConfirmState>,
    changed: Notify,
}

#[derive(Default)]
struct ConfirmState {
    pending: BTreeSet<u64>,
    nacked: BTreeSet<u64>,
    closed: bool,
}

impl Confirms {
    fn settle(&self, tag: u64, multiple: bool, acked: bool) {
        let mut state = self.state.lock().expect("confirm state poisoned");
        let settled: Vec<u64> = if multiple { state.pending.range(..=tag).copied().collect() } else { vec![tag] };
        for tag in settled {
            state.pending.remove(&tag);
            if !acked {
                state.nacked.insert(tag);
            }
        }
        drop(state);
        self.changed.notify_waiters();
    }

    fn close(&self) {
        self.state.lock().expect("confirm state poisoned").closed = true;
        self.changed.notify_waiters();
    }

    /// Waits until every tag in `tags` is settled; fails on a nack, a closed channel, a lost `connection` or the
    /// timeout.
    async fn wait(&self, tags: &[u64], connection: &Connection) -> Result<()> {
        let deadline = tokio::time::Instant::now() + CONFIRM_TIMEOUT;
        loop {
            let notified = self.changed.notified();
            {
                let mut state = self.state.lock().expect("confirm state poisoned");
                if tags.iter().any(|t| state.nacked.contains(t)) {
                    for t in tags {
                        state.nacked.remove(t);
                    }
                    bail!("RabbitMQ refused (nacked) a message");
                }
                if tags.iter().all(|t| !state.pending.contains(t)) {
                    return Ok(());
                }
                if state.closed {
                    bail!("the channel closed before RabbitMQ confirmed");
                }
            }
            if !connection.is_open() {
                bail!("the connection to RabbitMQ was lost before it confirmed");
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                bail!("RabbitMQ did not confirm within {CONFIRM_TIMEOUT:?}");
            }
            let _ = tokio::time::timeout_at(deadline.min(now + LINK_CHECK_INTERVAL), notified).await;
        }
    }
}

struct ConfirmCallback(Arc<Confirms>);

#[async_trait]
impl ChannelCallback for ConfirmCallback {
    async fn close(&mut self, _: &Channel, close: CloseChannel) -> Result<(), amqprs::error::Error> {
        tracing::warn!(reason = %close, "RabbitMQ closed the publishing channel");
        self.0.close();
        Ok(())
    }
    async fn cancel(&mut self, _: &Channel, _: Cancel) -> Result<(), amqprs::error::Error> {
        Ok(())
    }
    async fn flow(&mut self, _: &Channel, active: bool) -> Result<bool, amqprs::error::Error> {
        Ok(active)
    }
    async fn publish_ack(&mut self, _: &Channel, ack: Ack) {
        self.0.settle(ack.delivery_tag(), ack.mutiple(), true);
    }
    async fn publish_nack(&mut self, _: &Channel, nack: Nack) {
        self.0.settle(nack.delivery_tag(), nack.multiple(), false);
    }
    async fn publish_return(&mut self, _: &Channel, _: Return, _: BasicProperties, _: Vec<u8>) {}
}

impl Publisher {
    /// A publisher for `broker`; it connects on first use.
    pub fn new(broker: Broker) -> Self {
        Self { broker, link: Mutex::new(None) }
    }

    /// Publishes `messages` (transient unless the broker was configured otherwise) and returns once the broker has
    /// confirmed all of them. The messages for one queue go as one bundle (see [`bundle`]), a lone message as it
    /// is. On error some may have been delivered anyway: callers re-send, and receivers are idempotent.
    pub async fn publish(&self, messages: &[Outgoing]) -> Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let mut wire = Vec::new();
        for (queue, messages) in by_queue(messages) {
            for chunk in messages.chunks(MAX_BUNDLE) {
                match chunk {
                    [single] => {
                        wire.push((queue, plain_properties(single, self.broker.persistent), single.body.clone()))
                    }
                    several => {
                        let mut properties = BasicProperties::default();
                        properties.with_persistence(self.broker.persistent).with_content_type(BUNDLE_CONTENT_TYPE);
                        wire.push((queue, properties, bundle(several)));
                    }
                }
            }
        }
        self.send_confirmed(wire).await?;
        for message in messages {
            metrics::counter!(self.broker.metrics.published, "queue" => message.queue.clone()).increment(1);
        }
        metrics::histogram!(self.broker.metrics.publish_seconds).record(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Puts `parts`, which the consumer of `queue` could never process, on the dead-letter queue as separate
    /// messages, each with the `x-death` record the broker gives a message it dead-letters itself, and waits for
    /// the broker's confirms.
    async fn publish_dead_letters(&self, queue: &str, parts: &[&Delivery]) -> Result<()> {
        let mut wire = Vec::with_capacity(parts.len());
        // An AMQP timestamp: seconds since the epoch, as the broker writes it.
        let died_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        for part in parts {
            let mut death = FieldTable::new();
            death.insert("queue".try_into().expect("short name"), queue.into());
            death.insert("reason".try_into().expect("short name"), "rejected".into());
            death.insert("count".try_into().expect("short name"), FieldValue::l(1));
            death.insert("time".try_into().expect("short name"), FieldValue::T(died_at));
            let mut headers = FieldTable::new();
            let deaths = vec![FieldValue::F(death)].try_into().map_err(|e| anyhow!("x-death header: {e:?}"))?;
            headers.insert("x-death".try_into().expect("short name"), FieldValue::A(deaths));
            if let Some(traceparent) = &part.traceparent {
                headers.insert(TRACEPARENT.try_into().expect("short name"), traceparent.as_str().into());
            }
            let mut properties = BasicProperties::default();
            properties.with_persistence(true).with_content_type("application/json").with_headers(headers);
            wire.push((DEAD_LETTERS, properties, part.body.clone()));
        }
        self.send_confirmed(wire).await
    }

    /// Sends each `(queue, properties, body)` of `wire` through the default exchange and waits for the broker's
    /// confirms. A link that failed is dropped, so that the next call reconnects.
    async fn send_confirmed(&self, wire: Vec<(&str, BasicProperties, Vec<u8>)>) -> Result<()> {
        let (confirms, tags, connection) = {
            let mut guard = self.link.lock().await;
            let result = self.publish_on_link(&mut guard, wire).await;
            if result.is_err() {
                *guard = None;
            }
            result?
        };
        let confirmed = confirms.wait(&tags, &connection).await;
        drop(connection);
        if confirmed.is_err() {
            let mut guard = self.link.lock().await;
            if guard.as_ref().is_some_and(|link| Arc::ptr_eq(&link.confirms, &confirms)) {
                *guard = None;
            }
        }
        confirmed
    }

    async fn publish_on_link(
        &self,
        guard: &mut Option<PublishLink>,
        wire: Vec<(&str, BasicProperties, Vec<u8>)>,
    ) -> Result<(Arc<Confirms>, Vec<u64>, Connection)> {
        if guard.as_ref().is_none_or(|link| !link.channel.is_open() || !link.connection.is_open()) {
            *guard = Some(self.open_link().await?);
        }
        let link = guard.as_mut().expect("link was just opened");
        let mut tags = Vec::with_capacity(wire.len());
        for (queue, properties, body) in wire {
            link.next_tag += 1;
            let tag = link.next_tag;
            link.confirms.state.lock().expect("confirm state poisoned").pending.insert(tag);
            tags.push(tag);
            link.channel
                .basic_publish(properties, body, BasicPublishArguments::new("", queue))
                .await
                .context("publishing to RabbitMQ")?;
        }
        Ok((link.confirms.clone(), tags, link.connection.clone()))
    }

    async fn open_link(&self) -> Result<PublishLink> {
        let (connection, channel) = self.broker.open().await?;
        let confirms = Arc::new(Confirms::default());
        channel.register_callback(ConfirmCallback(confirms.clone())).await?;
        channel.confirm_select(ConfirmSelectArguments::default()).await.context("enabling publisher confirms")?;
        Ok(PublishLink { connection, channel, confirms, next_tag: 0 })
    }
}

/// The messages of `messages` grouped by queue, each group in the order given, the groups in the order their
/// queues first appear.
fn by_queue(messages: &[Outgoing]) -> Vec<(&str, Vec<&Outgoing>)> {
    let mut groups: Vec<(&str, Vec<&Outgoing>)> = Vec::new();
    for message in messages {
        match groups.iter_mut().find(|(queue, _)| *queue == message.queue) {
            Some((_, group)) => group.push(message),
            None => groups.push((&message.queue, vec![message])),
        }
    }
    groups
}

fn plain_properties(message: &Outgoing, persistent: bool) -> BasicProperties {
    let mut properties = BasicProperties::default();
    properties.with_persistence(persistent).with_content_type("application/json").with_message_id(&message.message_id);
    if let Some(traceparent) = &message.traceparent {
        let mut headers = FieldTable::new();
        headers.insert(TRACEPARENT.try_into().expect("short name"), traceparent.as_str().into());
        properties.with_headers(headers);
    }
    properties
}

/// One message of a bundle: its body and its sender's trace context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The message body.
    pub body: Vec<u8>,
    /// The W3C trace context it travels in.
    pub traceparent: Option<String>,
}

/// The body of a bundle of `messages`: for each in turn, the length of its trace context as a big-endian `u32`
/// (0 for none), the trace context, the length of its body as a big-endian `u32`, and the body.
pub fn bundle(messages: &[&Outgoing]) -> Vec<u8> {
    let size = messages.iter().map(|m| 8 + m.body.len() + m.traceparent.as_ref().map_or(0, String::len)).sum();
    let mut body = Vec::with_capacity(size);
    for message in messages {
        let traceparent = message.traceparent.as_deref().unwrap_or_default().as_bytes();
        for field in [traceparent, message.body.as_slice()] {
            body.extend_from_slice(&(field.len() as u32).to_be_bytes());
            body.extend_from_slice(field);
        }
    }
    body
}

/// The messages of a bundle's body, in order; `None` if it is not a well-formed bundle.
pub fn unbundle(mut body: &[u8]) -> Option<Vec<Part>> {
    fn field<'a>(body: &mut &'a [u8]) -> Option<&'a [u8]> {
        let (length, rest) = body.split_first_chunk::<4>()?;
        let length = u32::from_be_bytes(*length) as usize;
        let (field, rest) = (rest.get(..length)?, rest.get(length..)?);
        *body = rest;
        Some(field)
    }
    let mut parts = Vec::new();
    while !body.is_empty() {
        let traceparent = field(&mut body)?;
        let traceparent =
            (!traceparent.is_empty()).then(|| String::from_utf8(traceparent.to_vec())).transpose().ok()?;
        parts.push(Part { body: field(&mut body)?.to_vec(), traceparent });
    }
    (!parts.is_empty()).then_some(parts)
}

fn is_bundle(properties: Option<&BasicProperties>) -> bool {
    properties.and_then(BasicProperties::content_type).is_some_and(|t| t == BUNDLE_CONTENT_TYPE)
}

/// The bodies of the messages in an AMQP message with `properties` and `body`: those of a bundle, or the body
/// itself. For clients that read queues without [`consume`], such as tests.
pub fn bodies_of(properties: Option<&BasicProperties>, body: Vec<u8>) -> Vec<Vec<u8>> {
    if is_bundle(properties) {
        if let Some(parts) = unbundle(&body) {
            return parts.into_iter().map(|part| part.body).collect();
        }
    }
    vec![body]
}

/// One message handed to a [`BatchHandler`]: an AMQP message, or one message of a bundle.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The message body.
    pub body: Vec<u8>,
    /// Whether the broker delivered it before (to this or another consumer) without an ack.
    pub redelivered: bool,
    /// The sender's W3C trace context, from the `traceparent` header.
    pub traceparent: Option<String>,
    /// Its AMQP message's delivery tag, which the other messages of a bundle share.
    tag: u64,
}

/// What became of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Processed (or recognised as a duplicate): ack it.
    Done,
    /// It can never be processed: send it to the dead-letter queue, with the reason logged.
    DeadLetter(String),
}

/// Processes the messages of one queue, a batch at a time.
#[async_trait]
pub trait BatchHandler: Send + Sync + 'static {
    /// Handles `batch` and returns one verdict per delivery, in order, once its effects are committed. An `Err`
    /// means the batch could not be handled now (database down, or a message in it refused): the consumer holds
    /// it and hands it again, or parts of it, later (see [`crate::poison::recover`]).
    async fn handle(&self, batch: &[Delivery]) -> Result<Vec<Verdict>>;
}

/// How a consumer takes messages.
#[derive(Debug, Clone, Copy)]
pub struct ConsumerSettings {
    /// Unacked messages the broker may hand this consumer at once.
    pub prefetch: u16,
    /// The most messages handed to one [`BatchHandler::handle`] call.
    pub max_batch: usize,
    /// Batches handled at once, each on a channel of its own. More than one overlaps one batch's database round
    /// trips with another's; handlers must then tolerate concurrent batches (row locks, retried deadlocks).
    pub parallel: usize,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        Self { prefetch: 512, max_batch: 128, parallel: 1 }
    }
}

/// Consumes `queue` for ever with `handler`, `settings.parallel` batches at a time, reconnecting whenever a link
/// breaks. Stopping (dropping) it stops its `parallel` consumers too.
pub async fn consume<H: BatchHandler>(
    broker: Broker,
    queue: &'static str,
    settings: ConsumerSettings,
    handler: Arc<H>,
) {
    consume_until(broker, queue, settings, handler, CancellationToken::new()).await
}

/// Consumes `queue` like [`consume`] until `stop` is cancelled, then stops cleanly: each of its consumers finishes
/// the batch it is handling (committed, replies published, acked), takes no further delivery, cancels its
/// subscription and closes its channel, so that the broker hands the messages it had sent ahead (prefetched, not
/// yet handled) to the queue's other consumers. Returns once all of them have stopped.
pub async fn consume_until<H: BatchHandler>(
    broker: Broker,
    queue: &'static str,
    settings: ConsumerSettings,
    handler: Arc<H>,
    stop: CancellationToken,
) {
    let mut consumers = tokio::task::JoinSet::new();
    for _ in 0..settings.parallel.max(1) {
        consumers.spawn(consume_one(broker.clone(), queue, settings, handler.clone(), stop.clone()));
    }
    while consumers.join_next().await.is_some() {}
}

async fn consume_one<H: BatchHandler>(
    broker: Broker,
    queue: &'static str,
    settings: ConsumerSettings,
    handler: Arc<H>,
    stop: CancellationToken,
) {
    // A run that ends without an error starts the pauses between reconnections over again.
    while !stop.is_cancelled() {
        let _ = (|| consume_until_broken(&broker, queue, settings, handler.as_ref(), &stop))
            .retry(reconnect_backoff())
            .when(|_| !stop.is_cancelled())
            .notify(|e, _| tracing::warn!(error = %format!("{e:#}"), queue, "consumer stopped, reconnecting"))
            .await;
    }
}

/// Consumes on one link until it breaks (an error) or `stop` is cancelled (`Ok`).
async fn consume_until_broken<H: BatchHandler>(
    broker: &Broker,
    queue: &'static str,
    settings: ConsumerSettings,
    handler: &H,
    stop: &CancellationToken,
) -> Result<()> {
    let (connection, channel) = tokio::select! {
        opened = broker.open_with_retry() => opened?,
        () = stop.cancelled() => return Ok(()),
    };
    channel.basic_qos(BasicQosArguments::new(0, settings.prefetch, false)).await?;
    let consumer_tag = format!("{}-{}", broker.service, uuid::Uuid::new_v4());
    let (_, mut deliveries) = channel.basic_consume_rx(BasicConsumeArguments::new(queue, &consumer_tag)).await?;
    tracing::info!(queue, "consuming");
    let metrics = broker.metrics.clone();
    let dead_letters = Publisher::new(broker.clone());
    // The stop is checked first, so a delivery that is waiting is left to the broker to hand to another consumer.
    while let Some(first) = tokio::select! {
        biased;
        () = stop.cancelled() => None,
        delivery = deliveries.recv() => delivery,
    } {
        let mut batch = Vec::with_capacity(settings.max_batch);
        batch.extend(into_deliveries(first));
        while batch.len() < settings.max_batch {
            match deliveries.try_recv() {
                Ok(message) => batch.extend(into_deliveries(message)),
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            continue;
        }
        let redelivered = batch.iter().filter(|d| d.redelivered).count() as u64;
        metrics::counter!(metrics.consumed, "queue" => queue).increment(batch.len() as u64);
        metrics::counter!(metrics.redelivered, "queue" => queue).increment(redelivered);
        let started = std::time::Instant::now();
        let verdicts = match handler.handle(&batch).await {
            Ok(verdicts) => verdicts,
            // Held, not requeued: a requeue would count towards a quorum queue's delivery limit.
            Err(e) => {
                let link_open = || connection.is_open() && channel.is_open();
                let held = crate::poison::recover(handler, &batch, e, link_open)
                    .instrument(tracing::info_span!("held_batch", queue));
                // A batch held through an outage gives way to a stop: closing the channel hands it back.
                tokio::select! {
                    verdicts = held => verdicts?,
                    () = stop.cancelled() => break,
                }
            }
        };
        settle(&channel, &dead_letters, queue, &metrics, &batch, &verdicts).await?;
        metrics::histogram!(metrics.batch_seconds, "queue" => queue).record(started.elapsed().as_secs_f64());
    }
    if stop.is_cancelled() {
        stop_consuming(connection, channel, queue, &consumer_tag).await;
        return Ok(());
    }
    let _ = connection.close().await;
    bail!("the delivery stream of {queue} ended")
}

/// Ends a consumer that was told to stop: the broker sends it nothing more, and closing the channel gives the
/// deliveries it holds unacked back to the queue, for the other consumers. The broker does both on its own if the
/// link is already gone.
async fn stop_consuming(connection: Connection, channel: Channel, queue: &str, consumer_tag: &str) {
    if let Err(e) = channel.basic_cancel(BasicCancelArguments::new(consumer_tag)).await {
        tracing::debug!(error = %e, queue, "cancelling the consumer failed");
    }
    let _ = channel.close().await;
    let _ = connection.close().await;
    tracing::info!(queue, "stopped consuming");
}

/// The deliveries in one AMQP message: the messages of a bundle, or the message itself (a bundle that does not
/// parse included, so that its handler dead-letters it).
fn into_deliveries(message: amqprs::channel::ConsumerMessage) -> Vec<Delivery> {
    let Some(deliver) = message.deliver else { return Vec::new() };
    let (tag, redelivered) = (deliver.delivery_tag(), deliver.redelivered());
    let properties = message.basic_properties.as_ref();
    let body = message.content.unwrap_or_default();
    if is_bundle(properties) {
        if let Some(parts) = unbundle(&body) {
            return parts
                .into_iter()
                .map(|part| Delivery { body: part.body, redelivered, traceparent: part.traceparent, tag })
                .collect();
        }
    }
    let traceparent = properties
        .and_then(|properties| properties.headers())
        .and_then(|headers| headers.get(&TRACEPARENT.try_into().ok()?).cloned())
        .and_then(|value| amqprs::LongStr::try_from(value).ok())
        .map(String::from);
    vec![Delivery { body, redelivered, traceparent, tag }]
}

/// Acks what was done and dead-letters the rest: `dead_letters` puts each such message on the dead-letter queue,
/// persistent whatever it came as, and only then is the batch acked. (A message of a bundle could not be rejected
/// alone anyway, and a rejected transient message would stay transient on the dead-letter queue.)
async fn settle(
    channel: &Channel,
    dead_letters: &Publisher,
    queue: &str,
    metrics: &MetricNames,
    batch: &[Delivery],
    verdicts: &[Verdict],
) -> Result<()> {
    if verdicts.len() != batch.len() {
        bail!("handler returned {} verdicts for {} messages", verdicts.len(), batch.len());
    }
    if verdicts.iter().all(|v| *v == Verdict::Done) {
        let last = batch.last().expect("batch is not empty").tag;
        channel.basic_ack(BasicAckArguments::new(last, true)).await?;
        return Ok(());
    }
    let mut dead = Vec::new();
    for (delivery, verdict) in batch.iter().zip(verdicts) {
        if let Verdict::DeadLetter(reason) = verdict {
            tracing::error!(queue, %reason, "dead-lettering a message");
            metrics::counter!(metrics.dead_lettered, "queue" => queue.to_owned()).increment(1);
            dead.push(delivery);
        }
    }
    dead_letters.publish_dead_letters(queue, &dead).await?;
    let last = batch.last().expect("batch is not empty").tag;
    channel.basic_ack(BasicAckArguments::new(last, true)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(queue: &str, body: &[u8], traceparent: Option<&str>) -> Outgoing {
        Outgoing {
            queue: queue.into(),
            body: body.to_vec(),
            message_id: "m".into(),
            traceparent: traceparent.map(str::to_owned),
        }
    }

    #[test]
    fn a_bundle_gives_back_its_messages_in_order() {
        let messages =
            [message("q", b"{\"a\":1}", Some("00-abc-def-01")), message("q", b"", None), message("q", b"x", None)];
        let parts = unbundle(&bundle(&messages.iter().collect::<Vec<_>>())).expect("a well-formed bundle");
        let expected: Vec<Part> =
            messages.iter().map(|m| Part { body: m.body.clone(), traceparent: m.traceparent.clone() }).collect();
        assert_eq!(parts, expected);
    }

    #[test]
    fn a_body_that_is_not_a_bundle_does_not_unbundle() {
        assert_eq!(unbundle(b""), None);
        assert_eq!(unbundle(b"{\"not\": \"a bundle\"}"), None);
        let whole = bundle(&[&message("q", b"body", None)]);
        assert_eq!(unbundle(&whole[..whole.len() - 1]), None);
    }

    #[test]
    fn messages_are_grouped_by_queue_keeping_their_order() {
        let messages = [message("a", b"1", None), message("b", b"2", None), message("a", b"3", None)];
        let groups: Vec<(&str, Vec<&[u8]>)> = by_queue(&messages)
            .into_iter()
            .map(|(queue, group)| (queue, group.iter().map(|m| m.body.as_slice()).collect()))
            .collect();
        assert_eq!(groups, [("a", vec![b"1".as_slice(), b"3"]), ("b", vec![b"2".as_slice()])]);
    }

    #[test]
    fn the_vhost_in_the_url_is_percent_decoded() {
        let broker = Broker::new("amqp://guest:guest@127.0.0.1:5672/%2f", "test", &[]).unwrap();
        assert_eq!(broker.args.get_virtual_host(), "/");
        let broker = Broker::new("amqp://guest:guest@127.0.0.1:5672/t_vhost_1", "test", &[]).unwrap();
        assert_eq!(broker.args.get_virtual_host(), "t_vhost_1");
        let broker = Broker::new("amqp://guest:guest@127.0.0.1:5672", "test", &[]).unwrap();
        assert_eq!(broker.args.get_virtual_host(), "/");
        assert_eq!(percent_decode("a%2Fb%zz%4"), "a/b%zz%4");
    }

    #[test]
    fn the_ca_file_is_taken_out_of_the_url() {
        let (url, ca) = take_ca_file("amqps://u:p@mq/v?heartbeat=5&cacertfile=%2Fetc%2Fca.pem");
        assert_eq!(url, "amqps://u:p@mq/v?heartbeat=5");
        assert_eq!(ca, Some("/etc/ca.pem".into()));
        assert_eq!(take_ca_file("amqp://mq/v"), ("amqp://mq/v".to_owned(), None));
        assert!(Broker::new("amqps://u:p@127.0.0.1/v?cacertfile=/nonexistent/ca.pem", "test", &[]).is_err());
    }

    #[test]
    fn amqps_defaults_to_port_5671() {
        let broker = Broker::new("amqps://guest:guest@localhost/%2f", "test", &[]).unwrap();
        assert_eq!(broker.args.get_port(), 5671);
        assert!(broker.args.get_tls_adaptor().is_some());
    }
}
