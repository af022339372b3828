//! The dead-letter queue as operators see it: look at what is waiting there without taking it away, send one
//! message or all of them back to the queue they died in once the cause is fixed, or discard one for good.
//!
//! Looking is a `basic_get` with manual acks, message after message on one channel (unacked messages are not
//! handed out twice), followed by one `basic_nack` with requeue, so the queue ends as it was. Replaying takes the
//! same path but publishes each message to its original queue, read from the `x-death` header RabbitMQ adds
//! when it dead-letters, with confirms, and acks it only once the broker has confirmed the copy: a crash in
//! between leaves a duplicate, never a loss, and every consumer is idempotent.
//!
//! A message is named by its [`DeadLetter::id`]: its AMQP message ID, which every service sets to the envelope's
//! ID, or, for a message published without one, `sha256:` and the hex SHA-256 of its body, so that the name is
//! the same on every listing. When several messages share a name (the same message dead-lettered twice), the
//! one nearest the head is the one acted on. Acting on one message holds every message before it unacked while
//! it works, then gives them back with one `basic_nack` with requeue: RabbitMQ puts requeued messages back in
//! their place in a classic queue, and ahead of the rest, in the order they were taken, in a quorum queue, so
//! the others keep their order; messages dead-lettered meanwhile join the tail as always.
//!
//! Every replay and discard is written to the audit log ([`crate::audit`]) with the operator who asked. A
//! discarded message is recorded, with its full body, before it is acked away: if the ack fails, the record
//! stays and so does the message, and discarding it again records it again.

use std::sync::Arc;

use amqprs::{
    channel::{BasicAckArguments, BasicGetArguments, BasicNackArguments, Channel, QueueDeclareArguments},
    connection::Connection,
    BasicProperties, FieldTable, FieldValue,
};
use anyhow::{anyhow, Context, Result};
use chrono::{DateTime, Utc};
use platform::{
    amqp::{Broker, Outgoing, Publisher},
    db::Pool,
};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use shared_contracts::{queues, Envelope, SagaId};

use crate::audit::{self, Actor};

/// One message waiting in the dead-letter queue, decoded as far as it can be.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeadLetter {
    /// How operators name this message: its AMQP message ID, else `sha256:` and the hex SHA-256 of its body.
    pub id: String,
    /// The body as text (invalid UTF-8 replaced), since operators read it.
    pub body: String,
    /// The kind of message (the `type` of the envelope's body: `start_checkout`, `reserve`, ...), when the body
    /// is an envelope.
    pub kind: Option<String>,
    /// The saga the envelope belongs to, when the body is one.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub saga_id: Option<SagaId>,
    /// The envelope's body: the command, reply or outcome itself.
    #[schema(value_type = Option<Object>)]
    pub content: Option<Value>,
    /// The queue it was dead-lettered from, when RabbitMQ recorded one.
    pub original_queue: Option<String>,
    /// Why RabbitMQ dead-lettered it: `rejected`, `expired`, `delivery_limit`, ...
    pub reason: Option<String>,
    /// When it last died, from the `x-death` header (to the second).
    pub died_at: Option<DateTime<Utc>>,
    /// How often it died in its original queue.
    pub deaths: Option<i64>,
    /// The AMQP message ID, when the publisher set one.
    pub message_id: Option<String>,
}

/// What a replay of every message did.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct ReplayReport {
    /// Messages published back to their queue and removed from the dead-letter queue.
    pub replayed: usize,
    /// Messages left in the dead-letter queue because they name no work queue to go back to.
    pub skipped: usize,
}

/// What an action on one message came to.
#[derive(Debug)]
pub enum Taken {
    /// Done: the message, as it was before it left the queue.
    Done(Box<DeadLetter>),
    /// No message of that ID is waiting.
    NotFound,
    /// The message names no work queue to replay it to; it stays.
    NoQueue(Box<DeadLetter>),
}

/// What to do with the one message an operator chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Choice {
    Replay,
    Discard,
}

/// The dead-letter queue of one broker, and the audit log its operators' actions go to.
pub struct DeadLetters {
    broker: Broker,
    publisher: Arc<Publisher>,
    pool: Pool,
}

impl DeadLetters {
    /// Works on the dead-letter queue of `broker`, publishing replays through `publisher` and auditing in the
    /// database of `pool`.
    pub fn new(broker: Broker, publisher: Arc<Publisher>, pool: Pool) -> Self {
        Self { broker, publisher, pool }
    }

    /// Up to `limit` messages from the head of the queue, which stays as it was.
    pub async fn peek(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        let (connection, channel) = self.broker.connect().await?;
        let result = peek_on(&channel, limit).await;
        close(connection, channel).await;
        result
    }

    /// How many messages wait in the queue.
    pub async fn depth(&self) -> Result<u32> {
        let (connection, channel) = self.broker.connect().await?;
        let result = depth_on(&channel).await;
        close(connection, channel).await;
        result
    }

    /// Sends every message now in the queue back to the queue it died in, for `actor`. Messages dead-lettered
    /// again during the replay stay for the next one: only as many as were waiting at the start are taken.
    pub async fn replay(&self, actor: &Actor) -> Result<ReplayReport> {
        let (connection, channel) = self.broker.connect().await?;
        let result = self.replay_on(&channel).await;
        close(connection, channel).await;
        let report = result?;
        self.audit(actor, "replay_dead_letters", &None, json!({}), json!(report)).await?;
        Ok(report)
    }

    /// Sends message `id` back to the queue it died in, for `actor`; the others stay as they are.
    pub async fn replay_one(&self, id: &str, actor: &Actor) -> Result<Taken> {
        self.take(id, actor, Choice::Replay).await
    }

    /// Removes message `id` from the queue for good, for `actor`, keeping it in the audit log.
    pub async fn discard(&self, id: &str, actor: &Actor) -> Result<Taken> {
        self.take(id, actor, Choice::Discard).await
    }

    async fn take(&self, id: &str, actor: &Actor, choice: Choice) -> Result<Taken> {
        let (connection, channel) = self.broker.connect().await?;
        let result = self.take_on(&channel, id, actor, choice).await;
        close(connection, channel).await;
        result
    }

    async fn take_on(&self, channel: &Channel, id: &str, actor: &Actor, choice: Choice) -> Result<Taken> {
        let waiting = depth_on(channel).await?;
        let mut passed = None;
        let mut taken = Taken::NotFound;
        for _ in 0..waiting {
            let Some((get_ok, properties, body)) = get(channel).await? else { break };
            let tag = get_ok.delivery_tag();
            let letter = describe(&properties, &body);
            if letter.id != id {
                passed = Some(tag);
                continue;
            }
            taken = match (choice, letter.original_queue.as_deref().and_then(work_queue)) {
                (Choice::Replay, None) => Taken::NoQueue(Box::new(letter)),
                (Choice::Replay, Some(queue)) => {
                    self.republish(queue, &letter, body).await?;
                    channel.basic_ack(BasicAckArguments::new(tag, false)).await?;
                    let result = json!({ "replayed_to": queue });
                    self.audit(actor, "replay_dead_letter", &letter.saga_id, json!(letter), result).await?;
                    Taken::Done(Box::new(letter))
                }
                (Choice::Discard, _) => {
                    self.audit(actor, "discard_dead_letter", &letter.saga_id, json!(letter), json!({})).await?;
                    channel.basic_ack(BasicAckArguments::new(tag, false)).await?;
                    Taken::Done(Box::new(letter))
                }
            };
            break;
        }
        if let Some(tag) = passed {
            channel.basic_nack(BasicNackArguments::new(tag, true, true)).await?;
        }
        if let Taken::Done(letter) = &taken {
            tracing::info!(id, ?choice, saga_id = ?letter.saga_id, actor = %actor.name, "dead letter taken");
        }
        Ok(taken)
    }

    async fn republish(&self, queue: &str, letter: &DeadLetter, body: Vec<u8>) -> Result<()> {
        let message_id = letter.message_id.clone().unwrap_or_default();
        let outgoing = Outgoing { queue: queue.to_owned(), body, message_id, traceparent: None };
        self.publisher.publish(&[outgoing]).await.context("republishing a dead letter")
    }

    async fn audit(
        &self,
        actor: &Actor,
        action: &str,
        saga: &Option<SagaId>,
        details: Value,
        result: Value,
    ) -> Result<()> {
        let sagas: Vec<SagaId> = saga.iter().copied().collect();
        let mut conn = self.pool.get().await.context("reaching the database for the audit log")?;
        audit::record(&mut conn, actor, action, &sagas, &details, &result).await.context("writing the audit log")
    }

    async fn replay_on(&self, channel: &Channel) -> Result<ReplayReport> {
        let waiting = depth_on(channel).await?;
        let mut report = ReplayReport::default();
        let mut skipped_tags = Vec::new();
        for _ in 0..waiting {
            let Some((get_ok, properties, body)) = get(channel).await? else { break };
            let tag = get_ok.delivery_tag();
            let letter = describe(&properties, &body);
            match letter.original_queue.as_deref().and_then(work_queue) {
                Some(queue) => {
                    self.republish(queue, &letter, body).await?;
                    channel.basic_ack(BasicAckArguments::new(tag, false)).await?;
                    report.replayed += 1;
                }
                None => {
                    // Held unacked until the end, so that the next get moves past it.
                    skipped_tags.push(tag);
                    report.skipped += 1;
                }
            }
        }
        for tag in skipped_tags {
            channel.basic_nack(BasicNackArguments::new(tag, false, true)).await?;
        }
        tracing::info!(replayed = report.replayed, skipped = report.skipped, "dead letters replayed");
        Ok(report)
    }
}

async fn depth_on(channel: &Channel) -> Result<u32> {
    Ok(channel
        .queue_declare(QueueDeclareArguments::new(queues::DEAD_LETTERS).passive(true).finish())
        .await?
        .ok_or_else(|| anyhow!("no answer to a passive declare of {}", queues::DEAD_LETTERS))?
        .1)
}

async fn peek_on(channel: &Channel, limit: usize) -> Result<Vec<DeadLetter>> {
    let mut letters = Vec::new();
    let mut last_tag = None;
    while letters.len() < limit {
        let Some((get_ok, properties, body)) = get(channel).await? else { break };
        last_tag = Some(get_ok.delivery_tag());
        letters.push(describe(&properties, &body));
    }
    if let Some(tag) = last_tag {
        channel.basic_nack(BasicNackArguments::new(tag, true, true)).await?;
    }
    Ok(letters)
}

async fn get(channel: &Channel) -> Result<Option<(amqprs::GetOk, BasicProperties, Vec<u8>)>> {
    channel.basic_get(BasicGetArguments::new(queues::DEAD_LETTERS)).await.context("reading the dead-letter queue")
}

/// Closing requeues whatever is still unacked, so errors on the way out cannot lose a message.
async fn close(connection: Connection, channel: Channel) {
    let _ = channel.close().await;
    let _ = connection.close().await;
}

/// The work queue named `name`, if it is one: publishing to an unknown queue through the default exchange
/// would drop the message silently.
fn work_queue(name: &str) -> Option<&'static str> {
    queues::WORK_QUEUES.into_iter().find(|queue| *queue == name)
}

/// The name of a message without an AMQP message ID: its body's SHA-256.
fn content_id(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("sha256:{hex}")
}

fn describe(properties: &BasicProperties, body: &[u8]) -> DeadLetter {
    let death = properties.headers().and_then(latest_death);
    let text = |key: &str| death.as_ref().and_then(|d| field(d, key)).and_then(as_text);
    let message_id = properties.message_id().filter(|id| !id.is_empty()).cloned();
    // Any envelope, whatever its body: the queue holds the messages of every service.
    let envelope = serde_json::from_slice::<Envelope<Value>>(body).ok();
    DeadLetter {
        id: message_id.clone().unwrap_or_else(|| content_id(body)),
        body: String::from_utf8_lossy(body).into_owned(),
        kind: envelope.as_ref().and_then(|e| e.body.get("type")).and_then(Value::as_str).map(str::to_owned),
        saga_id: envelope.as_ref().map(|e| e.saga_id),
        content: envelope.map(|e| e.body),
        original_queue: text("queue"),
        reason: text("reason"),
        died_at: death.as_ref().and_then(|d| field(d, "time")).and_then(as_time),
        deaths: death.as_ref().and_then(|d| field(d, "count")).and_then(as_integer),
        message_id,
    }
}

/// The newest entry of the `x-death` header: RabbitMQ puts the latest death first.
fn latest_death(headers: &FieldTable) -> Option<FieldTable> {
    match field(headers, "x-death")? {
        FieldValue::A(entries) => Vec::<FieldValue>::from(entries.clone()).into_iter().find_map(|entry| match entry {
            FieldValue::F(table) => Some(table),
            _ => None,
        }),
        _ => None,
    }
}

fn field<'a>(table: &'a FieldTable, key: &str) -> Option<&'a FieldValue> {
    table.get(&key.try_into().ok()?)
}

fn as_text(value: &FieldValue) -> Option<String> {
    match value {
        FieldValue::S(text) => Some(text.as_ref().clone()),
        FieldValue::x(bytes) => Some(String::from_utf8_lossy(&Vec::<u8>::from(bytes.clone())).into_owned()),
        _ => None,
    }
}

/// An AMQP timestamp: seconds since the epoch.
fn as_time(value: &FieldValue) -> Option<DateTime<Utc>> {
    match value {
        FieldValue::T(seconds) => DateTime::from_timestamp(i64::try_from(*seconds).ok()?, 0),
        _ => None,
    }
}

fn as_integer(value: &FieldValue) -> Option<i64> {
    match value {
        FieldValue::l(n) => Some(*n),
        FieldValue::I(n) => Some(i64::from(*n)),
        FieldValue::i(n) => Some(i64::from(*n)),
        FieldValue::s(n) => Some(i64::from(*n)),
        FieldValue::u(n) => Some(i64::from(*n)),
        FieldValue::b(n) => Some(i64::from(*n)),
        FieldValue::B(n) => Some(i64::from(*n)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers_with_death(queue: &str) -> FieldTable {
        let mut death = FieldTable::new();
        death.insert("queue".try_into().unwrap(), FieldValue::S(queue.try_into().unwrap()));
        death.insert("reason".try_into().unwrap(), FieldValue::S("rejected".try_into().unwrap()));
        death.insert("count".try_into().unwrap(), FieldValue::l(2));
        death.insert("time".try_into().unwrap(), FieldValue::T(1_764_640_000));
        let mut headers = FieldTable::new();
        let deaths = vec![FieldValue::F(death)].try_into().unwrap();
        headers.insert("x-death".try_into().unwrap(), FieldValue::A(deaths));
        headers
    }

    #[test]
    fn the_original_queue_comes_from_the_latest_death() {
        let mut properties = BasicProperties::default();
        properties.with_headers(headers_with_death(queues::COORDINATOR)).with_message_id("m-1");
        let letter = describe(&properties, b"{\"x\":1}");
        assert_eq!(letter.original_queue.as_deref(), Some(queues::COORDINATOR));
        assert_eq!(letter.reason.as_deref(), Some("rejected"));
        assert_eq!(letter.deaths, Some(2));
        assert_eq!(letter.message_id.as_deref(), Some("m-1"));
        assert_eq!(letter.body, "{\"x\":1}");
        assert_eq!(letter.id, "m-1");
        assert_eq!(letter.died_at, DateTime::from_timestamp(1_764_640_000, 0));
        assert_eq!((letter.kind, letter.saga_id, letter.content), (None, None, None));
    }

    #[test]
    fn an_envelope_is_decoded_and_a_message_without_id_is_named_by_its_content() {
        let saga = SagaId::new();
        let envelope = Envelope::new(saga, shared_contracts::StockCommand::Release);
        let letter = describe(&BasicProperties::default(), &envelope.to_bytes());
        assert_eq!(letter.kind.as_deref(), Some("release"));
        assert_eq!(letter.saga_id, Some(saga));
        assert_eq!(letter.content, Some(json!({"type": "release"})));
        assert_eq!(letter.id, content_id(&envelope.to_bytes()));
        assert!(letter.id.starts_with("sha256:") && letter.id.len() == 7 + 64, "{}", letter.id);
        assert_ne!(content_id(b"a"), content_id(b"b"));
    }

    #[test]
    fn a_message_without_death_record_names_no_queue() {
        let letter = describe(&BasicProperties::default(), &[0xff, b'a']);
        assert_eq!(letter.original_queue, None);
        assert_eq!(letter.body, "\u{fffd}a");
    }

    #[test]
    fn only_work_queues_are_replay_targets() {
        assert_eq!(work_queue(queues::STOCK_COMMANDS), Some(queues::STOCK_COMMANDS));
        assert_eq!(work_queue(queues::DEAD_LETTERS), None);
        assert_eq!(work_queue("elsewhere"), None);
    }
}
