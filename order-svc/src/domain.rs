//! The rules of order-svc, free of I/O: when an order may still change, what a checkout or a cancellation request
//! does given the order's state (a batch of checkout requests at once: [`plan_intake`]), what is asked of the
//! coordinator ([`CoordinatorRequest`]), how a checkout moves when its saga reports, what a checkout's state
//! answers the requests waiting on it, how lines and totals add up without overflowing, and what a `batch_init`
//! may ask for. The store loads the facts these rules take and writes what they decide; messaging turns the
//! requests into messages.
//!
//! An order is open until it is paid. While a checkout saga is in flight the order is frozen: the coordinator is
//! taking stock and credit for the snapshot it was sent, so changing the order under it would make the books
//! disagree. A paid order is the record of a sale and does not change, except that it may be cancelled: the
//! coordinator undoes its checkout's saga (stock back, payment refunded), and while it does the order stays paid
//! and frozen. Once the saga reports it undone the order is unpaid and open again, to be changed or checked out
//! anew.
//!
//! The checkouts of one order, and how each moves ([`CheckoutPhase::after`]; the request that starts a
//! cancellation is [`OrderStatus::cancel_step`]):
//!
//! ```text
//! pending    --Paid-->            paid             the order is paid
//! pending    --Failed-->          failed
//! pending    --NeedsAttention-->  needs_attention  the order stays unpaid; an operator repairs the saga
//! paid       --cancel request-->  cancelling       the order is still paid, and frozen
//! cancelling --Cancelled-->       cancelled        the order is unpaid and open again
//! cancelling --NeedsAttention-->  paid             the order stays paid; an operator repairs the saga
//! paid       --Cancelled-->       cancelled        a cancellation started elsewhere
//! ```
//!
//! At most one checkout of an order is `pending` or `cancelling` at a time; that one is "in flight". A checkout
//! that needs attention no longer holds its order, which is unpaid and open as after a failure: what the saga
//! still holds is the operator's to give back through the coordinator.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
};

use platform::http::MAX_AMOUNT;
use shared_contracts::{CheckoutOutcome, FailureReason, LineItem, SagaId};

/// The most orders, items or users one `batch_init` may name.
pub const MAX_BATCH: u64 = 10_000_000;

/// Why a change to an order, or its checkout, is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The order is paid, and so final until it is cancelled.
    #[error("order is already paid")]
    AlreadyPaid,
    /// A checkout saga of the order is in flight.
    #[error("a checkout of this order is in progress")]
    CheckoutInProgress,
    /// A cancellation of the order is in flight; the order stays as it is until it has ended.
    #[error("a cancellation of this order is in progress")]
    CancellationInProgress,
    /// A cancellation was asked for while a checkout saga of the order is in flight. Refused rather than waited
    /// for: the checkout may take long, and may well fail, which leaves nothing to cancel.
    #[error("a checkout of this order is in progress; cancel it once it has finished")]
    CancelDuringCheckout,
    /// Only a paid order can be cancelled.
    #[error("order is not paid")]
    NotPaid,
    /// The order is marked paid but no checkout of it is, so there is no saga to undo. The schema's rules keep
    /// this from happening; it is refused rather than guessed at.
    #[error("order is paid but not by a checkout, so there is nothing to cancel")]
    PaidWithoutCheckout,
    /// There is nothing to check out.
    #[error("order has no items")]
    NoItems,
    /// The order's total, or a line's quantity, would exceed what the database holds.
    #[error("the order's total or quantity would exceed the maximum of {MAX_AMOUNT}")]
    TooLarge,
}

/// What is known about an order when a change, a checkout or a cancellation of it is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderStatus {
    /// Whether the order is paid.
    pub paid: bool,
    /// The checkout of the order in flight, if one is.
    pub in_flight: Option<InFlight>,
}

/// The saga of an order that is in flight, and which way it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InFlight {
    /// A checkout is taking stock and credit (its row is `pending`).
    Checkout(SagaId),
    /// A paid checkout is being undone (its row is `cancelling`).
    Cancel(SagaId),
}

/// What is known, besides its [`OrderStatus`], about an order whose cancellation is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CancelFacts {
    /// The saga of the checkout that paid the order, if one did (its row is `paid`).
    pub paid_checkout: Option<SagaId>,
    /// Whether the order's latest checkout is `cancelled`.
    pub last_cancelled: bool,
}

/// What a cancellation request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelStep {
    /// Nothing: the order's last checkout is cancelled, which is the answer.
    AlreadyCancelled,
    /// Wait for the cancellation already in flight instead of starting a second one.
    Join(SagaId),
    /// Mark the paid checkout of this saga as being cancelled and ask the coordinator to undo it.
    Start(SagaId),
}

/// What a checkout request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckoutStep {
    /// Nothing: the order is paid, which is the answer.
    AlreadyPaid,
    /// Wait for the saga already in flight instead of starting a second one.
    Join(SagaId),
    /// Record the intent and hand it to the coordinator.
    Start,
}

impl OrderStatus {
    /// Whether items may be added to or removed from the order. A cancellation in flight is named before the
    /// order being paid: it is why the order is still paid, and the client can wait it out.
    pub fn check_items_editable(self) -> Result<(), Refusal> {
        self.check_not_cancelling()?;
        if self.paid {
            return Err(Refusal::AlreadyPaid);
        }
        if self.in_flight.is_some() {
            return Err(Refusal::CheckoutInProgress);
        }
        Ok(())
    }

    /// Whether the order may be deleted. Work in flight is named first: it is the reason the client can wait
    /// out, whereas a paid order stays undeletable until it is cancelled.
    pub fn check_deletable(self) -> Result<(), Refusal> {
        match self.in_flight {
            Some(InFlight::Checkout(_)) => Err(Refusal::CheckoutInProgress),
            Some(InFlight::Cancel(_)) => Err(Refusal::CancellationInProgress),
            None if self.paid => Err(Refusal::AlreadyPaid),
            None => Ok(()),
        }
    }

    /// What a checkout of the order does, given whether it has any lines. While a cancellation runs, the order is
    /// still paid but about to stop being so, and not open for a new saga either: the checkout is refused.
    pub fn checkout_step(self, has_items: bool) -> Result<CheckoutStep, Refusal> {
        self.check_not_cancelling()?;
        if self.paid {
            return Ok(CheckoutStep::AlreadyPaid);
        }
        if let Some(InFlight::Checkout(saga_id)) = self.in_flight {
            return Ok(CheckoutStep::Join(saga_id));
        }
        if !has_items {
            return Err(Refusal::NoItems);
        }
        Ok(CheckoutStep::Start)
    }

    /// What a cancellation of the order does. A paid order's paying checkout is undone; a second request joins
    /// the cancellation in flight; an order whose last checkout was cancelled is answered at once, so that a
    /// repeated cancel is harmless. A checkout in flight is refused, not waited for.
    pub fn cancel_step(self, facts: CancelFacts) -> Result<CancelStep, Refusal> {
        match self.in_flight {
            Some(InFlight::Checkout(_)) => return Err(Refusal::CancelDuringCheckout),
            Some(InFlight::Cancel(saga_id)) => return Ok(CancelStep::Join(saga_id)),
            None => {}
        }
        match facts.paid_checkout {
            Some(saga_id) if self.paid => Ok(CancelStep::Start(saga_id)),
            _ if self.paid => Err(Refusal::PaidWithoutCheckout),
            _ if facts.last_cancelled => Ok(CancelStep::AlreadyCancelled),
            _ => Err(Refusal::NotPaid),
        }
    }

    /// What adding `quantity` units at `price` each to `line` (a default line when the item is new to the order)
    /// of an order whose total is `total` makes of the order: refused unless its items may change
    /// ([`Self::check_items_editable`]) and the results fit ([`add_units`]).
    pub fn addition(self, total: u64, line: Line, quantity: u64, price: u64) -> Result<Addition, Refusal> {
        self.check_items_editable()?;
        add_units(total, line, quantity, price)
    }

    /// The total of an order whose total is `total` after removing `line` from it ([`remove_line`]); refused
    /// unless its items may change ([`Self::check_items_editable`]).
    pub fn removal(self, total: u64, line: Line) -> Result<u64, Refusal> {
        self.check_items_editable()?;
        Ok(remove_line(total, line))
    }

    fn check_not_cancelling(self) -> Result<(), Refusal> {
        match self.in_flight {
            Some(InFlight::Cancel(_)) => Err(Refusal::CancellationInProgress),
            _ => Ok(()),
        }
    }
}

/// What is known, under its lock, about an order whose checkout is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckoutFacts {
    /// Whether the order is paid, and its saga in flight.
    pub status: OrderStatus,
    /// Whether the order has any lines.
    pub has_items: bool,
}

/// What a checkout request found, or set going.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Begun {
    /// The order is paid; nothing was started.
    AlreadyPaid,
    /// A new saga is recorded; its `StartCheckout` goes out once the transaction has committed.
    Started(SagaId),
    /// A saga of the order was already in flight; the request waits for it.
    Joined(SagaId),
}

/// Why a checkout request begins nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotBegun {
    /// No order has the ID.
    UnknownOrder,
    /// The order's rules refuse the checkout.
    Refused(Refusal),
}

/// A saga that a batch of checkout requests starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewCheckout {
    /// The saga.
    pub saga_id: SagaId,
    /// Which of the batch's requests starts it (an index into them); the order is that request's.
    pub request: usize,
}

/// What a batch of checkout requests does.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IntakePlan {
    /// Per request, in the order the requests were given.
    pub answers: Vec<Result<Begun, NotBegun>>,
    /// The sagas to record as pending and hand to the coordinator, in the order of the requests that start them.
    pub started: Vec<NewCheckout>,
}

/// Decides a batch of checkout requests, one per entry of `order_ids` (an order may be named more than once), from
/// `facts`, what is known about an order if it exists. Each request does what [`OrderStatus::checkout_step`] says,
/// except that a later request for an order whose saga an earlier request of the batch starts joins that saga:
/// one saga per order, however many ask at once. `new_saga` names each saga started.
pub fn plan_intake(
    order_ids: &[String],
    facts: impl Fn(&str) -> Option<CheckoutFacts>,
    mut new_saga: impl FnMut() -> SagaId,
) -> IntakePlan {
    let mut started_for: HashMap<&str, SagaId> = HashMap::new();
    let mut plan = IntakePlan { answers: Vec::with_capacity(order_ids.len()), started: Vec::new() };
    for (request, order_id) in order_ids.iter().enumerate() {
        let answer = match (facts(order_id), started_for.get(order_id.as_str())) {
            (None, _) => Err(NotBegun::UnknownOrder),
            (Some(_), Some(&saga_id)) => Ok(Begun::Joined(saga_id)),
            (Some(order), None) => match order.status.checkout_step(order.has_items) {
                Err(refusal) => Err(NotBegun::Refused(refusal)),
                Ok(CheckoutStep::AlreadyPaid) => Ok(Begun::AlreadyPaid),
                Ok(CheckoutStep::Join(saga_id)) => Ok(Begun::Joined(saga_id)),
                Ok(CheckoutStep::Start) => {
                    let saga_id = new_saga();
                    started_for.insert(order_id, saga_id);
                    plan.started.push(NewCheckout { saga_id, request });
                    Ok(Begun::Started(saga_id))
                }
            },
        };
        plan.answers.push(answer);
    }
    plan
}

/// An order as a checkout's saga takes it: what the coordinator is asked to reserve and charge. The lines of an
/// order cannot change while its checkout is pending, so the snapshot read again for a resend is the one sent first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The order.
    pub order_id: String,
    /// Who buys, and is charged.
    pub user_id: String,
    /// What is charged.
    pub total: u64,
    /// The order's lines, as stored.
    pub lines: Vec<LineItem>,
}

/// What order-svc asks of the coordinator about one saga; [`crate::messaging::to_coordinator`] makes the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoordinatorRequest {
    /// Carry out the checkout of `order` as the snapshot shows it (`StartCheckout`). Asked again, it makes the
    /// coordinator report how the saga ended.
    Start {
        /// The checkout's saga.
        saga_id: SagaId,
        /// The order as the saga takes it.
        order: Snapshot,
    },
    /// Undo the paid checkout of saga `saga_id` of `order_id` (`CancelCheckout`).
    Cancel {
        /// The paid checkout's saga.
        saga_id: SagaId,
        /// The order it paid.
        order_id: String,
    },
}

impl InFlight {
    /// What is asked of the coordinator again about this saga of `order` (whose lines are only needed, and only
    /// read, for a checkout): to carry out the checkout, or to undo it.
    pub fn request_again(self, order: Snapshot) -> CoordinatorRequest {
        match self {
            Self::Checkout(saga_id) => CoordinatorRequest::Start { saga_id, order },
            Self::Cancel(saga_id) => CoordinatorRequest::Cancel { saga_id, order_id: order.order_id },
        }
    }
}

/// Where one checkout of an order stands: the `state` column of its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckoutPhase {
    /// The saga is taking stock and credit; no outcome yet.
    Pending,
    /// Stock taken and credit charged: the order is paid.
    Paid,
    /// Nothing taken, nothing charged.
    Failed,
    /// The paid checkout is being undone; the order is still paid.
    Cancelling,
    /// The paid checkout was undone: stock back, payment refunded, the order unpaid.
    Cancelled,
    /// The saga could neither complete nor undo everything it did; an operator must repair it. The order is
    /// unpaid.
    NeedsAttention,
}

/// What the coordinator reported about a checkout's saga, the kinds of `CheckoutOutcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The checkout completed.
    Paid,
    /// The checkout failed and everything it did is undone.
    Failed,
    /// The paid checkout was undone.
    Cancelled,
    /// A compensation can never apply: the checkout, or its cancellation, could not be fully undone.
    NeedsAttention,
}

impl CheckoutPhase {
    /// Every phase.
    pub const ALL: [Self; 6] =
        [Self::Pending, Self::Paid, Self::Failed, Self::Cancelling, Self::Cancelled, Self::NeedsAttention];

    /// The phase as the `state` column holds it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Paid => "paid",
            Self::Failed => "failed",
            Self::Cancelling => "cancelling",
            Self::Cancelled => "cancelled",
            Self::NeedsAttention => "needs_attention",
        }
    }

    /// The phase a `state` column holds, if it is one.
    pub fn parse(state: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|phase| phase.as_str() == state)
    }

    /// Whether the order of a checkout in this phase is paid.
    pub fn order_paid(self) -> bool {
        matches!(self, Self::Paid | Self::Cancelling)
    }

    /// The saga in flight that a checkout of saga `saga_id` in this phase is, if it is in flight.
    pub fn in_flight(self, saga_id: SagaId) -> Option<InFlight> {
        match self {
            Self::Pending => Some(InFlight::Checkout(saga_id)),
            Self::Cancelling => Some(InFlight::Cancel(saga_id)),
            Self::Paid | Self::Failed | Self::Cancelled | Self::NeedsAttention => None,
        }
    }

    /// The phase a checkout in this phase moves to when its saga reports `outcome`, or `None` when the outcome
    /// does not apply (a duplicate, or one for a step the checkout is not in): then nothing changes, which makes
    /// redelivered outcomes harmless. A cancellation that cannot be carried out leaves the checkout paid, since
    /// nothing of it was given back for sure; a `Cancelled` is taken for a paid checkout too, for a cancellation
    /// started elsewhere.
    pub fn after(self, outcome: Outcome) -> Option<Self> {
        match (self, outcome) {
            (Self::Pending, Outcome::Paid) => Some(Self::Paid),
            (Self::Pending, Outcome::Failed) => Some(Self::Failed),
            (Self::Pending, Outcome::NeedsAttention) => Some(Self::NeedsAttention),
            (Self::Paid | Self::Cancelling, Outcome::Cancelled) => Some(Self::Cancelled),
            (Self::Cancelling, Outcome::NeedsAttention) => Some(Self::Paid),
            (Self::Pending, Outcome::Cancelled)
            | (Self::Paid | Self::Cancelling, Outcome::Paid | Outcome::Failed)
            | (Self::Paid, Outcome::NeedsAttention)
            | (Self::Failed | Self::Cancelled | Self::NeedsAttention, _) => None,
        }
    }
}

impl Outcome {
    /// The kind of `outcome`.
    pub fn of(outcome: &CheckoutOutcome) -> Self {
        match outcome {
            CheckoutOutcome::Paid { .. } => Self::Paid,
            CheckoutOutcome::Failed { .. } => Self::Failed,
            CheckoutOutcome::Cancelled { .. } => Self::Cancelled,
            CheckoutOutcome::NeedsAttention { .. } => Self::NeedsAttention,
        }
    }

    /// Every move this outcome makes, as (from, to): the phases it applies to ([`CheckoutPhase::after`]) and where
    /// each goes. Recording it applies the one whose `from` is the checkout's phase, if any.
    pub fn moves(self) -> impl Iterator<Item = (CheckoutPhase, CheckoutPhase)> {
        CheckoutPhase::ALL.into_iter().filter_map(move |from| from.after(self).map(|to| (from, to)))
    }
}

/// How a checkout stands: its [`CheckoutPhase`] with what the phase keeps in the row's `reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckoutState {
    /// The saga has not reported back yet.
    Pending,
    /// The order is paid. `cancel_problem` says why the last cancellation of it could not be carried out, when
    /// one was tried and ended so.
    Paid {
        /// What the coordinator reported when the cancellation ended needing attention.
        cancel_problem: Option<String>,
    },
    /// Nothing was taken or charged, for this reason.
    Failed(FailureReason),
    /// The saga could neither complete nor be fully undone; the order is unpaid and an operator must repair it.
    NeedsAttention {
        /// What the coordinator reported.
        problem: String,
    },
    /// The paid checkout is being undone.
    Cancelling,
    /// The paid checkout was undone.
    Cancelled,
}

/// The answer to a checkout request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckoutAnswer {
    /// The order is paid (now, or it was already).
    Paid,
    /// The saga failed: nothing was taken or charged.
    Failed(FailureReason),
    /// The saga could neither complete nor undo what it did; the order is unpaid.
    NeedsAttention(Stuck),
    /// The deadline passed with the saga still running; it finishes on its own.
    StillRunning,
    /// The checkout's record vanished while waiting: a `batch_init` replaced the order.
    Discarded,
}

/// The answer to a cancellation request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelAnswer {
    /// The order's checkout is undone and the order unpaid (now, or it already was).
    Cancelled,
    /// The saga could not be undone; the order is still paid.
    NeedsAttention(Stuck),
    /// The deadline passed with the cancellation still running; it finishes on its own.
    StillRunning,
    /// The checkout's record vanished while waiting: a `batch_init` replaced the order.
    Discarded,
}

/// A saga that could neither complete nor be fully undone, which an operator must repair through the
/// coordinator's admin endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stuck {
    /// The saga.
    pub saga_id: SagaId,
    /// What the coordinator reported.
    pub problem: String,
}

impl fmt::Display for Stuck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "checkout {} could neither complete nor be fully undone: {}; an operator must repair it",
            self.saga_id, self.problem
        )
    }
}

impl CheckoutState {
    /// The answer that checkout `saga_id`, standing so, gives a checkout request, if the checkout is settled. A
    /// checkout that was paid and has been cancelled since, or is being cancelled, was paid when the request's
    /// saga ended.
    pub fn checkout_answer(self, saga_id: SagaId) -> Option<CheckoutAnswer> {
        match self {
            Self::Pending => None,
            Self::Paid { .. } | Self::Cancelling | Self::Cancelled => Some(CheckoutAnswer::Paid),
            Self::Failed(reason) => Some(CheckoutAnswer::Failed(reason)),
            Self::NeedsAttention { problem } => Some(CheckoutAnswer::NeedsAttention(Stuck { saga_id, problem })),
        }
    }

    /// The answer that checkout `saga_id`, standing so, gives a cancellation request, if the cancellation has
    /// ended. It ends cancelled, or back at paid, with the problem that kept it from being carried out. The other
    /// states are ones a paid checkout never returns to; they are answered as needing attention rather than
    /// waited out.
    pub fn cancel_answer(self, saga_id: SagaId) -> Option<CancelAnswer> {
        let stuck = |problem: String| Some(CancelAnswer::NeedsAttention(Stuck { saga_id, problem }));
        match self {
            Self::Cancelling => None,
            Self::Cancelled => Some(CancelAnswer::Cancelled),
            Self::Paid { cancel_problem: Some(problem) } | Self::NeedsAttention { problem } => stuck(problem),
            Self::Paid { cancel_problem: None } => stuck("the cancellation ended with the order still paid".into()),
            Self::Failed(reason) => stuck(format!("the checkout is recorded as failed: {reason}")),
            Self::Pending => stuck("the checkout is recorded as not yet paid".into()),
        }
    }
}

/// One line of an order as stored: how many units of the item, and what they cost when they were added.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Line {
    /// Units of the item.
    pub quantity: u64,
    /// The sum of `quantity * price` over every addition to the line, at the price of its time.
    pub unit_total: u64,
}

/// An order's total and one of its lines after adding `quantity` units at `price` to `line`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addition {
    /// The order's new total.
    pub total: u64,
    /// The line's new state.
    pub line: Line,
}

/// Adds `quantity` units at `price` each to `line` (a default line when the item is new to the order) of an order
/// whose total is `total`. Refused when any of the results would not fit a `BIGINT`.
pub fn add_units(total: u64, line: Line, quantity: u64, price: u64) -> Result<Addition, Refusal> {
    let fits = |value: Option<u64>| value.filter(|&v| v <= MAX_AMOUNT).ok_or(Refusal::TooLarge);
    let cost = fits(quantity.checked_mul(price))?;
    Ok(Addition {
        total: fits(total.checked_add(cost))?,
        line: Line {
            quantity: fits(line.quantity.checked_add(quantity))?,
            unit_total: fits(line.unit_total.checked_add(cost))?,
        },
    })
}

/// The order's total after removing `line` from it. The total always includes the line's cost, since both are
/// changed together; saturating keeps a damaged row from turning into a negative total.
pub fn remove_line(total: u64, line: Line) -> u64 {
    total.saturating_sub(line.unit_total)
}

/// Merges `lines` into one line per item, sorted by item ID, the form a checkout request takes.
pub fn aggregate_lines(lines: impl IntoIterator<Item = LineItem>) -> Vec<LineItem> {
    let mut per_item: BTreeMap<String, u64> = BTreeMap::new();
    for line in lines {
        let quantity = per_item.entry(line.item_id).or_default();
        *quantity = quantity.saturating_add(line.quantity);
    }
    per_item.into_iter().map(|(item_id, quantity)| LineItem { item_id, quantity }).collect()
}

/// A `batch_init` request: orders `"0"` to `"orders - 1"`, each of two random items of `"0"` to `"items - 1"` at
/// `item_price` each, bought by a random user of `"0"` to `"users - 1"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchInit {
    /// How many orders.
    pub orders: u64,
    /// How many items to pick from.
    pub items: u64,
    /// How many users to pick from.
    pub users: u64,
    /// The price of one unit of every item.
    pub item_price: u64,
}

/// Why a `batch_init` request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidBatch {
    /// A count is 0 or above [`MAX_BATCH`].
    #[error("{0} must be between 1 and {MAX_BATCH}")]
    CountOutOfRange(&'static str),
    /// Two units at this price would not fit a `BIGINT`.
    #[error("item_price {0} is too large: an order of two items would exceed the maximum of {MAX_AMOUNT}")]
    PriceTooLarge(u64),
}

/// Units per order that `batch_init` creates.
pub const BATCH_UNITS_PER_ORDER: u64 = 2;

impl BatchInit {
    /// Checks the counts and that an order's total fits.
    pub fn new(orders: u64, items: u64, users: u64, item_price: u64) -> Result<Self, InvalidBatch> {
        for (name, count) in [("n", orders), ("n_items", items), ("n_users", users)] {
            if !(1..=MAX_BATCH).contains(&count) {
                return Err(InvalidBatch::CountOutOfRange(name));
            }
        }
        if item_price.checked_mul(BATCH_UNITS_PER_ORDER).is_none_or(|total| total > MAX_AMOUNT) {
            return Err(InvalidBatch::PriceTooLarge(item_price));
        }
        Ok(Self { orders, items, users, item_price })
    }

    /// The total of every order of the batch.
    pub fn order_total(&self) -> u64 {
        self.item_price * BATCH_UNITS_PER_ORDER
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const OPEN: OrderStatus = OrderStatus { paid: false, in_flight: None };
    const NEVER_PAID: CancelFacts = CancelFacts { paid_checkout: None, last_cancelled: false };

    fn in_flight() -> OrderStatus {
        OrderStatus { paid: false, in_flight: Some(InFlight::Checkout(SagaId::new())) }
    }

    fn line(item_id: &str, quantity: u64) -> LineItem {
        LineItem { item_id: item_id.to_owned(), quantity }
    }

    fn facts(status: OrderStatus, has_items: bool) -> Option<CheckoutFacts> {
        Some(CheckoutFacts { status, has_items })
    }

    /// Saga IDs handed out in order, so that a test can name the sagas a plan starts.
    fn sagas(n: usize) -> (Vec<SagaId>, impl FnMut() -> SagaId) {
        let ids: Vec<SagaId> = (0..n).map(|_| SagaId::new()).collect();
        let mut next = ids.clone().into_iter();
        (ids, move || next.next().expect("enough saga IDs"))
    }

    fn ids(order_ids: &[&str]) -> Vec<String> {
        order_ids.iter().map(|id| (*id).to_owned()).collect()
    }

    #[test]
    fn a_batch_starts_one_saga_per_open_order_and_later_requests_for_it_join() {
        let (new, next) = sagas(2);
        let plan = plan_intake(&ids(&["a", "b", "a", "a"]), |_| facts(OPEN, true), next);
        assert_eq!(
            plan.answers,
            vec![
                Ok(Begun::Started(new[0])),
                Ok(Begun::Started(new[1])),
                Ok(Begun::Joined(new[0])),
                Ok(Begun::Joined(new[0]))
            ]
        );
        assert_eq!(
            plan.started,
            vec![NewCheckout { saga_id: new[0], request: 0 }, NewCheckout { saga_id: new[1], request: 1 }]
        );
    }

    #[test]
    fn a_batch_answers_each_order_as_its_state_says_and_starts_nothing_else() {
        let in_flight_saga = SagaId::new();
        let status_of = |order_id: &str| match order_id {
            "paid" => facts(OrderStatus { paid: true, in_flight: None }, true),
            "pending" => facts(OrderStatus { paid: false, in_flight: Some(InFlight::Checkout(in_flight_saga)) }, true),
            "cancelling" => facts(OrderStatus { paid: true, in_flight: Some(InFlight::Cancel(in_flight_saga)) }, true),
            "empty" => facts(OPEN, false),
            _ => None,
        };
        let order_ids = ids(&["paid", "pending", "cancelling", "empty", "ghost", "paid", "empty"]);
        let plan = plan_intake(&order_ids, status_of, || panic!("no saga is started"));
        assert_eq!(
            plan.answers,
            vec![
                Ok(Begun::AlreadyPaid),
                Ok(Begun::Joined(in_flight_saga)),
                Err(NotBegun::Refused(Refusal::CancellationInProgress)),
                Err(NotBegun::Refused(Refusal::NoItems)),
                Err(NotBegun::UnknownOrder),
                Ok(Begun::AlreadyPaid),
                Err(NotBegun::Refused(Refusal::NoItems)),
            ]
        );
        assert!(plan.started.is_empty());
    }

    #[test]
    fn a_saga_in_flight_is_asked_again_for_what_it_was_sent_for() {
        let saga_id = SagaId::new();
        let order = Snapshot { order_id: "o".into(), user_id: "u".into(), total: 3, lines: vec![line("a", 1)] };
        assert_eq!(
            InFlight::Checkout(saga_id).request_again(order.clone()),
            CoordinatorRequest::Start { saga_id, order: order.clone() }
        );
        assert_eq!(
            InFlight::Cancel(saga_id).request_again(order),
            CoordinatorRequest::Cancel { saga_id, order_id: "o".into() }
        );
        assert_eq!(CheckoutPhase::Pending.in_flight(saga_id), Some(InFlight::Checkout(saga_id)));
        assert_eq!(CheckoutPhase::Cancelling.in_flight(saga_id), Some(InFlight::Cancel(saga_id)));
        for settled in
            [CheckoutPhase::Paid, CheckoutPhase::Failed, CheckoutPhase::Cancelled, CheckoutPhase::NeedsAttention]
        {
            assert_eq!(settled.in_flight(saga_id), None, "{settled:?}");
        }
    }

    #[test]
    fn an_outcome_moves_exactly_the_phases_it_applies_to() {
        let order_id = "o".to_owned();
        let cancelled = CheckoutOutcome::Cancelled { order_id: order_id.clone() };
        assert_eq!(Outcome::of(&CheckoutOutcome::Paid { order_id: order_id.clone() }), Outcome::Paid);
        assert_eq!(Outcome::of(&cancelled), Outcome::Cancelled);
        let moves: Vec<_> = Outcome::of(&cancelled).moves().collect();
        use CheckoutPhase::*;
        assert_eq!(moves, vec![(Paid, Cancelled), (Cancelling, Cancelled)]);
        assert_eq!(
            Outcome::NeedsAttention.moves().collect::<Vec<_>>(),
            vec![(Pending, NeedsAttention), (Cancelling, Paid)]
        );
        for outcome in [Outcome::Paid, Outcome::Failed, Outcome::Cancelled, Outcome::NeedsAttention] {
            for (from, to) in outcome.moves() {
                assert_eq!(from.after(outcome), Some(to));
            }
        }
    }

    #[test]
    fn a_checkout_request_is_answered_once_its_checkout_is_settled() {
        let saga_id = SagaId::new();
        assert_eq!(CheckoutState::Pending.checkout_answer(saga_id), None);
        for paid in [CheckoutState::Paid { cancel_problem: None }, CheckoutState::Cancelling, CheckoutState::Cancelled]
        {
            assert_eq!(paid.clone().checkout_answer(saga_id), Some(CheckoutAnswer::Paid), "{paid:?}");
        }
        let failed = CheckoutState::Failed(FailureReason::Aborted);
        assert_eq!(failed.checkout_answer(saga_id), Some(CheckoutAnswer::Failed(FailureReason::Aborted)));
        let problem = "item is gone".to_owned();
        assert_eq!(
            CheckoutState::NeedsAttention { problem: problem.clone() }.checkout_answer(saga_id),
            Some(CheckoutAnswer::NeedsAttention(Stuck { saga_id, problem }))
        );
    }

    #[test]
    fn a_cancellation_ends_cancelled_or_stuck_with_its_problem() {
        let saga_id = SagaId::new();
        assert_eq!(CheckoutState::Cancelling.cancel_answer(saga_id), None);
        assert_eq!(CheckoutState::Cancelled.cancel_answer(saga_id), Some(CancelAnswer::Cancelled));
        let problem = "refund refused".to_owned();
        assert_eq!(
            CheckoutState::Paid { cancel_problem: Some(problem.clone()) }.cancel_answer(saga_id),
            Some(CancelAnswer::NeedsAttention(Stuck { saga_id, problem }))
        );
        let still_paid = "the cancellation ended with the order still paid".to_owned();
        assert_eq!(
            CheckoutState::Paid { cancel_problem: None }.cancel_answer(saga_id),
            Some(CancelAnswer::NeedsAttention(Stuck { saga_id, problem: still_paid }))
        );
    }

    #[test]
    fn items_change_only_while_the_order_is_open() {
        let line = Line { quantity: 1, unit_total: 4 };
        assert_eq!(OPEN.addition(4, line, 1, 4), add_units(4, line, 1, 4));
        assert_eq!(OPEN.removal(4, line), Ok(0));
        assert_eq!(in_flight().addition(4, line, 1, 4), Err(Refusal::CheckoutInProgress));
        assert_eq!(in_flight().removal(4, line), Err(Refusal::CheckoutInProgress));
        let paid = OrderStatus { paid: true, in_flight: None };
        assert_eq!(paid.addition(4, line, 1, 4), Err(Refusal::AlreadyPaid));
        assert_eq!(OPEN.addition(MAX_AMOUNT, line, 1, 1), Err(Refusal::TooLarge));
    }

    #[test]
    fn an_open_order_can_be_edited_deleted_and_checked_out() {
        assert_eq!(OPEN.check_items_editable(), Ok(()));
        assert_eq!(OPEN.check_deletable(), Ok(()));
        assert_eq!(OPEN.checkout_step(true), Ok(CheckoutStep::Start));
    }

    #[test]
    fn a_paid_order_is_final_and_its_checkout_is_answered_at_once() {
        let paid = OrderStatus { paid: true, in_flight: None };
        assert_eq!(paid.check_items_editable(), Err(Refusal::AlreadyPaid));
        assert_eq!(paid.check_deletable(), Err(Refusal::AlreadyPaid));
        assert_eq!(paid.checkout_step(true), Ok(CheckoutStep::AlreadyPaid));
        assert_eq!(paid.checkout_step(false), Ok(CheckoutStep::AlreadyPaid));
    }

    #[test]
    fn an_order_in_checkout_is_frozen_and_a_second_checkout_joins_the_saga() {
        let saga_id = SagaId::new();
        let status = OrderStatus { paid: false, in_flight: Some(InFlight::Checkout(saga_id)) };
        assert_eq!(status.check_items_editable(), Err(Refusal::CheckoutInProgress));
        assert_eq!(status.check_deletable(), Err(Refusal::CheckoutInProgress));
        assert_eq!(status.checkout_step(true), Ok(CheckoutStep::Join(saga_id)));
    }

    #[test]
    fn a_paid_order_is_cancelled_by_undoing_the_checkout_that_paid_it() {
        let saga_id = SagaId::new();
        let paid = OrderStatus { paid: true, in_flight: None };
        let facts = CancelFacts { paid_checkout: Some(saga_id), last_cancelled: false };
        assert_eq!(paid.cancel_step(facts), Ok(CancelStep::Start(saga_id)));
        assert_eq!(paid.cancel_step(NEVER_PAID), Err(Refusal::PaidWithoutCheckout));
    }

    #[test]
    fn an_order_being_cancelled_is_frozen_and_a_second_cancel_joins_the_cancellation() {
        let saga_id = SagaId::new();
        let cancelling = OrderStatus { paid: true, in_flight: Some(InFlight::Cancel(saga_id)) };
        assert_eq!(cancelling.check_items_editable(), Err(Refusal::CancellationInProgress));
        assert_eq!(cancelling.check_deletable(), Err(Refusal::CancellationInProgress));
        assert_eq!(cancelling.checkout_step(true), Err(Refusal::CancellationInProgress));
        let facts = CancelFacts { paid_checkout: None, last_cancelled: false };
        assert_eq!(cancelling.cancel_step(facts), Ok(CancelStep::Join(saga_id)));
    }

    #[test]
    fn a_cancel_during_a_checkout_is_refused_not_waited_for() {
        assert_eq!(in_flight().cancel_step(NEVER_PAID), Err(Refusal::CancelDuringCheckout));
    }

    #[test]
    fn an_unpaid_order_is_cancelled_only_if_its_last_checkout_was() {
        assert_eq!(OPEN.cancel_step(NEVER_PAID), Err(Refusal::NotPaid));
        let cancelled = CancelFacts { paid_checkout: None, last_cancelled: true };
        assert_eq!(OPEN.cancel_step(cancelled), Ok(CancelStep::AlreadyCancelled));
    }

    #[test]
    fn a_pending_checkout_takes_the_outcome_of_its_saga() {
        use CheckoutPhase::*;
        assert_eq!(Pending.after(Outcome::Paid), Some(Paid));
        assert_eq!(Pending.after(Outcome::Failed), Some(Failed));
        assert_eq!(Pending.after(Outcome::NeedsAttention), Some(NeedsAttention));
        assert_eq!(Pending.after(Outcome::Cancelled), None);
    }

    #[test]
    fn a_cancellation_ends_cancelled_or_back_at_paid() {
        use CheckoutPhase::*;
        assert_eq!(Cancelling.after(Outcome::Cancelled), Some(Cancelled));
        assert_eq!(Cancelling.after(Outcome::NeedsAttention), Some(Paid));
        assert_eq!(Paid.after(Outcome::Cancelled), Some(Cancelled), "a cancellation started elsewhere");
        assert_eq!(Cancelling.after(Outcome::Paid), None, "a repeated Paid of the checkout");
        assert_eq!(Paid.after(Outcome::NeedsAttention), None);
    }

    #[test]
    fn a_finished_checkout_ignores_every_outcome() {
        for phase in [CheckoutPhase::Failed, CheckoutPhase::Cancelled, CheckoutPhase::NeedsAttention] {
            for outcome in [Outcome::Paid, Outcome::Failed, Outcome::Cancelled, Outcome::NeedsAttention] {
                assert_eq!(phase.after(outcome), None, "{phase:?} after {outcome:?}");
            }
        }
    }

    #[test]
    fn the_order_is_paid_exactly_while_its_checkout_is_paid_or_being_cancelled() {
        let paid: Vec<_> = CheckoutPhase::ALL.into_iter().filter(|phase| phase.order_paid()).collect();
        assert_eq!(paid, vec![CheckoutPhase::Paid, CheckoutPhase::Cancelling]);
        for phase in CheckoutPhase::ALL {
            assert_eq!(CheckoutPhase::parse(phase.as_str()), Some(phase));
        }
        assert_eq!(CheckoutPhase::parse("lost"), None);
    }

    #[test]
    fn an_empty_order_cannot_be_checked_out() {
        assert_eq!(OPEN.checkout_step(false), Err(Refusal::NoItems));
    }

    #[test]
    fn adding_units_grows_the_line_and_the_total_by_their_cost() {
        let added = add_units(100, Line { quantity: 2, unit_total: 20 }, 3, 7).unwrap();
        assert_eq!(added, Addition { total: 121, line: Line { quantity: 5, unit_total: 41 } });
        let first = add_units(0, Line::default(), 1, 0).unwrap();
        assert_eq!(first, Addition { total: 0, line: Line { quantity: 1, unit_total: 0 } });
    }

    #[test]
    fn adding_beyond_bigint_is_refused() {
        let max = MAX_AMOUNT;
        assert_eq!(add_units(0, Line::default(), 2, max / 2 + 1), Err(Refusal::TooLarge));
        assert_eq!(add_units(max, Line::default(), 1, 1), Err(Refusal::TooLarge));
        assert_eq!(add_units(0, Line { quantity: max, unit_total: 0 }, 1, 0), Err(Refusal::TooLarge));
        assert_eq!(add_units(0, Line::default(), u64::MAX, 2), Err(Refusal::TooLarge));
        assert!(add_units(0, Line::default(), max, 1).is_ok());
    }

    #[test]
    fn removing_a_line_takes_off_what_it_cost() {
        assert_eq!(remove_line(121, Line { quantity: 5, unit_total: 41 }), 80);
        assert_eq!(remove_line(10, Line { quantity: 1, unit_total: 11 }), 0);
    }

    #[test]
    fn lines_are_merged_per_item_and_sorted() {
        let merged = aggregate_lines([line("b", 1), line("a", 2), line("b", 3)]);
        assert_eq!(merged, vec![line("a", 2), line("b", 4)]);
        assert_eq!(aggregate_lines([]), vec![]);
    }

    #[test]
    fn a_batch_names_counts_in_range_and_a_price_whose_double_fits() {
        let batch = BatchInit::new(100_000, 10, 20, 7).unwrap();
        assert_eq!(batch.order_total(), 14);
        assert_eq!(BatchInit::new(0, 1, 1, 1), Err(InvalidBatch::CountOutOfRange("n")));
        assert_eq!(BatchInit::new(1, MAX_BATCH + 1, 1, 1), Err(InvalidBatch::CountOutOfRange("n_items")));
        assert_eq!(BatchInit::new(1, 1, 0, 1), Err(InvalidBatch::CountOutOfRange("n_users")));
        assert!(BatchInit::new(MAX_BATCH, MAX_BATCH, MAX_BATCH, MAX_AMOUNT / 2).is_ok());
        assert_eq!(BatchInit::new(1, 1, 1, MAX_AMOUNT / 2 + 1), Err(InvalidBatch::PriceTooLarge(MAX_AMOUNT / 2 + 1)));
    }

    proptest! {
        #[test]
        fn adding_then_removing_a_new_line_restores_the_total(
            total in 0..=MAX_AMOUNT, quantity in 1..=MAX_AMOUNT, price in 0..=MAX_AMOUNT,
        ) {
            match add_units(total, Line::default(), quantity, price) {
                Ok(added) => prop_assert_eq!(remove_line(added.total, added.line), total),
                Err(refusal) => {
                    prop_assert_eq!(refusal, Refusal::TooLarge);
                    let sum = u128::from(total) + u128::from(quantity) * u128::from(price);
                    prop_assert!(sum > u128::from(MAX_AMOUNT));
                }
            }
        }

        #[test]
        fn aggregation_keeps_every_unit(lines in prop::collection::vec(("[a-c]", 1..1000u64), 0..20)) {
            let units: u64 = lines.iter().map(|(_, q)| q).sum();
            let merged = aggregate_lines(lines.into_iter().map(|(item_id, quantity)| LineItem { item_id, quantity }));
            prop_assert_eq!(merged.iter().map(|l| l.quantity).sum::<u64>(), units);
            prop_assert!(merged.windows(2).all(|w| w[0].item_id < w[1].item_id));
        }
    }
}
