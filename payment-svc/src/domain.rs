//! The rules of payment, free of I/O: how credit changes, how payments are keyed, and payment's effect in the
//! checkout saga ([`Payment`]): a charge takes credit from the payer's account, a refund gives it back. The
//! protocol around it (what is recorded per saga, the tombstone of a refund that comes first, the repeated
//! replies, the batch) is the `participant` crate's. The store loads the facts, asks these functions, and writes
//! the answer back in the same transaction, so every rule here can be tested without a database.
//!
//! Credit is bounded so that every refund fits: a user keeps, beside their credit, what of theirs is charged and
//! may still be given back (see [`Account`]), and no deposit may take the two together beyond [`MAX_CREDIT`]. A
//! charge moves money from credit to refundable and a refund moves it back, so a refund can never overflow.

use participant::{Changes, Effect, Held};
use shared_contracts::{FailureReason, SagaId};

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

/// What a saga's charge asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// Who pays.
    pub user_id: String,
    /// What for; recorded with the payment so that `/payment/status` answers for the order.
    pub order_id: String,
    /// How much.
    pub amount: u64,
}

/// What a saga's charge took, recorded so that its refund gives exactly that back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charged {
    /// The payer.
    pub user_id: String,
    /// What was taken.
    pub amount: u64,
}

/// payment-svc's effect in the checkout saga: a charge takes its amount from the payer's [`Account`] (and counts
/// it refundable), a refund gives it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payment;

impl Effect for Payment {
    type Request = Charge;
    type Taken = Charged;
    type Resource = Account;
    type Unprocessable = Unprocessable;

    fn keys_of_request(charge: &Charge) -> impl Iterator<Item = &str> {
        std::iter::once(charge.user_id.as_str())
    }

    fn keys_of_taken(charged: &Charged) -> impl Iterator<Item = &str> {
        std::iter::once(charged.user_id.as_str())
    }

    /// Takes the amount from the payer, refused when there is no such user or their credit is short.
    fn take(held: &Held<'_, Account>, charge: &Charge) -> Result<(Charged, Changes<Account>), FailureReason> {
        let Charge { user_id, amount, .. } = charge;
        let account = held.get(user_id).ok_or_else(|| FailureReason::UnknownUser { user_id: user_id.clone() })?;
        let after = charge_refundably(user_id, account, *amount)
            .map_err(|_| FailureReason::InsufficientCredit { user_id: user_id.clone() })?;
        Ok((Charged { user_id: user_id.clone(), amount: *amount }, vec![(user_id.clone(), after)]))
    }

    /// Gives the amount back to the payer, unless they are gone or the rules of credit refuse it.
    fn give_back(held: &Held<'_, Account>, charged: &Charged) -> Result<Changes<Account>, Unprocessable> {
        let Charged { user_id, amount } = charged;
        let account = held.get(user_id).ok_or_else(|| Unprocessable::PayerGone { user_id: user_id.clone() })?;
        Ok(vec![(user_id.clone(), refund(user_id, account, *amount)?)])
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

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use participant::{keys_to_lock, plan_batch, Command, NotApplied, Record, Recorded, Reply};

    use super::*;

    fn account(credit: u64, refundable: u64) -> Account {
        Account { credit, refundable }
    }

    fn accounts(of: &[(&str, u64, u64)]) -> HashMap<String, Account> {
        of.iter().map(|(user_id, credit, refundable)| (user_id.to_string(), account(*credit, *refundable))).collect()
    }

    fn charge_of(user_id: &str, amount: u64) -> Command<Charge> {
        Command::Step(Charge { user_id: user_id.into(), order_id: "o".into(), amount })
    }

    fn charged(user_id: &str, amount: u64) -> Charged {
        Charged { user_id: user_id.into(), amount }
    }

    fn saga(n: u128) -> SagaId {
        SagaId(uuid::Uuid::from_u128(n))
    }

    /// What [`Payment::take`] makes of a charge of `amount` to `user_id`, given `accounts`.
    fn take(
        accounts: &HashMap<String, Account>,
        user_id: &str,
        amount: u64,
    ) -> Result<(Charged, Changes<Account>), FailureReason> {
        let charge = Charge { user_id: user_id.into(), order_id: "o".into(), amount };
        Payment::take(&Held::new(accounts, &HashMap::new()), &charge)
    }

    #[test]
    fn paying_more_than_the_credit_is_refused_with_the_numbers() {
        assert_eq!(pay("u", 10, 10), Ok(0));
        let refusal = pay("u", 10, 11).unwrap_err();
        assert_eq!(refusal.to_string(), "user u has credit 10, cannot pay 11");
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
    fn a_charge_takes_the_money_when_there_is_enough() {
        assert_eq!(take(&accounts(&[("u", 10, 0)]), "u", 4), Ok((charged("u", 4), vec![("u".into(), account(6, 4))])));
    }

    #[test]
    fn a_charge_is_refused_for_an_unknown_user_or_short_credit() {
        let known = accounts(&[("u", 3, 0)]);
        assert_eq!(take(&known, "nobody", 4), Err(FailureReason::UnknownUser { user_id: "nobody".into() }));
        assert_eq!(take(&known, "u", 4), Err(FailureReason::InsufficientCredit { user_id: "u".into() }));
        assert_eq!(take(&known, "u", u64::MAX), Err(FailureReason::InsufficientCredit { user_id: "u".into() }));
    }

    #[test]
    fn a_batch_touches_the_payers_of_its_charges_and_of_the_charges_it_refunds() {
        let recorded = Recorded::from(HashMap::from([
            (saga(1), Record::Applied(charged("u", 4))),
            (saga(2), Record::Compensated(charged("v", 4))),
        ]));
        let (charge_b, charge_a) = (charge_of("b", 1), charge_of("a", 1));
        let commands = [
            (saga(3), &charge_b),
            (saga(1), &Command::Compensate),
            (saga(2), &Command::Compensate),
            (saga(4), &charge_a),
        ];
        assert_eq!(keys_to_lock::<Payment>(&recorded, &[(saga(5), &charge_b), (saga(6), &charge_b)]), ["b"]);
        assert_eq!(keys_to_lock::<Payment>(&recorded, &commands), ["a", "b", "u"]);
    }

    #[test]
    fn an_unprocessable_refund_changes_nothing_and_the_rest_of_the_batch_goes_on() {
        let recorded = HashMap::from([
            (saga(1), Record::Applied(charged("u", 5))),
            (saga(2), Record::Applied(charged("gone", 5))),
        ]);
        let charge = charge_of("u", 1);
        let commands = [(saga(1), &Command::Compensate), (saga(2), &Command::Compensate), (saga(3), &charge)];
        let plan = plan_batch::<Payment>(&recorded.into(), &accounts(&[("u", MAX_CREDIT, 5)]), &commands);
        let overflow =
            CreditRefusal::WouldOverflow { user_id: "u".into(), credit: MAX_CREDIT, refundable: 5, amount: 5 };
        assert_eq!(
            plan.outcomes,
            [
                Err(NotApplied::Unprocessable(Unprocessable::Refused(overflow))),
                Err(NotApplied::Unprocessable(Unprocessable::PayerGone { user_id: "gone".into() })),
                Ok(Reply::Applied)
            ]
        );
        assert_eq!(
            plan.outcomes[1].as_ref().unwrap_err().to_string(),
            "user gone of a charged payment no longer exists"
        );
        assert_eq!(plan.resources, BTreeMap::from([("u".into(), account(MAX_CREDIT - 1, 6))]));
        assert_eq!(plan.inserted[&saga(3)].record, Record::Applied(charged("u", 1)));
        assert!(plan.compensated.is_empty(), "the refused refunds leave their records charged");
    }

    /// An amount as large or as small as they come.
    fn any_amount() -> impl proptest::strategy::Strategy<Value = u64> {
        use proptest::prelude::*;
        prop_oneof![0..10u64, (MAX_CREDIT - 10)..=MAX_CREDIT, 0..=MAX_CREDIT]
    }

    /// A command of a random batch: a charge by one of four users (`"3"` does not exist), or a refund.
    fn any_command() -> impl proptest::strategy::Strategy<Value = Command<Charge>> {
        use proptest::prelude::*;
        prop_oneof![
            (0..4u8, 0..60u64).prop_map(|(user, amount)| charge_of(&user.to_string(), amount)),
            Just(Command::Compensate),
        ]
    }

    proptest::proptest! {
        #[test]
        fn batches_lose_exactly_what_is_recorded_charged_and_count_it_refundable(
            start in proptest::collection::vec(0..100u64, 3),
            batches in proptest::collection::vec(
                proptest::collection::vec((0..6u128, any_command()), 0..12),
                1..5,
            ),
        ) {
            let mut accounts: HashMap<String, Account> =
                start.iter().enumerate().map(|(user, &credit)| (user.to_string(), account(credit, 0))).collect();
            let mut records: HashMap<SagaId, Record<Charged>> = HashMap::new();
            let before: u64 = start.iter().sum();
            for batch in &batches {
                let commands: Vec<_> = batch.iter().map(|(n, command)| (saga(*n), command)).collect();
                let plan = plan_batch::<Payment>(&Recorded::from(records.clone()), &accounts, &commands);
                proptest::prop_assert!(plan.outcomes.iter().all(Result::is_ok));
                accounts.extend(plan.resources);
                records.extend(plan.inserted.into_iter().map(|(saga_id, new)| (saga_id, new.record)));
                records.extend(plan.compensated.into_iter().map(|(saga_id, taken)| (saga_id, Record::Compensated(taken))));
                let charged_by = |user_id: &str| -> u64 {
                    records
                        .values()
                        .map(|record| match record {
                            Record::Applied(charged) if charged.user_id == user_id => charged.amount,
                            _ => 0,
                        })
                        .sum()
                };
                let credit: u64 = accounts.values().map(|account| account.credit).sum();
                let refundable: u64 = accounts.values().map(|account| account.refundable).sum();
                proptest::prop_assert_eq!(before - credit, refundable);
                for (user_id, account) in &accounts {
                    proptest::prop_assert_eq!(account.refundable, charged_by(user_id));
                    proptest::prop_assert!(account.credit <= MAX_CREDIT - account.refundable);
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
