//! The saga participant protocol, written once for every participant of the checkout saga (stock-svc and
//! payment-svc): do the step, compensate it, leave a tombstone when the compensation comes first, and repeat the
//! recorded reply on a redelivery or duplicate.
//!
//! - [`protocol`]: the record of one saga, the commands and replies, and the pure [`decide`].
//! - [`plan`]: the pure [`plan_batch`], which applies a whole batch of commands in memory, in order.
//! - [`effect`]: the [`Effect`] a participant supplies: what a step takes from its resources and a compensation
//!   gives back. It is the only thing that differs between participants, besides where they keep their data.
//! - [`storage`]: the narrow [`Storage`] trait each participant's store implements with its own SQL, and the one
//!   transaction [`apply_batch`] that locks, plans and writes a batch.
//! - [`worker`]: the one [`Worker`] consuming a participant's commands, with the mapping to its wire messages
//!   ([`Participant`]), one poison-message policy and one set of metrics labelled by participant.
//!
//! To add a participant: implement [`Effect`] in its domain, [`Storage`] in its store and [`Participant`] in its
//! messaging, and run a [`Worker`] on its command queue.

pub mod effect;
pub mod plan;
pub mod protocol;
pub mod storage;
pub mod worker;

#[cfg(test)]
mod shelf;

pub use effect::{Changes, Effect, Held};
pub use plan::{keys_to_lock, plan_batch, BatchPlan, NewRecord, NotApplied, Outcome, Recorded};
pub use protocol::{decide, Action, Command, Record, Reply};
pub use storage::{apply_batch, Storage};
pub use worker::{Participant, Words, Worker};
