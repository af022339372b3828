//! The rules of payment, free of I/O: how credit changes, how payments are keyed, and what a saga command does
//! given what is already recorded for its saga. The store loads the facts, asks these functions, and writes the
//! answer back in the same transaction, so every rule here can be tested without a database.

use shared_contracts::{FailureReason, PaymentReply, SagaId};

/// The most credit a user can hold: what a PostgreSQL `BIGINT` holds.
pub const MAX_CREDIT: u64 = platform::http::MAX_AMOUNT;

/// Why a change of a user's credit is refused. The message is what the REST client reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreditRefusal {
    /// Paying would take the credit below zero.
    #[error("user {user_id} has credit {credit}, cannot pay {amount}")]
    Insufficient {
        /// The payer.
        user_id: String,
        /// Their credit now.
        credit: u64,
        /// What they tried to pay.
        amount: u64,
    },
    /// Adding would take the credit above [`MAX_CREDIT`].
    #[error("user {user_id} has credit {credit}, adding {amount} would exceed the maximum credit of {MAX_CREDIT}")]
    WouldOverflow {
        /// The user.
        user_id: String,
        /// Their credit now.
        credit: u64,
        /// What was to be added.
        amount: u64,
    },
}

/// The credit of `user_id` after paying `amount` out of `credit`.
pub fn pay(user_id: &str, credit: u64, amount: u64) -> Result<u64, CreditRefusal> {
    credit.checked_sub(amount).ok_or_else(|| CreditRefusal::Insufficient {
        user_id: user_id.to_owned(),
        credit,
        amount,
    })
}

/// The credit of `user_id` after adding `amount` to `credit` (a deposit or a refund).
pub fn deposit(user_id: &str, credit: u64, amount: u64) -> Result<u64, CreditRefusal> {
    credit.checked_add(amount).filter(|&total| total <= MAX_CREDIT).ok_or_else(|| CreditRefusal::WouldOverflow {
        user_id: user_id.to_owned(),
        credit,
        amount,
    })
}

/// The credit of `user_id` after refunding each of `amounts`, all or none.
pub fn refund_all(user_id: &str, credit: u64, amounts: &[u64]) -> Result<u64, CreditRefusal> {
    amounts.iter().try_fold(credit, |credit, &amount| deposit(user_id, credit, amount))
}

/// The key of the payment a REST client makes for `order_id`. `%` and `:` inside the IDs are escaped so that
/// two different (user, order) pairs never share a key; IDs without them (UUIDs, numbers) appear as they are.
pub fn rest_payment_key(user_id: &str, order_id: &str) -> String {
    format!("http:{}:{}", escape_key_part(user_id), escape_key_part(order_id))
}

fn escape_key_part(part: &str) -> String {
    part.replace('%', "%25").replace(':', "%3A")
}

/// The key of the payment a saga makes; that row is also the saga's inbox.
pub fn saga_payment_key(saga_id: SagaId) -> String {
    format!("saga:{saga_id}")
}

/// What is recorded for one saga's payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SagaPayment {
    /// `amount` was taken from `user_id`.
    Charged {
        /// The payer.
        user_id: String,
        /// What was taken.
        amount: u64,
    },
    /// The charge was refused and took nothing.
    Rejected {
        /// Why, as first answered.
        reason: FailureReason,
    },
    /// The charge was given back.
    Refunded,
    /// A refund came before any charge: a tombstone, so that the charge is refused when it arrives.
    Cancelled,
}

/// What a `Charge` command does, given what is recorded for its saga.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeStep {
    /// The saga has been here before: answer as then, change nothing.
    Repeat(PaymentReply),
    /// First time: try to take the money.
    Attempt,
}

/// Decides what a `Charge` does when `recorded` is what the saga's payment row holds.
pub fn on_charge(recorded: Option<&SagaPayment>) -> ChargeStep {
    match recorded {
        None => ChargeStep::Attempt,
        Some(SagaPayment::Charged { .. }) => ChargeStep::Repeat(PaymentReply::Charged),
        Some(SagaPayment::Rejected { reason }) => ChargeStep::Repeat(PaymentReply::Rejected { reason: reason.clone() }),
        Some(SagaPayment::Refunded | SagaPayment::Cancelled) => {
            ChargeStep::Repeat(PaymentReply::Rejected { reason: FailureReason::Cancelled })
        }
    }
}

/// The outcome of a first `Charge`: what to record, the user's new credit if it changes, and the reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeOutcome {
    /// The payment row to record for the saga.
    pub record: SagaPayment,
    /// The payer's credit afterwards, when money is taken.
    pub new_credit: Option<u64>,
}

impl ChargeOutcome {
    /// The reply the coordinator gets.
    pub fn reply(&self) -> PaymentReply {
        match &self.record {
            SagaPayment::Rejected { reason } => PaymentReply::Rejected { reason: reason.clone() },
            _ => PaymentReply::Charged,
        }
    }
}

/// Decides a first `Charge` of `amount` to `user_id`, whose credit is `credit` (`None`: no such user).
pub fn charge(user_id: &str, credit: Option<u64>, amount: u64) -> ChargeOutcome {
    let refused = |reason| ChargeOutcome { record: SagaPayment::Rejected { reason }, new_credit: None };
    match credit {
        None => refused(FailureReason::UnknownUser { user_id: user_id.to_owned() }),
        Some(credit) => match pay(user_id, credit, amount) {
            Ok(new_credit) => ChargeOutcome {
                record: SagaPayment::Charged { user_id: user_id.to_owned(), amount },
                new_credit: Some(new_credit),
            },
            Err(_) => refused(FailureReason::InsufficientCredit { user_id: user_id.to_owned() }),
        },
    }
}

/// What a `Refund` command does, given what is recorded for its saga. Every case answers `Refunded`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundStep {
    /// Nothing was charged yet: record a tombstone so that the charge never happens.
    LeaveTombstone,
    /// Give `amount` back to `user_id` and mark the payment refunded.
    GiveBack {
        /// The payer.
        user_id: String,
        /// What they paid.
        amount: u64,
    },
    /// Nothing was taken, or it is back already.
    NothingToDo,
}

/// Decides what a `Refund` does when `recorded` is what the saga's payment row holds.
pub fn on_refund(recorded: Option<&SagaPayment>) -> RefundStep {
    match recorded {
        None => RefundStep::LeaveTombstone,
        Some(SagaPayment::Charged { user_id, amount }) => {
            RefundStep::GiveBack { user_id: user_id.clone(), amount: *amount }
        }
        Some(SagaPayment::Rejected { .. } | SagaPayment::Refunded | SagaPayment::Cancelled) => RefundStep::NothingToDo,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn charged(amount: u64) -> SagaPayment {
        SagaPayment::Charged { user_id: "u".into(), amount }
    }

    #[test]
    fn paying_more_than_the_credit_is_refused_with_the_numbers() {
        assert_eq!(pay("u", 10, 10), Ok(0));
        let refusal = pay("u", 10, 11).unwrap_err();
        assert_eq!(refusal.to_string(), "user u has credit 10, cannot pay 11");
    }

    #[test]
    fn deposits_stop_at_the_largest_bigint() {
        assert_eq!(deposit("u", MAX_CREDIT - 1, 1), Ok(MAX_CREDIT));
        assert!(matches!(deposit("u", MAX_CREDIT, 1), Err(CreditRefusal::WouldOverflow { .. })));
        assert!(matches!(deposit("u", u64::MAX, 1), Err(CreditRefusal::WouldOverflow { .. })));
    }

    #[test]
    fn refunds_are_all_or_nothing() {
        assert_eq!(refund_all("u", 5, &[1, 2, 3]), Ok(11));
        assert_eq!(refund_all("u", 5, &[]), Ok(5));
        assert!(refund_all("u", 5, &[MAX_CREDIT, 1]).is_err());
    }

    #[test]
    fn rest_keys_of_different_pairs_never_collide() {
        assert_eq!(rest_payment_key("7", "42"), "http:7:42");
        assert_ne!(rest_payment_key("a:b", "c"), rest_payment_key("a", "b:c"));
        assert_ne!(rest_payment_key("a%3Ab", "c"), rest_payment_key("a:b", "c"));
    }

    #[test]
    fn a_first_charge_takes_the_money_when_there_is_enough() {
        let outcome = charge("u", Some(10), 4);
        assert_eq!(outcome.record, charged(4));
        assert_eq!(outcome.new_credit, Some(6));
        assert_eq!(outcome.reply(), PaymentReply::Charged);
    }

    #[test]
    fn a_first_charge_is_refused_for_an_unknown_user_or_short_credit() {
        let unknown = charge("u", None, 4);
        assert_eq!(unknown.new_credit, None);
        assert_eq!(
            unknown.reply(),
            PaymentReply::Rejected { reason: FailureReason::UnknownUser { user_id: "u".into() } }
        );
        let short = charge("u", Some(3), 4);
        assert_eq!(short.new_credit, None);
        assert_eq!(
            short.reply(),
            PaymentReply::Rejected { reason: FailureReason::InsufficientCredit { user_id: "u".into() } }
        );
    }

    #[test]
    fn a_repeated_charge_repeats_the_recorded_answer() {
        assert_eq!(on_charge(None), ChargeStep::Attempt);
        assert_eq!(on_charge(Some(&charged(4))), ChargeStep::Repeat(PaymentReply::Charged));
        let reason = FailureReason::InsufficientCredit { user_id: "u".into() };
        assert_eq!(
            on_charge(Some(&SagaPayment::Rejected { reason: reason.clone() })),
            ChargeStep::Repeat(PaymentReply::Rejected { reason })
        );
    }

    #[test]
    fn a_charge_after_its_refund_is_refused_as_cancelled() {
        let cancelled = ChargeStep::Repeat(PaymentReply::Rejected { reason: FailureReason::Cancelled });
        assert_eq!(on_charge(Some(&SagaPayment::Cancelled)), cancelled);
        assert_eq!(on_charge(Some(&SagaPayment::Refunded)), cancelled);
    }

    #[test]
    fn a_refund_gives_back_only_what_was_charged() {
        assert_eq!(on_refund(Some(&charged(4))), RefundStep::GiveBack { user_id: "u".into(), amount: 4 });
        assert_eq!(on_refund(Some(&SagaPayment::Refunded)), RefundStep::NothingToDo);
        assert_eq!(on_refund(Some(&SagaPayment::Cancelled)), RefundStep::NothingToDo);
        let rejected = SagaPayment::Rejected { reason: FailureReason::Cancelled };
        assert_eq!(on_refund(Some(&rejected)), RefundStep::NothingToDo);
    }

    #[test]
    fn a_refund_before_the_charge_leaves_a_tombstone() {
        assert_eq!(on_refund(None), RefundStep::LeaveTombstone);
    }

    proptest::proptest! {
        #[test]
        fn paying_then_refunding_restores_the_credit(credit in 0..=MAX_CREDIT, amount in 0..=MAX_CREDIT) {
            if let Ok(after) = pay("u", credit, amount) {
                proptest::prop_assert_eq!(deposit("u", after, amount), Ok(credit));
            } else {
                proptest::prop_assert!(amount > credit);
            }
        }
    }
}
