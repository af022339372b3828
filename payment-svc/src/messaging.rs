//! The saga worker: payment-svc's part in the checkout saga, the `participant` crate's [`Worker`] run with
//! payment's effect ([`Payment`]) and store ([`SagaPayments`]). It consumes [`PaymentCommand`]s from
//! [`queues::PAYMENT_COMMANDS`] and answers each with a [`PaymentReply`] on [`queues::COORDINATOR`]; this module
//! only maps the protocol's words to those messages.
//!
//! [`queues::PAYMENT_COMMANDS`]: shared_contracts::queues::PAYMENT_COMMANDS
//! [`queues::COORDINATOR`]: shared_contracts::queues::COORDINATOR

use participant::{Command, Participant, Reply, Words, Worker};
use shared_contracts::{CoordinatorMessage, PaymentCommand, PaymentReply};

use crate::{
    domain::{Charge, Payment},
    store::saga::SagaPayments,
};

/// Charges and refunds checkouts on behalf of the coordinator.
pub type PaymentWorker = Worker<SagaPayments>;

impl Participant for Payment {
    const NAME: &'static str = "payment";
    const WORDS: Words = Words { step: "charge", compensation: "refund", applied: "charged", compensated: "refunded" };
    type WireCommand = PaymentCommand;

    fn command(wire: PaymentCommand) -> Command<Charge> {
        command(wire)
    }

    fn to_coordinator(reply: Reply) -> CoordinatorMessage {
        CoordinatorMessage::Payment(reply_of(reply))
    }
}

/// `wire` in the protocol's words: a charge is the step, a refund its compensation.
pub fn command(wire: PaymentCommand) -> Command<Charge> {
    match wire {
        PaymentCommand::Charge { user_id, order_id, amount } => Command::Step(Charge { user_id, order_id, amount }),
        PaymentCommand::Refund => Command::Compensate,
    }
}

/// `reply` as payment-svc answers it.
pub fn reply_of(reply: Reply) -> PaymentReply {
    match reply {
        Reply::Applied => PaymentReply::Charged,
        Reply::Rejected { reason } => PaymentReply::Rejected { reason },
        Reply::Compensated => PaymentReply::Refunded,
        Reply::CannotApply { problem } => PaymentReply::CannotApply { problem },
    }
}
