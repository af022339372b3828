//! Telling a poison message from an outage. When a batch of messages fails, the consumer retries its messages one
//! at a time, so that one message the database refuses cannot hold back the others. A message that then fails
//! alone because the database refused its statements (a check violated, a value out of range, a row that does not
//! parse) is a suspect; after [`POISON_ATTEMPTS`] such failures it is dead-lettered instead of being redelivered
//! for ever. A failure to reach the database (connection refused, closed, pool exhausted) says nothing about the
//! message and never counts: an outage of any length must not send innocent messages to the dead letters.

use std::collections::HashMap;

use diesel::result::{DatabaseErrorKind, Error as DieselError};

/// How many times a message may fail alone, refused by the database, before it is dead-lettered.
pub const POISON_ATTEMPTS: u32 = 3;
/// The most suspects remembered at once; beyond it the oldest memory is dropped (a suspect then starts again).
const MAX_SUSPECTS: usize = 10_000;

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

/// The messages of one consumer that failed alone, refused by the database, and how often.
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
