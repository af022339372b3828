//! The saga coordinator: keeps a persisted state machine per checkout and drives it.
//!
//! order-svc records a checkout intent and sends `StartCheckout`; the coordinator creates the saga, and from then
//! on every message it consumes (participant replies) and every retry timer that fires is an event applied by the
//! pure [`domain::transition`] by one small loop, the engine. Each transition is committed with its history row
//! in one transaction, and the commands it emits are published after the commit (see [`platform::dispatch`]). On
//! restart nothing needs replaying: unacked messages are redelivered, [`recovery`] re-sends the commands a saga
//! still waits on, and order-svc asks again for an outcome it has not heard, which a finished saga then reports
//! once more.
//!
//! - [`config`]: settings from the environment.
//! - [`audit`]: who acts on sagas.
//! - [`domain`]: the state machine.
//! - `engine`: the loop around it (lock, transition, persist, return the commands), written against the narrow
//!   [`store::SagaStore`] trait, so that it is tested without a database.
//! - [`store`]: sagas and their history in PostgreSQL, behind that trait, and the operators' reads.
//! - [`messaging`]: the consumer of the coordinator queue and the encoding of commands; the only module that
//!   knows queues and envelopes.
//! - [`recovery`]: the retry timer.
//! - [`dead_letters`]: the dead-letter queue for operators: look, replay, discard.
//! - [`retention`]: the pruning of sagas that ended long ago.
//! - [`gauges`]: the saga and dead-letter gauges operators alert on.
//! - [`operations`]: what operators do to a saga (retry, abort), through the same engine.
//! - [`bulk`]: the same to every saga a filter matches, with a dry run.
//! - `http`: the admin API, the operator pages, and the one middleware that guards them.
//! - [`startup`]: the wiring of all of the above.

pub mod audit;
pub mod bulk;
pub mod config;
pub mod dead_letters;
pub mod domain;
mod engine;
pub mod gauges;
mod http;
pub mod messaging;
pub mod operations;
pub mod recovery;
pub mod retention;
pub mod startup;
pub mod store;
