//! The dead-letter queue as operators see it: look at what is waiting there without taking it away, and send
//! every message back to the queue it died in once the cause is fixed.
//!
//! Looking is a `basic_get` with manual acks, message after message on one channel (unacked messages are not
//! handed out twice), followed by one `basic_nack` with requeue, so the queue ends as it was. Replaying takes the
//! same path but publishes each message to its original queue, read from the `x-death` header RabbitMQ adds
//! when it dead-letters, with confirms, and acks it only once the broker has confirmed the copy: a crash in
//! between leaves a duplicate, never a loss, and every consumer is idempotent.

use std::sync::Arc;

use amqprs::{
    channel::{BasicAckArguments, BasicGetArguments, BasicNackArguments, Channel, QueueDeclareArguments},
    connection::Connection,
    BasicProperties, FieldTable, FieldValue,
};
use anyhow::{anyhow, Context, Result};
use platform::amqp::{Broker, Outgoing, Publisher};
use serde::Serialize;
use shared_contracts::queues;

/// One message waiting in the dead-letter queue.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeadLetter {
    /// The body as text (invalid UTF-8 replaced), since operators read it.
    pub body: String,
    /// The queue it was dead-lettered from, when RabbitMQ recorded one.
    pub original_queue: Option<String>,
    /// Why RabbitMQ dead-lettered it: `rejected`, `expired`, ...
    pub reason: Option<String>,
    /// How often it died in its original queue.
    pub deaths: Option<i64>,
    /// The AMQP message ID, when the publisher set one.
    pub message_id: Option<String>,
}

/// What a replay did.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct ReplayReport {
    /// Messages published back to their queue and removed from the dead-letter queue.
    pub replayed: usize,
    /// Messages left in the dead-letter queue because they name no work queue to go back to.
    pub skipped: usize,
}

/// The dead-letter queue of one broker.
pub struct DeadLetters {
    broker: Broker,
    publisher: Arc<Publisher>,
}

impl DeadLetters {
    /// Works on the dead-letter queue of `broker`, publishing replays through `publisher`.
    pub fn new(broker: Broker, publisher: Arc<Publisher>) -> Self {
        Self { broker, publisher }
    }

    /// Up to `limit` messages from the head of the queue, which stays as it was.
    pub async fn peek(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        let (connection, channel) = self.broker.connect().await?;
        let result = peek_on(&channel, limit).await;
        close(connection, channel).await;
        result
    }

    /// Sends every message now in the queue back to the queue it died in. Messages dead-lettered again during
    /// the replay stay for the next one: only as many as were waiting at the start are taken.
    pub async fn replay(&self) -> Result<ReplayReport> {
        let (connection, channel) = self.broker.connect().await?;
        let result = self.replay_on(&channel).await;
        close(connection, channel).await;
        result
    }

    async fn replay_on(&self, channel: &Channel) -> Result<ReplayReport> {
        let waiting = channel
            .queue_declare(QueueDeclareArguments::new(queues::DEAD_LETTERS).passive(true).finish())
            .await?
            .ok_or_else(|| anyhow!("no answer to a passive declare of {}", queues::DEAD_LETTERS))?
            .1;
        let mut report = ReplayReport::default();
        let mut skipped_tags = Vec::new();
        for _ in 0..waiting {
            let Some((get_ok, properties, body)) = get(channel).await? else { break };
            let tag = get_ok.delivery_tag();
            let letter = describe(&properties, &body);
            match letter.original_queue.as_deref().and_then(work_queue) {
                Some(queue) => {
                    let message_id = letter.message_id.unwrap_or_default();
                    let outgoing = Outgoing { queue: queue.to_owned(), body, message_id, traceparent: None };
                    self.publisher.publish(&[outgoing]).await.context("republishing a dead letter")?;
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

fn describe(properties: &BasicProperties, body: &[u8]) -> DeadLetter {
    let death = properties.headers().and_then(latest_death);
    let text = |key: &str| death.as_ref().and_then(|d| field(d, key)).and_then(as_text);
    DeadLetter {
        body: String::from_utf8_lossy(body).into_owned(),
        original_queue: text("queue"),
        reason: text("reason"),
        deaths: death.as_ref().and_then(|d| field(d, "count")).and_then(as_integer),
        message_id: properties.message_id().cloned(),
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
