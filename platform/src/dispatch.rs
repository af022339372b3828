//! Messages derived from committed state. A service that must send messages because of a database change commits
//! the change first, then hands the messages to a [`Dispatcher`], which publishes them with confirms in the
//! background while the caller goes on with its next batch. A stopping service flushes its dispatchers
//! ([`Dispatcher::flush`]) once nothing hands them messages any more.
//!
//! Nothing about the message itself is written down: the committed state it was derived from is the record, and
//! the service that owns that state sends the message again whenever it may have been lost (a failed publish, a
//! process killed before the publish, a broker restart): the coordinator's retry timer re-sends the commands a saga
//! still waits on, stock-svc and payment-svc repeat their recorded reply to a re-sent command, and order-svc
//! re-sends the start of a checkout that has not heard its outcome, which a finished saga answers by reporting it
//! again. Receivers are idempotent, so a message that arrives twice is harmless. This is what a transactional
//! outbox would give, without a row per message to insert, read back and delete.

use std::{future::Future, sync::Arc, time::Duration};

use tokio::sync::Semaphore;

use crate::amqp::{Outgoing, Publisher};

/// Handed-over batches published at once, each waiting for its own confirms.
const MAX_IN_FLIGHT: usize = 4;

/// Publishes messages whose state has committed, without making the caller wait for the broker.
#[derive(Clone)]
pub struct Dispatcher {
    publisher: Arc<Publisher>,
    in_flight: Arc<Semaphore>,
}

impl Dispatcher {
    /// A dispatcher publishing through `publisher`.
    pub fn new(publisher: Arc<Publisher>) -> Self {
        Self { publisher, in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)) }
    }

    /// Publishes `messages`, whose state has committed, in the background. Waits only while [`MAX_IN_FLIGHT`]
    /// earlier batches still wait for their confirms, so a slow broker slows the caller down instead of piling up
    /// messages. A failure is logged and left to the owner of the state, which sends the messages again.
    pub async fn send(&self, messages: Vec<Outgoing>) {
        if messages.is_empty() {
            return;
        }
        let permit = self.in_flight.clone().acquire_owned().await.expect("the semaphore is never closed");
        let publisher = self.publisher.clone();
        tokio::spawn(async move {
            if let Err(e) = publisher.publish(&messages).await {
                tracing::warn!(
                    error = %format!("{e:#}"),
                    messages = messages.len(),
                    "publishing after a commit failed; they will be sent again from the committed state"
                );
            }
            drop(permit);
        });
    }

    /// Waits until every batch handed over so far, through this dispatcher or its clones, has been published or
    /// has failed; the application calls it when it stops, so that a commit's messages leave before the process.
    pub async fn flush(&self) {
        let _all = self.in_flight.acquire_many(MAX_IN_FLIGHT as u32).await.expect("the semaphore is never closed");
    }
}

/// Runs `pass` for ever, the way the timers that send lost messages again run: again at once while a pass handled
/// a full `batch` (a backlog), after `tick` otherwise, and a second after a failure (database or broker down),
/// which is logged as `what` failing.
pub async fn repeat_passes<F, Fut>(what: &str, tick: Duration, batch: usize, mut pass: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<usize>>,
{
    loop {
        match pass().await {
            Ok(n) if n >= batch => continue,
            Ok(_) => tokio::time::sleep(tick).await,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "{what} failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
