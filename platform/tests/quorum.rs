//! The consumer on quorum queues with a low delivery limit: a database outage longer than the limit and a poison
//! message in a batch of innocent ones dead-letter nothing innocent and handle every message once, while a
//! message whose consumer dies every time is still dead-lettered by the broker once it reaches the limit.
#![cfg(feature = "testing")]

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU32, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use amqprs::channel::BasicGetArguments;
use anyhow::Result;
use async_trait::async_trait;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use platform::{
    amqp::{consume, BatchHandler, Broker, ConsumerSettings, Delivery, Outgoing, Publisher, Verdict},
    testing::{eventually, eventually_ok, fresh_vhost},
};
use shared_contracts::queues::DEAD_LETTERS;

/// The work queue of these tests.
const QUEUE: &str = "quorum_test_work";
/// A delivery limit low enough that the old way of handling a failed batch (requeue it) would have crossed it.
const LIMIT: u32 = 2;
/// Long enough for anything these tests wait for; they finish in a few seconds.
const WITHIN: Duration = Duration::from_secs(20);

/// A quorum-queue broker on a vhost of its own, with [`LIMIT`] as the delivery limit.
async fn quorum_broker() -> Broker {
    let url = fresh_vhost().await.expect("a test vhost");
    let broker = Broker::new(&url, "quorum-test", &[QUEUE]).expect("a broker").with_quorum_queues(LIMIT);
    let (connection, channel) = broker.connect().await.expect("declaring the quorum queues");
    let _ = channel.close().await;
    let _ = connection.close().await;
    broker
}

/// Publishes each body as a message of its own.
async fn publish_each(publisher: &Publisher, bodies: &[Vec<u8>]) {
    for body in bodies {
        publisher.publish(&[message(body)]).await.expect("publishing");
    }
}

fn message(body: &[u8]) -> Outgoing {
    Outgoing { queue: QUEUE.into(), body: body.to_vec(), message_id: "m".into(), traceparent: None }
}

fn bodies(names: &[&str]) -> Vec<Vec<u8>> {
    names.iter().map(|name| name.as_bytes().to_vec()).collect()
}

/// Waits until `handler` has handled `expected` messages and the dead-letter queue holds `dead` ones.
async fn settled(broker: &Broker, record: &Record, expected: usize, dead: u32) {
    let what = format!("{expected} messages handled and {dead} dead-lettered");
    eventually_ok(&what, WITHIN, async || {
        let handled = record.handled.lock().expect("not poisoned").len();
        Ok((handled >= expected && broker.queue_depth(DEAD_LETTERS).await? >= dead).then_some(()))
    })
    .await
    .expect("the broker answers");
}

/// What a test handler saw: the bodies it handled successfully, and whether any delivery came back.
#[derive(Default)]
struct Record {
    handled: Mutex<Vec<Vec<u8>>>,
    saw_a_redelivery: AtomicBool,
}

impl Record {
    fn saw(&self, batch: &[Delivery]) {
        if batch.iter().any(|delivery| delivery.redelivered) {
            self.saw_a_redelivery.store(true, Ordering::SeqCst);
        }
    }

    fn handled(&self, batch: &[Delivery]) -> Vec<Verdict> {
        self.handled.lock().expect("not poisoned").extend(batch.iter().map(|delivery| delivery.body.clone()));
        vec![Verdict::Done; batch.len()]
    }

    fn handled_sorted(&self) -> Vec<Vec<u8>> {
        let mut handled = self.handled.lock().expect("not poisoned").clone();
        handled.sort();
        handled
    }
}

/// Fails its first `outage` calls as a lost database connection does, then handles everything.
struct DatabaseComesBack {
    outage: AtomicU32,
    record: Record,
}

#[async_trait]
impl BatchHandler for DatabaseComesBack {
    async fn handle(&self, batch: &[Delivery]) -> Result<Vec<Verdict>> {
        self.record.saw(batch);
        if self.outage.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| left.checked_sub(1)).is_ok() {
            let info = Box::new("server closed the connection unexpectedly".to_owned());
            return Err(DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, info).into());
        }
        Ok(self.record.handled(batch))
    }
}

/// Refuses, as a violated check constraint does, every batch that holds the poison message.
struct RefusesPoison {
    poison: Vec<u8>,
    record: Record,
}

#[async_trait]
impl BatchHandler for RefusesPoison {
    async fn handle(&self, batch: &[Delivery]) -> Result<Vec<Verdict>> {
        self.record.saw(batch);
        if batch.iter().any(|delivery| delivery.body == self.poison) {
            let info = Box::new("new row violates check constraint".to_owned());
            return Err(DieselError::DatabaseError(DatabaseErrorKind::CheckViolation, info).into());
        }
        Ok(self.record.handled(batch))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outage_longer_than_the_delivery_limit_dead_letters_nothing_and_handles_each_message_once() {
    let broker = quorum_broker().await;
    let sent = bodies(&["m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8"]);
    publish_each(&Publisher::new(broker.clone()), &sent).await;
    let failures = 2 * LIMIT + 1;
    let handler = Arc::new(DatabaseComesBack { outage: AtomicU32::new(failures), record: Record::default() });

    let consumer = tokio::spawn(consume(broker.clone(), QUEUE, ConsumerSettings::default(), handler.clone()));
    settled(&broker, &handler.record, sent.len(), 0).await;
    consumer.abort();

    assert_eq!(handler.outage.load(Ordering::SeqCst), 0, "the handler failed {failures} times");
    assert_eq!(broker.queue_depth(DEAD_LETTERS).await.expect("the broker answers"), 0, "nothing is dead-lettered");
    assert_eq!(handler.record.handled_sorted(), sent, "every message is handled exactly once");
    assert!(!handler.record.saw_a_redelivery.load(Ordering::SeqCst), "no message was given back to the queue");
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_poison_message_of_a_batch_is_dead_lettered_and_the_others_are_handled_once() {
    let broker = quorum_broker().await;
    let publisher = Publisher::new(broker.clone());
    // One bundle is one delivery, so these three are certainly one batch.
    let batch = bodies(&["before", "poison", "after"]);
    publisher.publish(&batch.iter().map(|body| message(body)).collect::<Vec<_>>()).await.expect("publishing");
    let alone = bodies(&["alone-1", "alone-2"]);
    publish_each(&publisher, &alone).await;
    let handler = Arc::new(RefusesPoison { poison: b"poison".to_vec(), record: Record::default() });

    let innocent = bodies(&["after", "alone-1", "alone-2", "before"]);
    let consumer = tokio::spawn(consume(broker.clone(), QUEUE, ConsumerSettings::default(), handler.clone()));
    settled(&broker, &handler.record, innocent.len(), 1).await;
    consumer.abort();

    assert_eq!(
        broker.queue_depth(DEAD_LETTERS).await.expect("the broker answers"),
        1,
        "only the poison is dead-lettered"
    );
    let (connection, channel) = broker.connect().await.expect("connecting");
    let (_, _, dead) = channel
        .basic_get(BasicGetArguments::new(DEAD_LETTERS).no_ack(true).finish())
        .await
        .expect("reading the dead letters")
        .expect("a dead letter");
    assert_eq!(dead, b"poison");
    let _ = connection.close().await;
    assert_eq!(handler.record.handled_sorted(), innocent, "every innocent message is handled exactly once");
    assert!(!handler.record.saw_a_redelivery.load(Ordering::SeqCst), "no message was given back to the queue");
}

/// A message taken from the work queue and held unacked on its connection, or the sign that the broker
/// dead-lettered it.
enum Taken {
    Held(amqprs::connection::Connection, amqprs::channel::Channel),
    DeadLettered,
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_whose_consumer_dies_every_time_is_dead_lettered_at_the_delivery_limit() {
    let broker = quorum_broker().await;
    Publisher::new(broker.clone()).publish(&[message(b"kills its consumer")]).await.expect("publishing");

    let mut deliveries = 0;
    loop {
        let taken = eventually_ok("the message back in its queue or dead-lettered", WITHIN, async || {
            let (connection, channel) = broker.connect().await?;
            if channel.basic_get(BasicGetArguments::new(QUEUE)).await?.is_some() {
                return Ok(Some(Taken::Held(connection, channel)));
            }
            let _ = connection.close().await;
            Ok((broker.queue_depth(DEAD_LETTERS).await? == 1).then_some(Taken::DeadLettered))
        })
        .await
        .expect("the broker answers");
        match taken {
            // A consumer that dies without acking: the broker takes the message back and counts it.
            Taken::Held(connection, channel) => {
                deliveries += 1;
                assert!(deliveries <= LIMIT + 1, "delivered {deliveries} times, past the limit of {LIMIT}");
                drop(channel);
                let _ = connection.close().await;
            }
            Taken::DeadLettered => break,
        }
    }
    assert_eq!(deliveries, LIMIT + 1, "handed out once and given back {LIMIT} times before it is dead-lettered");
    eventually("nothing left in the work queue", WITHIN, async || {
        (broker.queue_depth(QUEUE).await.ok()? == 0).then_some(())
    })
    .await;
}

/// Counts the messages it handles.
#[derive(Default)]
struct Counts(Mutex<std::collections::BTreeSet<Vec<u8>>>);

#[async_trait]
impl BatchHandler for Counts {
    async fn handle(&self, batch: &[Delivery]) -> Result<Vec<Verdict>> {
        self.0.lock().expect("not poisoned").extend(batch.iter().map(|delivery| delivery.body.clone()));
        Ok(vec![Verdict::Done; batch.len()])
    }
}

/// Runs `scripts/rabbitmq-cluster.sh` with `args` and returns what it printed.
fn cluster_script(args: &[&str]) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/rabbitmq-cluster.sh");
    let output = std::process::Command::new(script).args(args).output().expect("running the cluster script");
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Against the cluster of `scripts/rabbitmq-cluster.sh start 3` (run it first): a quorum queue declared through
/// the proxy keeps taking and delivering messages while the node that leads it is killed with SIGKILL.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs scripts/rabbitmq-cluster.sh start 3; run with --ignored"]
async fn through_the_cluster_proxy_a_quorum_queue_outlives_a_killed_node() {
    let url = cluster_script(&["url"]).trim().to_owned();
    let queue: &'static str = Box::leak(platform::testing::unique_name("cluster").into_boxed_str());
    let broker = Broker::new(&url, "cluster-probe", Box::leak(Box::new([queue])))
        .expect("a broker")
        .with_quorum_queues(platform::amqp::DELIVERY_LIMIT);
    let publisher = Publisher::new(broker.clone());
    let counts = Arc::new(Counts::default());
    let consumer = tokio::spawn(consume(broker.clone(), queue, ConsumerSettings::default(), counts.clone()));
    let send = async |from: u32, to: u32| {
        for n in from..to {
            let message = Outgoing {
                queue: queue.into(),
                body: n.to_be_bytes().to_vec(),
                message_id: "m".into(),
                traceparent: None,
            };
            // A publish caught by the kill fails; sending it again is what the services do.
            eventually_ok("a confirmed publish", WITHIN, async || {
                publisher.publish(std::slice::from_ref(&message)).await.map(Some)
            })
            .await
            .expect("publishing through the proxy");
        }
    };
    let consumed = async |count: usize| {
        eventually("the messages consumed", WITHIN, async || {
            (counts.0.lock().expect("not poisoned").len() >= count).then_some(())
        })
        .await
    };

    send(0, 500).await;
    consumed(500).await;
    let vhost = url.rsplit('/').next().expect("a vhost");
    let leaders = cluster_script(&["ctl", "1", "list_queues", "-p", vhost, "--no-table-headers", "name", "leader"]);
    let leader =
        leaders.lines().find_map(|line| line.strip_prefix(queue)).expect("the queue's leader").trim().to_owned();
    let index = leader.trim_start_matches("wdm-").split('@').next().expect("a node number").to_owned();
    println!("killing {leader}, the leader of {queue}");
    cluster_script(&["kill", &index]);
    let started = std::time::Instant::now();
    send(500, 1000).await;
    consumed(1000).await;
    println!("1000 messages consumed, 500 of them sent after the kill, {:?} after it", started.elapsed());
    consumer.abort();
    cluster_script(&["revive", &index]);
}
