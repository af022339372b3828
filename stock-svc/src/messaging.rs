//! The saga worker: stock-svc's part in the checkout saga, the `participant` crate's [`Worker`] run with stock's
//! effect ([`Stock`]) and store ([`SagaSteps`]). It consumes [`StockCommand`]s from [`queues::STOCK_COMMANDS`]
//! and answers each with a [`StockReply`] on [`queues::COORDINATOR`]; this module only maps the protocol's words
//! to those messages.
//!
//! [`queues::STOCK_COMMANDS`]: shared_contracts::queues::STOCK_COMMANDS
//! [`queues::COORDINATOR`]: shared_contracts::queues::COORDINATOR

use participant::{Command, Participant, Reply, Words, Worker};
use shared_contracts::{CoordinatorMessage, LineItem, StockCommand, StockReply};

use crate::{domain::Stock, store::saga_steps::SagaSteps};

/// Reserves and releases the stock of checkouts on behalf of the coordinator.
pub type StockWorker = Worker<SagaSteps>;

impl Participant for Stock {
    const NAME: &'static str = "stock";
    const WORDS: Words =
        Words { step: "reserve", compensation: "release", applied: "reserved", compensated: "released" };
    type WireCommand = StockCommand;

    fn command(wire: StockCommand) -> Command<Vec<LineItem>> {
        command(wire)
    }

    fn to_coordinator(reply: Reply) -> CoordinatorMessage {
        CoordinatorMessage::Stock(reply_of(reply))
    }
}

/// `wire` in the protocol's words: a reservation is the step, a release its compensation.
pub fn command(wire: StockCommand) -> Command<Vec<LineItem>> {
    match wire {
        StockCommand::Reserve { items } => Command::Step(items),
        StockCommand::Release => Command::Compensate,
    }
}

/// `reply` as stock-svc answers it.
pub fn reply_of(reply: Reply) -> StockReply {
    match reply {
        Reply::Applied => StockReply::Reserved,
        Reply::Rejected { reason } => StockReply::Rejected { reason },
        Reply::Compensated => StockReply::Released,
        Reply::CannotApply { problem } => StockReply::CannotApply { problem },
    }
}
