//! The rules of payment, free of I/O: how credit changes, how payments are keyed, what a saga command does given
//! what is already recorded for its saga, and what a whole batch of saga commands does ([`plan_batch`]). The
//! store loads the facts, asks these functions, and writes the answer back in the same transaction, so every rule
//! here can be tested without a database.

use std::collections::{BTreeMap, BTreeSet};

use shared_contracts::{FailureReason, PaymentCommand, PaymentReply, SagaId};

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

/// Why one saga command can never be applied. It changes nothing; its delivery goes to the dead letters, since
/// retrying cannot help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unprocessable {
    /// The refund is due to a user who no longer exists.
    #[error("user {user_id} of a charged payment no longer exists")]
    PayerGone {
        /// The payer of the charge.
        user_id: String,
    },
    /// Giving the money back would break a rule of credit.
    #[error(transparent)]
    Refused(#[from] CreditRefusal),
}

/// The payment row of a saga that had none before the batch, as the batch leaves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPayment {
    /// The saga; the row's key is [`saga_payment_key`] of it.
    pub saga_id: SagaId,
    /// The payer the charge named; empty for a tombstone.
    pub user_id: String,
    /// The order the charge named; empty for a tombstone.
    pub order_id: String,
    /// What was taken; 0 when nothing was.
    pub amount: u64,
    /// What is recorded.
    pub payment: SagaPayment,
}

/// What a batch of saga commands does, as [`plan_batch`] decides it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchPlan {
    /// Per command, in order: the reply for the coordinator, or why the command cannot be applied.
    pub outcomes: Vec<Result<PaymentReply, Unprocessable>>,
    /// The final credit of every user whose credit the batch changed.
    pub credits: BTreeMap<String, u64>,
    /// The rows of sagas first recorded by the batch, in saga order (which is also the order of their keys).
    pub inserts: Vec<NewPayment>,
    /// The sagas that had a row before the batch and whose payment it changed, with the new payment.
    pub updates: Vec<(SagaId, SagaPayment)>,
}

/// The users whose credit `commands` may change, given what is `recorded` for their sagas, each once and in ID
/// order: every payer a charge names, and every payer of a recorded charge that a refund gives back.
pub fn users_of_batch<'a>(
    recorded: &'a BTreeMap<SagaId, SagaPayment>,
    commands: &[(SagaId, &'a PaymentCommand)],
) -> Vec<&'a str> {
    let users: BTreeSet<&str> = commands
        .iter()
        .filter_map(|(saga_id, command)| match command {
            PaymentCommand::Charge { user_id, .. } => Some(user_id.as_str()),
            PaymentCommand::Refund => match recorded.get(saga_id) {
                Some(SagaPayment::Charged { user_id, .. }) => Some(user_id.as_str()),
                _ => None,
            },
        })
        .collect();
    users.into_iter().collect()
}

/// Decides a batch of saga commands at once. `recorded` is what the payment rows of the batch's sagas held before
/// it, `credits` the credit of every user in [`users_of_batch`] that exists. The commands apply in order, each as
/// it would alone ([`on_charge`], [`charge`], [`on_refund`], [`deposit`]) on what the ones before it left, so
/// that two commands of one saga in a batch (a redelivery and its duplicate, a charge and its refund) meet as
/// they would one after the other.
pub fn plan_batch(
    recorded: &BTreeMap<SagaId, SagaPayment>,
    credits: &BTreeMap<String, u64>,
    commands: &[(SagaId, &PaymentCommand)],
) -> BatchPlan {
    let mut ledger = Ledger { recorded: recorded.clone(), new_rows: BTreeMap::new(), credits: credits.clone() };
    let outcomes = commands.iter().map(|(saga_id, command)| ledger.apply(*saga_id, command)).collect();
    BatchPlan {
        outcomes,
        credits: ledger.credits.into_iter().filter(|(user_id, credit)| credits.get(user_id) != Some(credit)).collect(),
        inserts: ledger.new_rows.into_values().collect(),
        updates: ledger.recorded.into_iter().filter(|(saga_id, now)| recorded.get(saga_id) != Some(now)).collect(),
    }
}

/// Payments and credit as the commands of a batch so far leave them.
struct Ledger {
    /// The sagas that had a row before the batch, with what it holds now.
    recorded: BTreeMap<SagaId, SagaPayment>,
    /// The rows of sagas first recorded by the batch.
    new_rows: BTreeMap<SagaId, NewPayment>,
    /// The credit of every user of the batch that exists.
    credits: BTreeMap<String, u64>,
}

impl Ledger {
    fn apply(&mut self, saga_id: SagaId, command: &PaymentCommand) -> Result<PaymentReply, Unprocessable> {
        match command {
            PaymentCommand::Charge { user_id, order_id, amount } => match on_charge(self.payment(saga_id)) {
                ChargeStep::Repeat(reply) => Ok(reply),
                ChargeStep::Attempt => {
                    let outcome = charge(user_id, self.credits.get(user_id).copied(), *amount);
                    if let Some(new_credit) = outcome.new_credit {
                        self.credits.insert(user_id.clone(), new_credit);
                    }
                    let reply = outcome.reply();
                    let taken = match outcome.record {
                        SagaPayment::Charged { amount, .. } => amount,
                        _ => 0,
                    };
                    let row = NewPayment {
                        saga_id,
                        user_id: user_id.clone(),
                        order_id: order_id.clone(),
                        amount: taken,
                        payment: outcome.record,
                    };
                    self.new_rows.insert(saga_id, row);
                    Ok(reply)
                }
            },
            PaymentCommand::Refund => {
                match on_refund(self.payment(saga_id)) {
                    RefundStep::LeaveTombstone => {
                        let tombstone = NewPayment {
                            saga_id,
                            user_id: String::new(),
                            order_id: String::new(),
                            amount: 0,
                            payment: SagaPayment::Cancelled,
                        };
                        self.new_rows.insert(saga_id, tombstone);
                    }
                    RefundStep::GiveBack { user_id, amount } => {
                        let credit = self.credits.get(&user_id).copied();
                        let credit = credit.ok_or_else(|| Unprocessable::PayerGone { user_id: user_id.clone() })?;
                        self.credits.insert(user_id.clone(), deposit(&user_id, credit, amount)?);
                        self.set_payment(saga_id, SagaPayment::Refunded);
                    }
                    RefundStep::NothingToDo => {}
                }
                Ok(PaymentReply::Refunded)
            }
        }
    }

    /// What is recorded for `saga_id` so far.
    fn payment(&self, saga_id: SagaId) -> Option<&SagaPayment> {
        match self.new_rows.get(&saga_id) {
            Some(row) => Some(&row.payment),
            None => self.recorded.get(&saga_id),
        }
    }

    /// Changes what is recorded for `saga_id`, which has a record already; the row keeps its payer and amount.
    fn set_payment(&mut self, saga_id: SagaId, payment: SagaPayment) {
        match self.new_rows.get_mut(&saga_id) {
            Some(row) => row.payment = payment,
            None => {
                self.recorded.insert(saga_id, payment);
            }
        }
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

    fn saga(n: u128) -> SagaId {
        SagaId(uuid::Uuid::from_u128(n))
    }

    fn charge_of(user_id: &str, amount: u64) -> PaymentCommand {
        PaymentCommand::Charge { user_id: user_id.into(), order_id: "o".into(), amount }
    }

    fn credits(of: &[(&str, u64)]) -> BTreeMap<String, u64> {
        of.iter().map(|(user_id, credit)| (user_id.to_string(), *credit)).collect()
    }

    fn new_row(saga_id: SagaId, user_id: &str, amount: u64, payment: SagaPayment) -> NewPayment {
        let order_id = if user_id.is_empty() { "" } else { "o" };
        NewPayment { saga_id, user_id: user_id.into(), order_id: order_id.into(), amount, payment }
    }

    #[test]
    fn a_batch_touches_the_payers_of_its_charges_and_of_the_charges_it_refunds() {
        let recorded = BTreeMap::from([(saga(1), charged(4)), (saga(2), SagaPayment::Refunded)]);
        let (charge_b, charge_a, refund) = (charge_of("b", 1), charge_of("a", 1), PaymentCommand::Refund);
        let commands = [(saga(3), &charge_b), (saga(1), &refund), (saga(2), &refund), (saga(4), &charge_a)];
        assert_eq!(users_of_batch(&recorded, &[(saga(5), &charge_b), (saga(6), &charge_b)]), ["b"]);
        assert_eq!(users_of_batch(&recorded, &commands), ["a", "b", "u"]);
    }

    #[test]
    fn the_second_of_two_charges_is_refused_when_the_credit_covers_only_the_first() {
        let charge = charge_of("u", 7);
        let plan = plan_batch(&BTreeMap::new(), &credits(&[("u", 10)]), &[(saga(1), &charge), (saga(2), &charge)]);
        let short = FailureReason::InsufficientCredit { user_id: "u".into() };
        assert_eq!(plan.outcomes, [Ok(PaymentReply::Charged), Ok(PaymentReply::Rejected { reason: short.clone() })]);
        assert_eq!(plan.credits, credits(&[("u", 3)]));
        assert_eq!(
            plan.inserts,
            [new_row(saga(1), "u", 7, charged(7)), new_row(saga(2), "u", 0, SagaPayment::Rejected { reason: short })]
        );
        assert_eq!(plan.updates, []);
    }

    #[test]
    fn a_charge_and_its_refund_in_one_batch_leave_the_credit_and_a_refunded_row() {
        let (charge, refund) = (charge_of("u", 4), PaymentCommand::Refund);
        let plan = plan_batch(&BTreeMap::new(), &credits(&[("u", 10)]), &[(saga(1), &charge), (saga(1), &refund)]);
        assert_eq!(plan.outcomes, [Ok(PaymentReply::Charged), Ok(PaymentReply::Refunded)]);
        assert_eq!(plan.credits, BTreeMap::new(), "10 - 4 + 4 is no change");
        assert_eq!(plan.inserts, [new_row(saga(1), "u", 4, SagaPayment::Refunded)]);
        assert_eq!(plan.updates, []);
    }

    #[test]
    fn a_refund_before_its_charge_in_one_batch_leaves_a_tombstone_that_refuses_the_charge() {
        let (refund, charge) = (PaymentCommand::Refund, charge_of("u", 4));
        let plan = plan_batch(&BTreeMap::new(), &credits(&[("u", 10)]), &[(saga(1), &refund), (saga(1), &charge)]);
        let cancelled = PaymentReply::Rejected { reason: FailureReason::Cancelled };
        assert_eq!(plan.outcomes, [Ok(PaymentReply::Refunded), Ok(cancelled)]);
        assert_eq!(plan.credits, BTreeMap::new());
        assert_eq!(plan.inserts, [new_row(saga(1), "", 0, SagaPayment::Cancelled)]);
    }

    #[test]
    fn duplicate_charges_of_a_recorded_saga_repeat_the_answer_and_write_nothing() {
        let recorded = BTreeMap::from([(saga(1), charged(4))]);
        let charge = charge_of("u", 4);
        let plan = plan_batch(&recorded, &credits(&[("u", 6)]), &[(saga(1), &charge), (saga(1), &charge)]);
        assert_eq!(plan.outcomes, [Ok(PaymentReply::Charged), Ok(PaymentReply::Charged)]);
        assert_eq!((plan.credits, plan.inserts, plan.updates), (BTreeMap::new(), vec![], vec![]));
    }

    #[test]
    fn a_charge_to_an_unknown_user_is_rejected_and_recorded() {
        let charge = charge_of("nobody", 4);
        let plan = plan_batch(&BTreeMap::new(), &BTreeMap::new(), &[(saga(1), &charge)]);
        let unknown = FailureReason::UnknownUser { user_id: "nobody".into() };
        assert_eq!(plan.outcomes, [Ok(PaymentReply::Rejected { reason: unknown.clone() })]);
        assert_eq!(plan.credits, BTreeMap::new());
        assert_eq!(plan.inserts, [new_row(saga(1), "nobody", 0, SagaPayment::Rejected { reason: unknown })]);
    }

    #[test]
    fn a_refund_of_a_recorded_charge_gives_the_money_back_and_updates_the_row() {
        let recorded = BTreeMap::from([(saga(1), charged(4))]);
        let refund = PaymentCommand::Refund;
        let plan = plan_batch(&recorded, &credits(&[("u", 6)]), &[(saga(1), &refund), (saga(1), &refund)]);
        assert_eq!(plan.outcomes, [Ok(PaymentReply::Refunded), Ok(PaymentReply::Refunded)]);
        assert_eq!(plan.credits, credits(&[("u", 10)]));
        assert_eq!(plan.inserts, []);
        assert_eq!(plan.updates, [(saga(1), SagaPayment::Refunded)]);
    }

    #[test]
    fn an_unprocessable_refund_changes_nothing_and_the_rest_of_the_batch_goes_on() {
        let gone = SagaPayment::Charged { user_id: "gone".into(), amount: 5 };
        let recorded = BTreeMap::from([(saga(1), charged(5)), (saga(2), gone)]);
        let (refund, charge) = (PaymentCommand::Refund, charge_of("u", 1));
        let commands = [(saga(1), &refund), (saga(2), &refund), (saga(3), &charge)];
        let plan = plan_batch(&recorded, &credits(&[("u", MAX_CREDIT)]), &commands);
        let overflow = CreditRefusal::WouldOverflow { user_id: "u".into(), credit: MAX_CREDIT, amount: 5 };
        assert_eq!(
            plan.outcomes,
            [
                Err(Unprocessable::Refused(overflow)),
                Err(Unprocessable::PayerGone { user_id: "gone".into() }),
                Ok(PaymentReply::Charged)
            ]
        );
        assert_eq!(
            plan.outcomes[1].as_ref().unwrap_err().to_string(),
            "user gone of a charged payment no longer exists"
        );
        assert_eq!(plan.credits, credits(&[("u", MAX_CREDIT - 1)]));
        assert_eq!(plan.inserts, [new_row(saga(3), "u", 1, charged(1))]);
        assert_eq!(plan.updates, [], "the refused refunds leave their rows charged");
    }

    /// The payment rows and credits of a database, as the tests below model it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Model {
        rows: BTreeMap<SagaId, (u64, SagaPayment)>,
        credits: BTreeMap<String, u64>,
    }

    impl Model {
        /// Decides `commands` as the store does (loading only what the batch needs) and writes the plan.
        fn run(&mut self, commands: &[(SagaId, &PaymentCommand)]) -> Vec<Result<PaymentReply, Unprocessable>> {
            let recorded: BTreeMap<SagaId, SagaPayment> = commands
                .iter()
                .filter_map(|(saga_id, _)| Some((*saga_id, self.rows.get(saga_id)?.1.clone())))
                .collect();
            let credits: BTreeMap<String, u64> = users_of_batch(&recorded, commands)
                .into_iter()
                .filter_map(|user_id| Some((user_id.to_owned(), *self.credits.get(user_id)?)))
                .collect();
            let plan = plan_batch(&recorded, &credits, commands);
            for (user_id, credit) in plan.credits {
                assert!(self.credits.insert(user_id, credit).is_some(), "credit of an unknown user");
            }
            for row in plan.inserts {
                assert!(!recorded.contains_key(&row.saga_id), "insert of a recorded saga");
                self.rows.insert(row.saga_id, (row.amount, row.payment));
            }
            for (saga_id, payment) in plan.updates {
                assert!(recorded.contains_key(&saga_id), "update of an unrecorded saga");
                self.rows.get_mut(&saga_id).expect("a recorded row").1 = payment;
            }
            plan.outcomes
        }

        fn total_credit(&self) -> u128 {
            self.credits.values().map(|&credit| u128::from(credit)).sum()
        }

        /// What the rows recorded `charged` hold, checking that each row's amount is what its payment says.
        fn total_charged(&self) -> u128 {
            self.rows
                .values()
                .map(|(amount, payment)| match payment {
                    SagaPayment::Charged { amount: charged, .. } => {
                        assert_eq!(amount, charged);
                        u128::from(*charged)
                    }
                    _ => 0,
                })
                .sum()
        }
    }

    /// A command of a random batch: a charge by one of four users (`"3"` does not exist), or a refund.
    fn any_command() -> impl proptest::strategy::Strategy<Value = PaymentCommand> {
        use proptest::prelude::*;
        prop_oneof![
            (0..4u8, 0..60u64).prop_map(|(user, amount)| charge_of(&user.to_string(), amount)),
            Just(PaymentCommand::Refund),
        ]
    }

    proptest::proptest! {
        #[test]
        fn batches_lose_exactly_what_is_recorded_charged_and_match_one_command_at_a_time(
            start in proptest::collection::vec(0..100u64, 3),
            batches in proptest::collection::vec(
                proptest::collection::vec((0..6u128, any_command()), 0..12),
                1..5,
            ),
        ) {
            let credits = start.iter().enumerate().map(|(user, &credit)| (user.to_string(), credit)).collect();
            let mut batched = Model { rows: BTreeMap::new(), credits };
            let mut one_by_one = batched.clone();
            let before = batched.total_credit();
            for batch in &batches {
                let commands: Vec<(SagaId, &PaymentCommand)> =
                    batch.iter().map(|(n, command)| (saga(*n), command)).collect();
                let outcomes = batched.run(&commands);
                let alone: Vec<_> = commands.iter().flat_map(|command| one_by_one.run(&[*command])).collect();
                proptest::prop_assert_eq!(outcomes, alone);
                proptest::prop_assert_eq!(&batched, &one_by_one);
                proptest::prop_assert_eq!(before - batched.total_credit(), batched.total_charged());
                proptest::prop_assert!(batched.credits.values().all(|&credit| credit <= MAX_CREDIT));
            }
        }

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
