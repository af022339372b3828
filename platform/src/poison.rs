//! What a consumer does with a batch of messages that failed: it holds the batch, unacked, and tries it again
//! until every message in it has a verdict, telling a poison message from an outage on the way.
//!
//! No message is ever given back to the broker because of a failure, so no failure counts towards a quorum
//! queue's delivery limit (see [`crate::amqp::DELIVERY_LIMIT`]): while the database is out of reach (connection
//! refused, closed, pool exhausted) the batch is tried again after a pause, for as long as it takes. When the
//! database refuses the batch, its messages are tried one at a time, so that one message the database refuses
//! cannot hold back the others. A message that fails alone because the database refused its statements (a check
//! violated, a value out of range, a row that does not parse) is a suspect; after [`POISON_ATTEMPTS`] such
//! failures it is dead-lettered. A failure to reach the database says nothing about the message and never
//! counts: an outage of any length must not send innocent messages to the dead letters.
//!
//! The batch goes back to the broker only when the link to it breaks while the batch is held (the broker then
//! redelivers its messages, counting one delivery each) or when the consumer is stopped; both are rare.

use std::{collections::HashMap, time::Duration};

use backon::{BackoffBuilder, ExponentialBuilder};
use diesel::result::{DatabaseErrorKind, Error as DieselError};

use crate::amqp::{BatchHandler, Delivery, Verdict};

/// How many times a message may fail alone, refused by the database, before it is dead-lettered.
pub const POISON_ATTEMPTS: u32 = 3;
/// The most suspects remembered at once; beyond it the oldest memory is dropped (a suspect then starts again).
const MAX_SUSPECTS: usize = 10_000;
/// The pause before a held batch is tried again after its first failure; it doubles after every failure.
const FIRST_PAUSE: Duration = Duration::from_millis(100);
/// The longest pause between two tries of a held batch, so also how long it may wait once the database is back:
/// the pause the consumer used to take before a failed batch was redelivered.
const MAX_PAUSE: Duration = Duration::from_millis(500);
/// Every this many tries of a held batch, it is logged again as a warning (about every 10 s).
const WARN_EVERY: u32 = 20;

/// Why a held batch was let go before every message in it had a verdict.
#[derive(Debug, thiserror::Error)]
pub enum Abandoned {
    /// The channel or connection the batch came on closed: the broker gives its messages to a consumer again.
    #[error("the link to RabbitMQ broke while a failed batch was held; the broker delivers it again")]
    LinkLost,
    /// The handler broke its contract of one verdict per delivery.
    #[error("the handler returned {got} verdicts for {expected} messages")]
    WrongVerdicts {
        /// The verdicts it returned.
        got: usize,
        /// The deliveries it was given.
        expected: usize,
    },
}

/// Handles `batch`, whose first try failed with `error`, until every message in it has a verdict, and returns
/// them, in order. The batch stays unacked meanwhile; before every try after a pause `link_open` is asked
/// whether its channel still is, and when it is not, the batch is given up to the broker, which delivers it again.
///
/// Each try takes the messages still without a verdict. While the last failure was an outage they are tried
/// together (they most likely all go through once the database answers); when the database refused them, one at
/// a time, and a message refused alone [`POISON_ATTEMPTS`] times is given the verdict
/// [`Verdict::DeadLetter`]. A message that went through keeps its verdict and is not handled again.
pub async fn recover<H: BatchHandler>(
    handler: &H,
    batch: &[Delivery],
    error: anyhow::Error,
    link_open: impl Fn() -> bool,
) -> Result<Vec<Verdict>, Abandoned> {
    let mut held = Held { verdicts: vec![None; batch.len()], suspects: Suspects::default() };
    let mut outage = !is_refusal(&error);
    tracing::warn!(error = %format!("{error:#}"), size = batch.len(), "batch failed, holding it until it goes through");
    // A batch of one was already tried alone; a larger one the database refused is tried one by one at once.
    let mut pause_first = outage || batch.len() == 1;
    if batch.len() == 1 {
        held.failed_alone(0, &batch[0], &error);
    }
    let mut pauses =
        ExponentialBuilder::new().with_min_delay(FIRST_PAUSE).with_max_delay(MAX_PAUSE).without_max_times().build();
    let started = std::time::Instant::now();
    let mut tries = 0u32;
    loop {
        let pending = held.pending();
        if pending.is_empty() {
            tracing::info!(size = batch.len(), after = ?started.elapsed(), "held batch went through");
            return Ok(held.verdicts.into_iter().flatten().collect());
        }
        if pause_first {
            tokio::time::sleep(pauses.next().unwrap_or(MAX_PAUSE)).await;
            if !link_open() {
                return Err(Abandoned::LinkLost);
            }
        }
        pause_first = true;
        tries += 1;
        if tries.is_multiple_of(WARN_EVERY) {
            tracing::warn!(tries, pending = pending.len(), after = ?started.elapsed(), "held batch still failing");
        }
        if outage && pending.len() > 1 {
            let together: Vec<Delivery> = pending.iter().map(|&i| batch[i].clone()).collect();
            match handler.handle(&together).await {
                Ok(verdicts) => held.went_through(&pending, batch, verdicts)?,
                Err(e) if is_refusal(&e) => (outage, pause_first) = (false, false),
                Err(e) => tracing::debug!(error = %format!("{e:#}"), "held batch failed again"),
            }
            continue;
        }
        outage = false;
        for i in pending {
            match handler.handle(std::slice::from_ref(&batch[i])).await {
                Ok(verdicts) => held.went_through(&[i], batch, verdicts)?,
                // The database is out of reach: the messages after this one would fail the same way.
                Err(e) if !is_refusal(&e) => {
                    tracing::debug!(error = %format!("{e:#}"), "held message failed again");
                    outage = true;
                    break;
                }
                Err(e) => held.failed_alone(i, &batch[i], &e),
            }
        }
    }
}

/// The verdicts of a held batch so far, and its suspects.
struct Held {
    verdicts: Vec<Option<Verdict>>,
    suspects: Suspects,
}

impl Held {
    /// The positions of the messages without a verdict yet.
    fn pending(&self) -> Vec<usize> {
        (0..self.verdicts.len()).filter(|&i| self.verdicts[i].is_none()).collect()
    }

    /// Records the `verdicts` of the messages at `positions` of `batch`, which went through.
    fn went_through(
        &mut self,
        positions: &[usize],
        batch: &[Delivery],
        verdicts: Vec<Verdict>,
    ) -> Result<(), Abandoned> {
        if verdicts.len() != positions.len() {
            return Err(Abandoned::WrongVerdicts { got: verdicts.len(), expected: positions.len() });
        }
        for (&i, verdict) in positions.iter().zip(verdicts) {
            self.suspects.succeeded(&batch[i].body);
            self.verdicts[i] = Some(verdict);
        }
        Ok(())
    }

    /// Records that `delivery`, at position `i`, failed alone with `error`; dead-letters it once it is poison.
    fn failed_alone(&mut self, i: usize, delivery: &Delivery, error: &anyhow::Error) {
        if self.suspects.failed(&delivery.body, error) {
            self.verdicts[i] =
                Some(Verdict::DeadLetter(format!("refused by the database {POISON_ATTEMPTS} times: {error:#}")));
        }
    }
}

/// Whether `error` says the database refused what was asked (so asking again the same way fails again), as
/// opposed to the database being out of reach or the transaction losing a race that a retry wins.
pub fn is_refusal(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| match cause.downcast_ref::<DieselError>() {
        Some(DieselError::DatabaseError(kind, _)) => !matches!(
            kind,
            DatabaseErrorKind::ClosedConnection
                | DatabaseErrorKind::UnableToSendCommand
                | DatabaseErrorKind::SerializationFailure
                | DatabaseErrorKind::ReadOnlyTransaction
        ),
        Some(DieselError::DeserializationError(_) | DieselError::SerializationError(_)) => true,
        _ => false,
    })
}

/// The messages that failed alone, refused by the database, and how often.
#[derive(Debug, Default)]
pub struct Suspects {
    failures: HashMap<u64, u32>,
}

impl Suspects {
    /// Records that the message with `body` failed alone with `error`; returns whether it is now to be
    /// dead-lettered. Failures that are not refusals are not counted.
    pub fn failed(&mut self, body: &[u8], error: &anyhow::Error) -> bool {
        if !is_refusal(error) {
            return false;
        }
        if self.failures.len() >= MAX_SUSPECTS {
            self.failures.clear();
        }
        let count = self.failures.entry(fingerprint(body)).or_default();
        *count += 1;
        if *count >= POISON_ATTEMPTS {
            self.failures.remove(&fingerprint(body));
            return true;
        }
        false
    }

    /// Forgets the message with `body`: it went through.
    pub fn succeeded(&mut self, body: &[u8]) {
        if !self.failures.is_empty() {
            self.failures.remove(&fingerprint(body));
        }
    }
}

fn fingerprint(body: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    body.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused() -> anyhow::Error {
        let info = Box::new("new row violates check constraint".to_owned());
        anyhow::Error::new(DieselError::DatabaseError(DatabaseErrorKind::CheckViolation, info))
            .context("recording a batch")
    }

    fn unreachable() -> anyhow::Error {
        let info = Box::new("connection closed".to_owned());
        anyhow::Error::new(DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, info))
    }

    #[test]
    fn a_message_refused_alone_again_and_again_is_poison() {
        let mut suspects = Suspects::default();
        let verdicts: Vec<bool> = (0..POISON_ATTEMPTS).map(|_| suspects.failed(b"bad", &refused())).collect();
        assert_eq!(verdicts.iter().filter(|poison| **poison).count(), 1);
        assert_eq!(verdicts.last(), Some(&true));
    }

    #[test]
    fn an_outage_never_makes_a_message_poison() {
        let mut suspects = Suspects::default();
        for _ in 0..10 * POISON_ATTEMPTS {
            assert!(!suspects.failed(b"innocent", &unreachable()));
            assert!(!suspects.failed(b"innocent", &anyhow::anyhow!("no database connection")));
        }
    }

    #[test]
    fn a_success_in_between_starts_the_count_again() {
        let mut suspects = Suspects::default();
        for _ in 0..3 * POISON_ATTEMPTS {
            assert!(!suspects.failed(b"flaky", &refused()));
            suspects.succeeded(b"flaky");
        }
    }
}
