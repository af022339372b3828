//! The contract between the services of the checkout backend.
//!
//! Everything that crosses a process boundary over RabbitMQ is defined here: the queue names, the message
//! envelope every message travels in, and the command, reply and outcome types of the checkout saga. Messages are
//! serialised one way only, as JSON through [`Envelope::to_bytes`] and [`Envelope::from_bytes`], and carry a
//! [`CONTRACT_VERSION`] so that a service can refuse a message it does not understand instead of misreading it.
//!
//! The flow of one checkout (see `docs/saga.md`):
//! order-svc --[`CoordinatorMessage::StartCheckout`]--> coordinator --[`StockCommand`], [`PaymentCommand`]-->
//! stock-svc, payment-svc --[`CoordinatorMessage::Stock`], [`CoordinatorMessage::Payment`]--> coordinator
//! --[`CheckoutOutcome`]--> order-svc.
//!
//! The cancellation of a paid order runs as the same saga, compensated: order-svc
//! --[`CoordinatorMessage::CancelCheckout`]--> coordinator --[`StockCommand::Release`], [`PaymentCommand::Refund`]-->
//! stock-svc, payment-svc --> coordinator --[`CheckoutOutcome::Cancelled`]--> order-svc.
//!
//! New variants are added without bumping [`CONTRACT_VERSION`]: an older reader fails to decode them (and
//! dead-letters the message) rather than misreading them.

use std::fmt;

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use uuid::Uuid;

pub mod queues;

/// The version of the message formats in this crate. Bumped on any change that an older reader would misread.
pub const CONTRACT_VERSION: u16 = 1;

/// Identifies one checkout attempt, and so one saga, end to end. Every message of a saga carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SagaId(pub Uuid);

impl SagaId {
    /// A fresh, random saga ID.
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }
}

impl Default for SagaId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for SagaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for SagaId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// The wrapper every message travels in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// [`CONTRACT_VERSION`] of the sender.
    pub version: u16,
    /// Unique per message; a redelivered or re-sent message keeps its ID.
    pub message_id: Uuid,
    /// The saga this message belongs to.
    pub saga_id: SagaId,
    /// The message itself.
    pub body: T,
}

/// Why a message could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are not a JSON envelope of the expected type.
    #[error("malformed message: {0}")]
    Malformed(serde_json::Error),
    /// The envelope is of a contract version this build does not know.
    #[error("unsupported contract version {0} (this build speaks {CONTRACT_VERSION})")]
    UnsupportedVersion(u16),
}

impl<T: Serialize + DeserializeOwned> Envelope<T> {
    /// Wraps `body` for `saga_id` with a fresh message ID.
    pub fn new(saga_id: SagaId, body: T) -> Self {
        Self { version: CONTRACT_VERSION, message_id: Uuid::new_v4(), saga_id, body }
    }

    /// The wire form.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("contract types always serialise")
    }

    /// Reads the wire form, refusing unknown versions.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let envelope: Self = serde_json::from_slice(bytes).map_err(DecodeError::Malformed)?;
        if envelope.version != CONTRACT_VERSION {
            return Err(DecodeError::UnsupportedVersion(envelope.version));
        }
        Ok(envelope)
    }
}

/// One line of a checkout: an item and how many of it. Lines of one checkout have distinct item IDs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LineItem {
    /// The stock item.
    pub item_id: String,
    /// How many units; always at least 1.
    pub quantity: u64,
}

/// What order-svc asks the coordinator to carry out: a snapshot of the order at checkout time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutRequest {
    /// The order being paid.
    pub order_id: String,
    /// Who pays.
    pub user_id: String,
    /// What is taken from stock, aggregated per item.
    pub items: Vec<LineItem>,
    /// What is charged.
    pub total: u64,
}

/// Everything the coordinator consumes, on [`queues::COORDINATOR`]. Adjacently tagged, because the replies it
/// wraps are tagged with `type` themselves and one JSON object cannot hold both tags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "message", rename_all = "snake_case")]
pub enum CoordinatorMessage {
    /// order-svc recorded a checkout intent.
    StartCheckout(CheckoutRequest),
    /// stock-svc answered a [`StockCommand`].
    Stock(StockReply),
    /// payment-svc answered a [`PaymentCommand`].
    Payment(PaymentReply),
    /// order-svc asks to undo the paid checkout of the envelope's saga: give the stock back, refund the payment,
    /// then report [`CheckoutOutcome::Cancelled`]. Sent again until the outcome comes back; harmless to repeat.
    CancelCheckout {
        /// The order whose checkout is undone.
        order_id: String,
    },
}

/// Commands to stock-svc, on [`queues::STOCK_COMMANDS`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StockCommand {
    /// Take every line from stock, all or nothing.
    Reserve {
        /// What to take.
        items: Vec<LineItem>,
    },
    /// Give back what `Reserve` took for this saga; if it has not run yet, make sure it never takes anything.
    Release,
}

/// stock-svc's answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StockReply {
    /// Every line was taken.
    Reserved,
    /// Nothing was taken, for this reason.
    Rejected {
        /// Why.
        reason: FailureReason,
    },
    /// Whatever was taken for the saga is back, and nothing will be taken for it any more.
    Released,
    /// The command can never be applied (giving the stock back would break a rule of stock, or the item it
    /// belongs to is gone). Nothing changed; the command was dead-lettered, and the saga needs an operator.
    CannotApply {
        /// Why, for operators.
        problem: String,
    },
}

/// Commands to payment-svc, on [`queues::PAYMENT_COMMANDS`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PaymentCommand {
    /// Charge `amount` to `user_id` for `order_id`.
    Charge {
        /// Who pays.
        user_id: String,
        /// What for; recorded so that `/payment/status` answers for the order.
        order_id: String,
        /// How much.
        amount: u64,
    },
    /// Give back what `Charge` took for this saga; if it has not run yet, make sure it never charges.
    Refund,
}

/// payment-svc's answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PaymentReply {
    /// The amount was charged.
    Charged,
    /// Nothing was charged, for this reason.
    Rejected {
        /// Why.
        reason: FailureReason,
    },
    /// Whatever was charged for the saga is back, and nothing will be charged for it any more.
    Refunded,
    /// The command can never be applied (the refund would break a rule of credit, or the payer is gone).
    /// Nothing changed; the command was dead-lettered, and the saga needs an operator.
    CannotApply {
        /// Why, for operators.
        problem: String,
    },
}

/// How a checkout ended, sent by the coordinator to order-svc on [`queues::ORDER_OUTCOMES`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CheckoutOutcome {
    /// Stock taken and credit charged: the order is paid.
    Paid {
        /// The order.
        order_id: String,
    },
    /// Nothing taken, nothing charged.
    Failed {
        /// The order.
        order_id: String,
        /// Why.
        reason: FailureReason,
    },
    /// The paid checkout was undone: the stock is back, the payment refunded; the order is no longer paid.
    Cancelled {
        /// The order.
        order_id: String,
    },
    /// A compensation could never be applied, or went unanswered past its deadline: what the saga took may not
    /// all be back. An operator must look at the saga; the coordinator lists it as `needs_attention`.
    NeedsAttention {
        /// The order.
        order_id: String,
        /// What went wrong, for operators.
        problem: String,
    },
}

/// Why a step of a checkout was refused. Shown to the client in the checkout's 4xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FailureReason {
    /// Not enough of an item in stock.
    OutOfStock {
        /// The item that is short.
        item_id: String,
    },
    /// An item of the order does not exist.
    UnknownItem {
        /// The missing item.
        item_id: String,
    },
    /// The user's credit is lower than the total.
    InsufficientCredit {
        /// The user.
        user_id: String,
    },
    /// The paying user does not exist.
    UnknownUser {
        /// The missing user.
        user_id: String,
    },
    /// The step was compensated before it ran, so it will never run.
    Cancelled,
    /// An operator aborted the saga.
    Aborted,
    /// The saga did not finish within its deadline (a participant did not answer), so it was compensated.
    TimedOut,
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfStock { item_id } => write!(f, "item {item_id} is out of stock"),
            Self::UnknownItem { item_id } => write!(f, "item {item_id} does not exist"),
            Self::InsufficientCredit { user_id } => write!(f, "user {user_id} does not have enough credit"),
            Self::UnknownUser { user_id } => write!(f, "user {user_id} does not exist"),
            Self::Cancelled => f.write_str("the step was cancelled before it ran"),
            Self::Aborted => f.write_str("the checkout was aborted by an operator"),
            Self::TimedOut => f.write_str("the checkout did not finish in time and was undone"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trips_through_its_wire_form() {
        let sent = Envelope::new(
            SagaId::new(),
            CoordinatorMessage::StartCheckout(CheckoutRequest {
                order_id: "7".into(),
                user_id: "3".into(),
                items: vec![LineItem { item_id: "1".into(), quantity: 2 }],
                total: 20,
            }),
        );
        let received = Envelope::<CoordinatorMessage>::from_bytes(&sent.to_bytes()).unwrap();
        assert_eq!(received, sent);
    }

    #[test]
    fn replies_round_trip_inside_coordinator_messages() {
        let replies = [
            CoordinatorMessage::Stock(StockReply::Reserved),
            CoordinatorMessage::Stock(StockReply::Rejected {
                reason: FailureReason::OutOfStock { item_id: "1".into() },
            }),
            CoordinatorMessage::Payment(PaymentReply::Refunded),
        ];
        for reply in replies {
            let sent = Envelope::new(SagaId::new(), reply);
            assert_eq!(Envelope::<CoordinatorMessage>::from_bytes(&sent.to_bytes()).unwrap(), sent);
        }
    }

    #[test]
    fn every_reply_round_trips_inside_the_coordinator_message() {
        let reason = FailureReason::OutOfStock { item_id: "9".into() };
        for message in [
            CoordinatorMessage::Stock(StockReply::Reserved),
            CoordinatorMessage::Stock(StockReply::Rejected { reason: reason.clone() }),
            CoordinatorMessage::Stock(StockReply::Released),
            CoordinatorMessage::Payment(PaymentReply::Charged),
            CoordinatorMessage::Payment(PaymentReply::Rejected { reason: reason.clone() }),
            CoordinatorMessage::Payment(PaymentReply::Refunded),
            CoordinatorMessage::Stock(StockReply::CannotApply { problem: "overflow".into() }),
            CoordinatorMessage::Payment(PaymentReply::CannotApply { problem: "payer gone".into() }),
            CoordinatorMessage::CancelCheckout { order_id: "4".into() },
        ] {
            let sent = Envelope::new(SagaId::new(), message);
            assert_eq!(Envelope::<CoordinatorMessage>::from_bytes(&sent.to_bytes()).unwrap(), sent);
        }
    }

    #[test]
    fn unknown_version_is_refused() {
        let mut sent = Envelope::new(SagaId::new(), StockCommand::Release);
        sent.version = CONTRACT_VERSION + 1;
        let err = Envelope::<StockCommand>::from_bytes(&sent.to_bytes()).unwrap_err();
        assert!(matches!(err, DecodeError::UnsupportedVersion(v) if v == CONTRACT_VERSION + 1));
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        let err = Envelope::<PaymentCommand>::from_bytes(b"{not json").unwrap_err();
        assert!(matches!(err, DecodeError::Malformed(_)));
    }
}
