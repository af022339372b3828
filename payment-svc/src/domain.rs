//! The rules of payment, free of I/O: how credit changes, how payments are keyed, what a saga command does given
//! what is already recorded for its saga, and what a whole batch of saga commands does ([`plan_batch`]). The
//! store loads the facts, asks these functions, and writes the answer back in the same transaction, so every rule
//! here can be tested without a database.
//!
//! Credit is bounded so that every refund fits: a user keeps, beside their credit, what of theirs is charged and
//! may still be given back (see [`Account`]), and no deposit may take the two together beyond [`MAX_CREDIT`]. A
//! charge moves money from credit to refundable and a refund moves it back, so a refund can never overflow.

use std::collections::{BTreeMap, BTreeSet};

use shared_contracts::{FailureReason, PaymentCommand, PaymentReply, SagaId};

/// The most a user may hold in credit and in charged payments that may still be refunded, together: what a
/// PostgreSQL `BIGINT` holds. Adding funds (`/payment/add_funds`, `/payment/batch_init`) is refused beyond it,
/// which leaves room for every refund to come.
pub const MAX_CREDIT: u64 = platform::http::MAX_AMOUNT;

/// A user's money as the rules see it: the credit they may spend, and what they paid that may still be given back
/// (charged checkout payments, and charged payments for an order that a cancel refunds). Every write keeps
/// `credit + refundable` within [`MAX_CREDIT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Account {
    /// What the user may spend.
    pub credit: u64,
    /// What they paid and may get back.
    pub refundable: u64,
}

impl Account {
    /// What may still be added to the credit: what [`MAX_CREDIT`] leaves beside the credit and the refundable.
    pub fn room(self) -> u64 {
        MAX_CREDIT.saturating_sub(self.credit).saturating_sub(self.refundable)
    }
}

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
    /// Adding would take credit and refundable together above [`MAX_CREDIT`].
    #[error(
        "user {user_id} has credit {credit} and {refundable} that may be refunded, adding {amount} would exceed the \
         maximum of {MAX_CREDIT} for the two together"
    )]
    WouldOverflow {
        /// The user.
        user_id: String,
        /// Their credit now.
        credit: u64,
        /// What of theirs may be refunded.
        refundable: u64,
        /// What was to be added.
        amount: u64,
    },
    /// Setting the credit would take it and the refundable together above [`MAX_CREDIT`].
    #[error(
        "user {user_id} has {refundable} that may be refunded, a credit of {credit} would exceed the maximum of \
         {MAX_CREDIT} for the two together"
    )]
    NoRoomForRefunds {
        /// The user.
        user_id: String,
        /// The credit they were to get.
        credit: u64,
        /// What of theirs may be refunded.
        refundable: u64,
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

/// The credit of `user_id` after depositing `amount` into `account`; refused when there is not that much room.
pub fn deposit(user_id: &str, account: Account, amount: u64) -> Result<u64, CreditRefusal> {
    if amount > account.room() {
        return Err(would_overflow(user_id, account, amount));
    }
    Ok(account.credit + amount)
}

/// Whether `user_id`, with `refundable` that may be given back, may have their credit set to `credit` (as
/// `batch_init` does).
pub fn check_new_credit(user_id: &str, credit: u64, refundable: u64) -> Result<(), CreditRefusal> {
    if credit > MAX_CREDIT.saturating_sub(refundable) {
        return Err(CreditRefusal::NoRoomForRefunds { user_id: user_id.to_owned(), credit, refundable });
    }
    Ok(())
}

/// `account` after `user_id` paid `amount` that may be refunded later (a checkout's charge, a payment for an
/// order); refused when the credit is short.
pub fn charge_refundably(user_id: &str, account: Account, amount: u64) -> Result<Account, CreditRefusal> {
    let credit = pay(user_id, account.credit, amount)?;
    // Capped: only data older than the refundable count can make the sum exceed the maximum.
    Ok(Account { credit, refundable: account.refundable.saturating_add(amount).min(MAX_CREDIT) })
}

/// `account` after `amount` that `user_id` paid is given back; refused, should the credit then pass
/// [`MAX_CREDIT`] (which the bound on deposits rules out unless the data was edited behind the service's back).
pub fn refund(user_id: &str, account: Account, amount: u64) -> Result<Account, CreditRefusal> {
    let credit = account
        .credit
        .checked_add(amount)
        .filter(|&credit| credit <= MAX_CREDIT)
        .ok_or_else(|| would_overflow(user_id, account, amount))?;
    // Floored at zero: a payment made by a replica that did not count it yet (during an upgrade) is given back all
    // the same.
    Ok(Account { credit, refundable: account.refundable.saturating_sub(amount) })
}

fn would_overflow(user_id: &str, account: Account, amount: u64) -> CreditRefusal {
    CreditRefusal::WouldOverflow {
        user_id: user_id.to_owned(),
        credit: account.credit,
        refundable: account.refundable,
        amount,
    }
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

/// The outcome of a first `Charge`: what to record, the user's new account if it changes, and the reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeOutcome {
    /// The payment row to record for the saga.
    pub record: SagaPayment,
    /// The payer's account afterwards, when money is taken.
    pub new_account: Option<Account>,
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

/// Decides a first `Charge` of `amount` to `user_id`, whose account is `account` (`None`: no such user).
pub fn charge(user_id: &str, account: Option<Account>, amount: u64) -> ChargeOutcome {
    let refused = |reason| ChargeOutcome { record: SagaPayment::Rejected { reason }, new_account: None };
    match account {
        None => refused(FailureReason::UnknownUser { user_id: user_id.to_owned() }),
        Some(account) => match charge_refundably(user_id, account, amount) {
            Ok(new_account) => ChargeOutcome {
                record: SagaPayment::Charged { user_id: user_id.to_owned(), amount },
                new_account: Some(new_account),
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

/// Why one saga command can never be applied. It changes nothing; the coordinator is told, and its delivery goes
/// to the dead letters, since retrying cannot help.
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
    /// The final account of every user whose account the batch changed.
    pub accounts: BTreeMap<String, Account>,
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
/// it, `accounts` the account of every user in [`users_of_batch`] that exists. The commands apply in order, each
/// as it would alone ([`on_charge`], [`charge`], [`on_refund`], [`refund`]) on what the ones before it left, so
/// that two commands of one saga in a batch (a redelivery and its duplicate, a charge and its refund) meet as
/// they would one after the other.
pub fn plan_batch(
    recorded: &BTreeMap<SagaId, SagaPayment>,
    accounts: &BTreeMap<String, Account>,
    commands: &[(SagaId, &PaymentCommand)],
) -> BatchPlan {
    let mut ledger = Ledger { recorded: recorded.clone(), new_rows: BTreeMap::new(), accounts: accounts.clone() };
    let outcomes = commands.iter().map(|(saga_id, command)| ledger.apply(*saga_id, command)).collect();
    BatchPlan {
        outcomes,
        accounts: ledger
            .accounts
            .into_iter()
            .filter(|(user_id, account)| accounts.get(user_id) != Some(account))
            .collect(),
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
    /// The account of every user of the batch that exists.
    accounts: BTreeMap<String, Account>,
}

impl Ledger {
    fn apply(&mut self, saga_id: SagaId, command: &PaymentCommand) -> Result<PaymentReply, Unprocessable> {
        match command {
            PaymentCommand::Charge { user_id, order_id, amount } => match on_charge(self.payment(saga_id)) {
                ChargeStep::Repeat(reply) => Ok(reply),
                ChargeStep::Attempt => {
                    let outcome = charge(user_id, self.accounts.get(user_id).copied(), *amount);
                    if let Some(new_account) = outcome.new_account {
                        self.accounts.insert(user_id.clone(), new_account);
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
                        let account = self.accounts.get(&user_id).copied();
                        let account = account.ok_or_else(|| Unprocessable::PayerGone { user_id: user_id.clone() })?;
                        self.accounts.insert(user_id.clone(), refund(&user_id, account, amount)?);
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

    fn account(credit: u64, refundable: u64) -> Account {
        Account { credit, refundable }
    }

    #[test]
    fn deposits_stop_at_the_largest_bigint() {
        assert_eq!(deposit("u", account(MAX_CREDIT - 1, 0), 1), Ok(MAX_CREDIT));
        assert!(matches!(deposit("u", account(MAX_CREDIT, 0), 1), Err(CreditRefusal::WouldOverflow { .. })));
        assert!(matches!(deposit("u", account(u64::MAX, 0), 1), Err(CreditRefusal::WouldOverflow { .. })));
    }

    #[test]
    fn deposits_leave_room_for_what_may_be_refunded() {
        assert_eq!(deposit("u", account(70, 30), MAX_CREDIT - 100), Ok(MAX_CREDIT - 30));
        let refusal = deposit("u", account(70, 30), MAX_CREDIT - 99).unwrap_err();
        assert_eq!(
            refusal,
            CreditRefusal::WouldOverflow { user_id: "u".into(), credit: 70, refundable: 30, amount: MAX_CREDIT - 99 }
        );
        assert_eq!(
            refusal.to_string(),
            format!(
                "user u has credit 70 and 30 that may be refunded, adding {} would exceed the maximum of \
                 {MAX_CREDIT} for the two together",
                MAX_CREDIT - 99
            )
        );
        assert_eq!(deposit("u", account(MAX_CREDIT, 5), 0), Ok(MAX_CREDIT), "adding nothing is never refused");
    }

    #[test]
    fn a_new_credit_leaves_room_for_what_may_be_refunded() {
        assert_eq!(check_new_credit("u", MAX_CREDIT - 30, 30), Ok(()));
        assert_eq!(
            check_new_credit("u", MAX_CREDIT - 29, 30),
            Err(CreditRefusal::NoRoomForRefunds { user_id: "u".into(), credit: MAX_CREDIT - 29, refundable: 30 })
        );
    }

    #[test]
    fn a_refundable_charge_moves_money_to_refundable_and_its_refund_moves_it_back() {
        assert_eq!(charge_refundably("u", account(10, 5), 4), Ok(account(6, 9)));
        assert!(matches!(charge_refundably("u", account(3, 5), 4), Err(CreditRefusal::Insufficient { .. })));
        assert_eq!(refund("u", account(6, 9), 4), Ok(account(10, 5)));
        assert!(matches!(refund("u", account(MAX_CREDIT, 4), 4), Err(CreditRefusal::WouldOverflow { .. })));
        assert_eq!(refund("u", account(6, 0), 4), Ok(account(10, 0)), "an uncounted payment still comes back");
    }

    #[test]
    fn rest_keys_of_different_pairs_never_collide() {
        assert_eq!(rest_payment_key("7", "42"), "http:7:42");
        assert_ne!(rest_payment_key("a:b", "c"), rest_payment_key("a", "b:c"));
        assert_ne!(rest_payment_key("a%3Ab", "c"), rest_payment_key("a:b", "c"));
    }

    #[test]
    fn a_first_charge_takes_the_money_when_there_is_enough() {
        let outcome = charge("u", Some(account(10, 0)), 4);
        assert_eq!(outcome.record, charged(4));
        assert_eq!(outcome.new_account, Some(account(6, 4)));
        assert_eq!(outcome.reply(), PaymentReply::Charged);
    }

    #[test]
    fn a_first_charge_is_refused_for_an_unknown_user_or_short_credit() {
        let unknown = charge("u", None, 4);
        assert_eq!(unknown.new_account, None);
        assert_eq!(
            unknown.reply(),
            PaymentReply::Rejected { reason: FailureReason::UnknownUser { user_id: "u".into() } }
        );
        let short = charge("u", Some(account(3, 0)), 4);
        assert_eq!(short.new_account, None);
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

    fn accounts(of: &[(&str, u64, u64)]) -> BTreeMap<String, Account> {
        of.iter().map(|(user_id, credit, refundable)| (user_id.to_string(), account(*credit, *refundable))).collect()
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
        let plan = plan_batch(&BTreeMap::new(), &accounts(&[("u", 10, 0)]), &[(saga(1), &charge), (saga(2), &charge)]);
        let short = FailureReason::InsufficientCredit { user_id: "u".into() };
        assert_eq!(plan.outcomes, [Ok(PaymentReply::Charged), Ok(PaymentReply::Rejected { reason: short.clone() })]);
        assert_eq!(plan.accounts, accounts(&[("u", 3, 7)]));
        assert_eq!(
            plan.inserts,
            [new_row(saga(1), "u", 7, charged(7)), new_row(saga(2), "u", 0, SagaPayment::Rejected { reason: short })]
        );
        assert_eq!(plan.updates, []);
    }

    #[test]
    fn a_charge_and_its_refund_in_one_batch_leave_the_credit_and_a_refunded_row() {
        let (charge, refund) = (charge_of("u", 4), PaymentCommand::Refund);
        let plan = plan_batch(&BTreeMap::new(), &accounts(&[("u", 10, 0)]), &[(saga(1), &charge), (saga(1), &refund)]);
        assert_eq!(plan.outcomes, [Ok(PaymentReply::Charged), Ok(PaymentReply::Refunded)]);
        assert_eq!(plan.accounts, BTreeMap::new(), "10 - 4 + 4 is no change");
        assert_eq!(plan.inserts, [new_row(saga(1), "u", 4, SagaPayment::Refunded)]);
        assert_eq!(plan.updates, []);
    }

    #[test]
    fn a_refund_before_its_charge_in_one_batch_leaves_a_tombstone_that_refuses_the_charge() {
        let (refund, charge) = (PaymentCommand::Refund, charge_of("u", 4));
        let plan = plan_batch(&BTreeMap::new(), &accounts(&[("u", 10, 0)]), &[(saga(1), &refund), (saga(1), &charge)]);
        let cancelled = PaymentReply::Rejected { reason: FailureReason::Cancelled };
        assert_eq!(plan.outcomes, [Ok(PaymentReply::Refunded), Ok(cancelled)]);
        assert_eq!(plan.accounts, BTreeMap::new());
        assert_eq!(plan.inserts, [new_row(saga(1), "", 0, SagaPayment::Cancelled)]);
    }

    #[test]
    fn duplicate_charges_of_a_recorded_saga_repeat_the_answer_and_write_nothing() {
        let recorded = BTreeMap::from([(saga(1), charged(4))]);
        let charge = charge_of("u", 4);
        let plan = plan_batch(&recorded, &accounts(&[("u", 6, 4)]), &[(saga(1), &charge), (saga(1), &charge)]);
        assert_eq!(plan.outcomes, [Ok(PaymentReply::Charged), Ok(PaymentReply::Charged)]);
        assert_eq!((plan.accounts, plan.inserts, plan.updates), (BTreeMap::new(), vec![], vec![]));
    }

    #[test]
    fn a_charge_to_an_unknown_user_is_rejected_and_recorded() {
        let charge = charge_of("nobody", 4);
        let plan = plan_batch(&BTreeMap::new(), &BTreeMap::new(), &[(saga(1), &charge)]);
        let unknown = FailureReason::UnknownUser { user_id: "nobody".into() };
        assert_eq!(plan.outcomes, [Ok(PaymentReply::Rejected { reason: unknown.clone() })]);
        assert_eq!(plan.accounts, BTreeMap::new());
        assert_eq!(plan.inserts, [new_row(saga(1), "nobody", 0, SagaPayment::Rejected { reason: unknown })]);
    }

    #[test]
    fn a_refund_of_a_recorded_charge_gives_the_money_back_and_updates_the_row() {
        let recorded = BTreeMap::from([(saga(1), charged(4))]);
        let refund = PaymentCommand::Refund;
        let plan = plan_batch(&recorded, &accounts(&[("u", 6, 4)]), &[(saga(1), &refund), (saga(1), &refund)]);
        assert_eq!(plan.outcomes, [Ok(PaymentReply::Refunded), Ok(PaymentReply::Refunded)]);
        assert_eq!(plan.accounts, accounts(&[("u", 10, 0)]));
        assert_eq!(plan.inserts, []);
        assert_eq!(plan.updates, [(saga(1), SagaPayment::Refunded)]);
    }

    #[test]
    fn an_unprocessable_refund_changes_nothing_and_the_rest_of_the_batch_goes_on() {
        let gone = SagaPayment::Charged { user_id: "gone".into(), amount: 5 };
        let recorded = BTreeMap::from([(saga(1), charged(5)), (saga(2), gone)]);
        let (refund, charge) = (PaymentCommand::Refund, charge_of("u", 1));
        let commands = [(saga(1), &refund), (saga(2), &refund), (saga(3), &charge)];
        let plan = plan_batch(&recorded, &accounts(&[("u", MAX_CREDIT, 5)]), &commands);
        let overflow =
            CreditRefusal::WouldOverflow { user_id: "u".into(), credit: MAX_CREDIT, refundable: 5, amount: 5 };
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
        assert_eq!(plan.accounts, accounts(&[("u", MAX_CREDIT - 1, 6)]));
        assert_eq!(plan.inserts, [new_row(saga(3), "u", 1, charged(1))]);
        assert_eq!(plan.updates, [], "the refused refunds leave their rows charged");
    }

    /// The payment rows and accounts of a database, as the tests below model it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Model {
        rows: BTreeMap<SagaId, (u64, SagaPayment)>,
        accounts: BTreeMap<String, Account>,
    }

    impl Model {
        /// Decides `commands` as the store does (loading only what the batch needs) and writes the plan.
        fn run(&mut self, commands: &[(SagaId, &PaymentCommand)]) -> Vec<Result<PaymentReply, Unprocessable>> {
            let recorded: BTreeMap<SagaId, SagaPayment> = commands
                .iter()
                .filter_map(|(saga_id, _)| Some((*saga_id, self.rows.get(saga_id)?.1.clone())))
                .collect();
            let accounts: BTreeMap<String, Account> = users_of_batch(&recorded, commands)
                .into_iter()
                .filter_map(|user_id| Some((user_id.to_owned(), *self.accounts.get(user_id)?)))
                .collect();
            let plan = plan_batch(&recorded, &accounts, commands);
            for (user_id, account) in plan.accounts {
                assert!(self.accounts.insert(user_id, account).is_some(), "account of an unknown user");
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

        /// What the rows recorded `charged` to `user_id` hold.
        fn charged_by(&self, user_id: &str) -> u128 {
            self.rows
                .values()
                .map(|(_, payment)| match payment {
                    SagaPayment::Charged { user_id: payer, amount } if payer == user_id => u128::from(*amount),
                    _ => 0,
                })
                .sum()
        }

        fn total_credit(&self) -> u128 {
            self.accounts.values().map(|account| u128::from(account.credit)).sum()
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

    /// An amount as large or as small as they come.
    fn any_amount() -> impl proptest::strategy::Strategy<Value = u64> {
        use proptest::prelude::*;
        prop_oneof![0..10u64, (MAX_CREDIT - 10)..=MAX_CREDIT, 0..=MAX_CREDIT]
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
            let accounts =
                start.iter().enumerate().map(|(user, &credit)| (user.to_string(), account(credit, 0))).collect();
            let mut batched = Model { rows: BTreeMap::new(), accounts };
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
                proptest::prop_assert!(batched.accounts.values().all(|a| a.credit <= MAX_CREDIT - a.refundable));
                for (user_id, account) in &batched.accounts {
                    proptest::prop_assert_eq!(u128::from(account.refundable), batched.charged_by(user_id));
                }
            }
        }

        #[test]
        fn paying_then_refunding_restores_the_account(
            credit in 0..=MAX_CREDIT,
            refundable in 0..=MAX_CREDIT,
            amount in 0..=MAX_CREDIT,
        ) {
            let before = account(credit, refundable.min(MAX_CREDIT - credit));
            if let Ok(after) = charge_refundably("u", before, amount) {
                proptest::prop_assert_eq!(refund("u", after, amount), Ok(before));
            } else {
                proptest::prop_assert!(amount > credit);
            }
        }

        #[test]
        fn whatever_is_deposited_every_refundable_payment_can_be_given_back(
            start in 0..=MAX_CREDIT,
            changes in proptest::collection::vec((0..4u8, any_amount()), 0..40),
        ) {
            let mut held = account(start, 0);
            let mut refundable_payments: Vec<u64> = Vec::new();
            for (kind, amount) in changes {
                match kind {
                    0 => held.credit = deposit("u", held, amount).unwrap_or(held.credit),
                    1 => held.credit = pay("u", held.credit, amount).unwrap_or(held.credit),
                    2 => {
                        if let Ok(after) = charge_refundably("u", held, amount) {
                            held = after;
                            refundable_payments.push(amount);
                        }
                    }
                    _ => {
                        if let Some(amount) = refundable_payments.pop() {
                            held = refund("u", held, amount).expect("a refund always fits");
                        }
                    }
                }
                proptest::prop_assert!(held.credit <= MAX_CREDIT - held.refundable);
                proptest::prop_assert_eq!(held.refundable, refundable_payments.iter().sum::<u64>());
            }
        }
    }
}
