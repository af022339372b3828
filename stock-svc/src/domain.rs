//! The rules of stock-svc, free of I/O: what an item looks like, why a stock change is refused, and what the saga
//! worker does with a command given what it recorded for that saga before.
//!
//! The saga step of one checkout is a small state machine. It starts with no record; a `Reserve` takes the stock
//! (recorded `reserved`) or is refused (`rejected`); a `Release` gives a reservation back (`released`) or, when it
//! comes first, leaves a `cancelled` tombstone so that the late `Reserve` takes nothing. Every other combination
//! repeats the answer already given, which is what makes redelivered and duplicated commands harmless.
//!
//! Stock is bounded so that every compensation fits: an item keeps, beside its stock, the units reserved by sagas
//! and not released (see [`Holding`]), and no write that adds stock may take the two together beyond
//! [`MAX_STOCK`]. A release moves units from reserved back to stock, so it can never overflow.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use shared_contracts::{FailureReason, LineItem, SagaId, StockCommand, StockReply};

/// The most an item may hold in stock and reserved by checkout sagas together: the largest `BIGINT`. Adding
/// stock (`/stock/add`, `/stock/batch_init`) is refused beyond it, which leaves room for every release to come.
pub const MAX_STOCK: i64 = i64::MAX;

/// The stock and price of one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ItemState {
    /// Units in stock.
    #[schema(minimum = 0)]
    pub stock: i64,
    /// Price of one unit.
    #[schema(minimum = 0)]
    pub price: i64,
}

/// What one item holds: the units in stock, and the units reserved by checkout sagas that a release may still
/// give back. Every write keeps `stock + reserved` within [`MAX_STOCK`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Holding {
    /// Units in stock.
    pub stock: i64,
    /// Units taken by reservations not released.
    pub reserved: i64,
}

impl Holding {
    /// The units the item may still take in: what [`MAX_STOCK`] leaves beside its stock and reservations.
    pub fn room(self) -> i64 {
        MAX_STOCK.saturating_sub(self.stock).saturating_sub(self.reserved).max(0)
    }

    /// The holding after a reservation takes `quantity` from stock, if there is that much.
    pub fn reserve(self, quantity: i64) -> Option<Self> {
        let stock = self.stock.checked_sub(quantity).filter(|&left| left >= 0)?;
        // Saturating: only records older than the `reserved` count can make the sum exceed the maximum.
        Some(Self { stock, reserved: self.reserved.saturating_add(quantity) })
    }

    /// The holding after a release gives `quantity` back to stock, unless the stock would pass [`MAX_STOCK`]
    /// (which the bound on additions rules out unless the data was edited behind the service's back).
    pub fn release(self, quantity: i64) -> Option<Self> {
        let stock = self.stock.checked_add(quantity)?;
        // Floored at zero: a reservation made by a replica that did not count it yet (during an upgrade) is
        // given back all the same.
        Some(Self { stock, reserved: self.reserved.saturating_sub(quantity).max(0) })
    }
}

/// Why a change to an item's stock was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StockError {
    /// No item has this ID.
    #[error("item {0} does not exist")]
    UnknownItem(String),
    /// Subtracting would take the stock below zero.
    #[error("item {item_id} has {in_stock} in stock, cannot subtract {requested}")]
    NotEnoughStock {
        /// The item.
        item_id: String,
        /// Its stock when the subtraction was refused.
        in_stock: i64,
        /// What was asked for.
        requested: i64,
    },
    /// Adding would take stock and reservations together beyond [`MAX_STOCK`].
    #[error(
        "item {item_id} has {in_stock} in stock and {reserved} reserved by checkouts, adding {added} would exceed \
         the maximum of {MAX_STOCK} for the two together"
    )]
    TooMuchStock {
        /// The item.
        item_id: String,
        /// Its stock when the addition was refused.
        in_stock: i64,
        /// Its units reserved by checkouts.
        reserved: i64,
        /// What was to be added.
        added: i64,
    },
    /// Setting the stock would take it and the reservations together beyond [`MAX_STOCK`].
    #[error(
        "item {item_id} has {reserved} reserved by checkouts, a stock of {stock} would exceed the maximum of \
         {MAX_STOCK} for the two together"
    )]
    NoRoomForReserved {
        /// The item.
        item_id: String,
        /// The stock it was to be set to.
        stock: i64,
        /// Its units reserved by checkouts.
        reserved: i64,
    },
}

/// The holding of `item_id` after adding `amount` to its stock; refused when there is not that much room.
pub fn add_stock(item_id: &str, holding: Holding, amount: i64) -> Result<Holding, StockError> {
    if amount > holding.room() {
        return Err(StockError::TooMuchStock {
            item_id: item_id.to_owned(),
            in_stock: holding.stock,
            reserved: holding.reserved,
            added: amount,
        });
    }
    Ok(Holding { stock: holding.stock + amount, ..holding })
}

/// Whether `item_id`, holding `reserved` for checkouts, may have its stock set to `stock` (as `batch_init` does).
pub fn check_new_stock(item_id: &str, stock: i64, reserved: i64) -> Result<(), StockError> {
    if stock > MAX_STOCK.saturating_sub(reserved) {
        return Err(StockError::NoRoomForReserved { item_id: item_id.to_owned(), stock, reserved });
    }
    Ok(())
}

/// Why a saga command can never be applied. It changes nothing; the coordinator is told, and the command goes to
/// the dead letters, since retrying cannot help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unprocessable {
    /// A reservation to give back names an item that no longer exists.
    #[error("item {item_id} of the reservation no longer exists")]
    ItemGone {
        /// The missing item.
        item_id: String,
    },
    /// Giving a line back would take the item's stock beyond [`MAX_STOCK`].
    #[error("item {item_id} has {in_stock} in stock, giving back {released} would exceed the maximum of {MAX_STOCK}")]
    WouldOverflow {
        /// The item.
        item_id: String,
        /// Its stock now.
        in_stock: i64,
        /// What the release gives back.
        released: i64,
    },
}

/// One line of a reservation, as the database takes it: a distinct item and a quantity that fits a `BIGINT`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    /// The item.
    pub item_id: String,
    /// How many units.
    pub quantity: i64,
}

/// What the worker recorded for one saga; one variant per value of the `saga_steps.state` column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordedStep {
    /// The lines were taken from stock.
    Reserved {
        /// What was taken.
        lines: Vec<Line>,
    },
    /// Nothing was taken.
    Rejected {
        /// What was asked for.
        items: Vec<LineItem>,
        /// Why it was refused.
        reason: FailureReason,
    },
    /// A reservation was given back.
    Released {
        /// What was given back.
        lines: Vec<Line>,
    },
    /// The release came before any reservation: none will be made for this saga.
    Cancelled,
}

/// What the worker must do for one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepAction {
    /// The command was decided before: answer the same way and change nothing.
    Repeat(StockReply),
    /// Take these lines, in this order, all or nothing, and record the outcome.
    Reserve(Vec<Line>),
    /// Refuse without touching stock (the request can never be met) and record it.
    Reject(FailureReason),
    /// Put these lines back into stock and record the saga as released.
    Restore(Vec<Line>),
    /// Record a cancelled tombstone so that a later reserve is refused, and answer released.
    Tombstone,
}

/// Decides what `command` means for a saga whose record is `recorded`.
pub fn decide(recorded: Option<&RecordedStep>, command: &StockCommand) -> StepAction {
    match (recorded, command) {
        (None, StockCommand::Reserve { items }) => match lines_to_take(items) {
            Ok(lines) => StepAction::Reserve(lines),
            Err(reason) => StepAction::Reject(reason),
        },
        (Some(RecordedStep::Reserved { .. }), StockCommand::Reserve { .. }) => StepAction::Repeat(StockReply::Reserved),
        (Some(RecordedStep::Rejected { reason, .. }), StockCommand::Reserve { .. }) => {
            StepAction::Repeat(StockReply::Rejected { reason: reason.clone() })
        }
        (Some(RecordedStep::Released { .. } | RecordedStep::Cancelled), StockCommand::Reserve { .. }) => {
            StepAction::Repeat(StockReply::Rejected { reason: FailureReason::Cancelled })
        }
        (None, StockCommand::Release) => StepAction::Tombstone,
        (Some(RecordedStep::Reserved { lines }), StockCommand::Release) => StepAction::Restore(lines.clone()),
        (
            Some(RecordedStep::Rejected { .. } | RecordedStep::Released { .. } | RecordedStep::Cancelled),
            StockCommand::Release,
        ) => StepAction::Repeat(StockReply::Released),
    }
}

/// What a batch of saga commands does, worked out in memory from the rows the batch locked: one outcome per
/// command and the rows to write back. The worker writes it with a few set-based statements instead of several
/// round trips per command.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BatchPlan {
    /// Per command, in the order the commands were given: the reply for the coordinator, or why the command can
    /// never be applied (it then changed nothing).
    pub outcomes: Vec<Result<StockReply, Unprocessable>>,
    /// The new holding of every item the batch changed.
    pub stock: BTreeMap<String, Holding>,
    /// Records of sagas that had none before the batch: their state at its end.
    pub inserted: BTreeMap<SagaId, RecordedStep>,
    /// Records that existed before the batch and changed in it: their state at its end.
    pub updated: BTreeMap<SagaId, RecordedStep>,
}

/// The items a batch must lock and read before it is planned: every item a reservation asks for, and every item of
/// a recorded reservation that a release may give back. Sorted, without duplicates.
pub fn items_to_lock<'a>(
    recorded: &'a HashMap<SagaId, RecordedStep>,
    commands: &[(SagaId, &'a StockCommand)],
) -> Vec<&'a str> {
    let mut wanted = BTreeSet::new();
    for (saga_id, command) in commands {
        match command {
            StockCommand::Reserve { items } => wanted.extend(items.iter().map(|item| item.item_id.as_str())),
            StockCommand::Release => {
                if let Some(RecordedStep::Reserved { lines }) = recorded.get(saga_id) {
                    wanted.extend(lines.iter().map(|line| line.item_id.as_str()));
                }
            }
        }
    }
    wanted.into_iter().collect()
}

/// Applies `commands` in order to the sagas' records `recorded` and the items' holdings `stock` (an item missing
/// from `stock` does not exist), each command exactly as [`decide`] rules, every command seeing what the ones
/// before it did. A command that can never be applied (see [`Unprocessable`]) changes nothing and holds back none
/// of the others.
pub fn plan_batch(
    recorded: &HashMap<SagaId, RecordedStep>,
    stock: &HashMap<String, Holding>,
    commands: &[(SagaId, &StockCommand)],
) -> BatchPlan {
    let mut records: HashMap<SagaId, RecordedStep> = HashMap::new();
    let mut levels: HashMap<String, Holding> = HashMap::new();
    let mut outcomes = Vec::with_capacity(commands.len());
    for &(saga_id, command) in commands {
        let current = records.get(&saga_id).or_else(|| recorded.get(&saga_id));
        let decided = match decide(current, command) {
            StepAction::Repeat(reply) => Ok((reply, None)),
            StepAction::Reserve(lines) => Ok(match take(stock, &mut levels, &lines) {
                Ok(()) => (StockReply::Reserved, Some(RecordedStep::Reserved { lines })),
                Err(reason) => rejected(command, reason),
            }),
            StepAction::Reject(reason) => Ok(rejected(command, reason)),
            StepAction::Restore(lines) => put_back(stock, &mut levels, &lines)
                .map(|()| (StockReply::Released, Some(RecordedStep::Released { lines }))),
            StepAction::Tombstone => Ok((StockReply::Released, Some(RecordedStep::Cancelled))),
        };
        outcomes.push(decided.map(|(reply, record)| {
            if let Some(record) = record {
                records.insert(saga_id, record);
            }
            reply
        }));
    }
    let mut plan = BatchPlan { outcomes, ..BatchPlan::default() };
    for (item_id, level) in levels {
        if stock.get(&item_id) != Some(&level) {
            plan.stock.insert(item_id, level);
        }
    }
    for (saga_id, record) in records {
        match recorded.get(&saga_id) {
            None => {
                plan.inserted.insert(saga_id, record);
            }
            Some(before) if *before != record => {
                plan.updated.insert(saga_id, record);
            }
            Some(_) => {}
        }
    }
    plan
}

fn rejected(command: &StockCommand, reason: FailureReason) -> (StockReply, Option<RecordedStep>) {
    let items = match command {
        StockCommand::Reserve { items } => items.clone(),
        StockCommand::Release => Vec::new(),
    };
    (StockReply::Rejected { reason: reason.clone() }, Some(RecordedStep::Rejected { items, reason }))
}

/// The holding of `item_id` as the batch has left it so far.
fn level(stock: &HashMap<String, Holding>, levels: &HashMap<String, Holding>, item_id: &str) -> Option<Holding> {
    levels.get(item_id).or_else(|| stock.get(item_id)).copied()
}

/// Takes every line or none; the first line that is unknown or short refuses the whole reservation.
fn take(
    stock: &HashMap<String, Holding>,
    levels: &mut HashMap<String, Holding>,
    lines: &[Line],
) -> Result<(), FailureReason> {
    let mut taken = Vec::with_capacity(lines.len());
    for line in lines {
        let held = level(stock, levels, &line.item_id)
            .ok_or_else(|| FailureReason::UnknownItem { item_id: line.item_id.clone() })?;
        let after =
            held.reserve(line.quantity).ok_or_else(|| FailureReason::OutOfStock { item_id: line.item_id.clone() })?;
        taken.push((line.item_id.clone(), after));
    }
    levels.extend(taken);
    Ok(())
}

/// Gives every line back or none; the first line whose item is gone or full refuses the whole release.
fn put_back(
    stock: &HashMap<String, Holding>,
    levels: &mut HashMap<String, Holding>,
    lines: &[Line],
) -> Result<(), Unprocessable> {
    let mut restored = Vec::with_capacity(lines.len());
    for line in lines {
        let held = level(stock, levels, &line.item_id)
            .ok_or_else(|| Unprocessable::ItemGone { item_id: line.item_id.clone() })?;
        let after = held.release(line.quantity).ok_or_else(|| Unprocessable::WouldOverflow {
            item_id: line.item_id.clone(),
            in_stock: held.stock,
            released: line.quantity,
        })?;
        restored.push((line.item_id.clone(), after));
    }
    levels.extend(restored);
    Ok(())
}

/// The lines of a reservation in the order the database must take them: one line per item (duplicates summed)
/// sorted by item ID, so that two transactions taking overlapping items lock them in the same order and cannot
/// deadlock. A quantity beyond what any stock can hold is refused as out of stock.
pub fn lines_to_take(items: &[LineItem]) -> Result<Vec<Line>, FailureReason> {
    let mut merged: BTreeMap<&str, i64> = BTreeMap::new();
    for item in items {
        let out_of_stock = || FailureReason::OutOfStock { item_id: item.item_id.clone() };
        let quantity = i64::try_from(item.quantity).map_err(|_| out_of_stock())?;
        let total = merged.entry(&item.item_id).or_insert(0);
        *total = total.checked_add(quantity).ok_or_else(out_of_stock)?;
    }
    Ok(merged.into_iter().map(|(item_id, quantity)| Line { item_id: item_id.to_owned(), quantity }).collect())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn item(id: &str, quantity: u64) -> LineItem {
        LineItem { item_id: id.into(), quantity }
    }

    fn line(id: &str, quantity: i64) -> Line {
        Line { item_id: id.into(), quantity }
    }

    fn reserve(items: &[LineItem]) -> StockCommand {
        StockCommand::Reserve { items: items.to_vec() }
    }

    #[test]
    fn a_first_reserve_takes_its_lines_in_item_order() {
        let action = decide(None, &reserve(&[item("b", 1), item("a", 2)]));
        assert_eq!(action, StepAction::Reserve(vec![line("a", 2), line("b", 1)]));
    }

    #[test]
    fn a_reserve_that_can_never_be_met_is_rejected_without_touching_stock() {
        let action = decide(None, &reserve(&[item("a", u64::MAX)]));
        assert_eq!(action, StepAction::Reject(FailureReason::OutOfStock { item_id: "a".into() }));
    }

    #[test]
    fn a_repeated_reserve_repeats_its_answer() {
        let reserved = RecordedStep::Reserved { lines: vec![line("a", 1)] };
        assert_eq!(decide(Some(&reserved), &reserve(&[item("a", 1)])), StepAction::Repeat(StockReply::Reserved));

        let reason = FailureReason::UnknownItem { item_id: "x".into() };
        let rejected = RecordedStep::Rejected { items: vec![item("x", 1)], reason: reason.clone() };
        assert_eq!(
            decide(Some(&rejected), &reserve(&[item("x", 1)])),
            StepAction::Repeat(StockReply::Rejected { reason })
        );
    }

    #[test]
    fn a_reserve_after_a_release_is_refused_as_cancelled() {
        let cancelled = StockReply::Rejected { reason: FailureReason::Cancelled };
        let released = RecordedStep::Released { lines: vec![line("a", 1)] };
        assert_eq!(decide(Some(&released), &reserve(&[item("a", 1)])), StepAction::Repeat(cancelled.clone()));
        assert_eq!(decide(Some(&RecordedStep::Cancelled), &reserve(&[item("a", 1)])), StepAction::Repeat(cancelled));
    }

    #[test]
    fn a_release_gives_back_exactly_what_was_reserved() {
        let reserved = RecordedStep::Reserved { lines: vec![line("a", 2), line("b", 1)] };
        assert_eq!(
            decide(Some(&reserved), &StockCommand::Release),
            StepAction::Restore(vec![line("a", 2), line("b", 1)])
        );
    }

    #[test]
    fn a_release_before_any_reserve_leaves_a_tombstone() {
        assert_eq!(decide(None, &StockCommand::Release), StepAction::Tombstone);
    }

    #[test]
    fn a_release_with_nothing_to_give_back_changes_nothing() {
        let rejected = RecordedStep::Rejected {
            items: vec![item("a", 5)],
            reason: FailureReason::OutOfStock { item_id: "a".into() },
        };
        let released = RecordedStep::Released { lines: vec![line("a", 1)] };
        for recorded in [rejected, released, RecordedStep::Cancelled] {
            assert_eq!(decide(Some(&recorded), &StockCommand::Release), StepAction::Repeat(StockReply::Released));
        }
    }

    #[test]
    fn duplicate_lines_are_summed() {
        assert_eq!(lines_to_take(&[item("a", 1), item("b", 1), item("a", 2)]), Ok(vec![line("a", 3), line("b", 1)]));
    }

    #[test]
    fn duplicate_lines_that_overflow_together_are_out_of_stock() {
        let half = i64::MAX as u64 / 2 + 1;
        assert_eq!(
            lines_to_take(&[item("a", half), item("a", half)]),
            Err(FailureReason::OutOfStock { item_id: "a".into() })
        );
    }

    fn stock(levels: &[(&str, i64)]) -> HashMap<String, Holding> {
        levels.iter().map(|(id, level)| (id.to_string(), Holding { stock: *level, reserved: 0 })).collect()
    }

    fn held(stock: i64, reserved: i64) -> Holding {
        Holding { stock, reserved }
    }

    fn replied(replies: impl IntoIterator<Item = StockReply>) -> Vec<Result<StockReply, Unprocessable>> {
        replies.into_iter().map(Ok).collect()
    }

    #[test]
    fn a_batch_takes_stock_in_command_order_and_refuses_what_is_left_short() {
        let (first, second, third) = (SagaId::new(), SagaId::new(), SagaId::new());
        let (take_3, take_2) = (reserve(&[item("a", 3)]), reserve(&[item("a", 2), item("b", 1)]));
        let commands = [(first, &take_3), (second, &take_3), (third, &take_2)];

        let plan = plan_batch(&HashMap::new(), &stock(&[("a", 5), ("b", 1)]), &commands);

        let short = StockReply::Rejected { reason: FailureReason::OutOfStock { item_id: "a".into() } };
        assert_eq!(plan.outcomes, replied([StockReply::Reserved, short, StockReply::Reserved]));
        assert_eq!(plan.stock, BTreeMap::from([("a".into(), held(0, 5)), ("b".into(), held(0, 1))]));
        assert_eq!(plan.inserted.len(), 3);
        assert!(plan.updated.is_empty());
    }

    #[test]
    fn an_unknown_item_refuses_the_reservation_without_taking_its_other_lines() {
        let saga = SagaId::new();
        let command = reserve(&[item("a", 1), item("zz", 1)]);

        let plan = plan_batch(&HashMap::new(), &stock(&[("a", 5)]), &[(saga, &command)]);

        let unknown = FailureReason::UnknownItem { item_id: "zz".into() };
        assert_eq!(plan.outcomes, replied([StockReply::Rejected { reason: unknown.clone() }]));
        assert!(plan.stock.is_empty());
        let items = vec![item("a", 1), item("zz", 1)];
        assert_eq!(plan.inserted[&saga], RecordedStep::Rejected { items, reason: unknown });
    }

    #[test]
    fn a_release_of_a_recorded_reservation_updates_its_record_and_a_repeat_changes_nothing() {
        let (released, repeated) = (SagaId::new(), SagaId::new());
        let recorded = HashMap::from([
            (released, RecordedStep::Reserved { lines: vec![line("a", 2)] }),
            (repeated, RecordedStep::Reserved { lines: vec![line("a", 1)] }),
        ]);
        let again = reserve(&[item("a", 1)]);
        let commands = [(released, &StockCommand::Release), (repeated, &again)];

        let plan = plan_batch(&recorded, &HashMap::from([("a".into(), held(0, 3))]), &commands);

        assert_eq!(plan.outcomes, replied([StockReply::Released, StockReply::Reserved]));
        assert_eq!(plan.stock, BTreeMap::from([("a".into(), held(2, 1))]));
        assert!(plan.inserted.is_empty());
        assert_eq!(plan.updated, BTreeMap::from([(released, RecordedStep::Released { lines: vec![line("a", 2)] })]));
    }

    #[test]
    fn a_release_before_its_reserve_in_one_batch_blocks_it() {
        let saga = SagaId::new();
        let take = reserve(&[item("a", 1)]);

        let plan = plan_batch(&HashMap::new(), &stock(&[("a", 1)]), &[(saga, &StockCommand::Release), (saga, &take)]);

        let cancelled = StockReply::Rejected { reason: FailureReason::Cancelled };
        assert_eq!(plan.outcomes, replied([StockReply::Released, cancelled]));
        assert!(plan.stock.is_empty());
        assert_eq!(plan.inserted, BTreeMap::from([(saga, RecordedStep::Cancelled)]));
    }

    #[test]
    fn items_to_lock_covers_reservations_and_recorded_lines_to_give_back() {
        let (saga, other) = (SagaId::new(), SagaId::new());
        let recorded = HashMap::from([(saga, RecordedStep::Reserved { lines: vec![line("c", 1)] })]);
        let take = reserve(&[item("b", 1), item("a", 1), item("b", 2)]);
        let commands = [(saga, &StockCommand::Release), (other, &take)];
        assert_eq!(items_to_lock(&recorded, &commands), ["a", "b", "c"]);
    }

    #[test]
    fn adding_stock_leaves_room_for_what_is_reserved() {
        assert_eq!(add_stock("a", held(6, 4), MAX_STOCK - 10), Ok(held(MAX_STOCK - 4, 4)));
        let refusal = add_stock("a", held(6, 4), MAX_STOCK - 9).unwrap_err();
        assert_eq!(
            refusal,
            StockError::TooMuchStock { item_id: "a".into(), in_stock: 6, reserved: 4, added: MAX_STOCK - 9 }
        );
        assert_eq!(
            refusal.to_string(),
            format!(
                "item a has 6 in stock and 4 reserved by checkouts, adding {} would exceed the maximum of \
                 {MAX_STOCK} for the two together",
                MAX_STOCK - 9
            )
        );
        assert_eq!(add_stock("a", held(0, 0), MAX_STOCK), Ok(held(MAX_STOCK, 0)));
        assert!(add_stock("a", held(MAX_STOCK, 1), 0).is_ok(), "adding nothing is never refused");
    }

    #[test]
    fn a_new_stock_level_leaves_room_for_what_is_reserved() {
        assert_eq!(check_new_stock("a", MAX_STOCK - 4, 4), Ok(()));
        assert_eq!(
            check_new_stock("a", MAX_STOCK - 3, 4),
            Err(StockError::NoRoomForReserved { item_id: "a".into(), stock: MAX_STOCK - 3, reserved: 4 })
        );
        assert_eq!(check_new_stock("a", MAX_STOCK, 0), Ok(()));
    }

    #[test]
    fn a_reservation_moves_units_from_stock_to_reserved_and_a_release_moves_them_back() {
        assert_eq!(held(5, 1).reserve(3), Some(held(2, 4)));
        assert_eq!(held(5, 1).reserve(6), None);
        assert_eq!(held(2, 4).release(3), Some(held(5, 1)));
        assert_eq!(held(MAX_STOCK, 1).release(1), None);
        assert_eq!(held(1, 0).release(2), Some(held(3, 0)), "an uncounted reservation still comes back");
    }

    #[test]
    fn a_release_that_cannot_apply_changes_nothing_and_the_rest_of_the_batch_goes_on() {
        let (full, gone, kept, reserving) = (SagaId::new(), SagaId::new(), SagaId::new(), SagaId::new());
        let recorded = HashMap::from([
            (full, RecordedStep::Reserved { lines: vec![line("a", 1), line("b", 2)] }),
            (gone, RecordedStep::Reserved { lines: vec![line("a", 1), line("zz", 1)] }),
            (kept, RecordedStep::Reserved { lines: vec![line("a", 1)] }),
        ]);
        let holdings = HashMap::from([("a".into(), held(5, 3)), ("b".into(), held(MAX_STOCK - 1, 2))]);
        let take = reserve(&[item("a", 2)]);
        let commands = [
            (full, &StockCommand::Release),
            (gone, &StockCommand::Release),
            (kept, &StockCommand::Release),
            (reserving, &take),
        ];

        let plan = plan_batch(&recorded, &holdings, &commands);

        let overflow = Unprocessable::WouldOverflow { item_id: "b".into(), in_stock: MAX_STOCK - 1, released: 2 };
        assert_eq!(
            plan.outcomes,
            [
                Err(overflow),
                Err(Unprocessable::ItemGone { item_id: "zz".into() }),
                Ok(StockReply::Released),
                Ok(StockReply::Reserved)
            ]
        );
        assert_eq!(plan.stock, BTreeMap::from([("a".into(), held(4, 4))]), "only kept and reserving moved stock");
        assert_eq!(plan.updated, BTreeMap::from([(kept, RecordedStep::Released { lines: vec![line("a", 1)] })]));
        assert_eq!(plan.inserted.keys().collect::<Vec<_>>(), [&reserving]);
    }

    /// A change of one item as the service can make it: a REST add or subtract, a reservation or a release.
    #[derive(Debug, Clone)]
    enum Change {
        Add(i64),
        Subtract(i64),
        Reserve(i64),
        Release,
    }

    fn any_change() -> impl Strategy<Value = Change> {
        let amount = prop_oneof![0..10i64, (MAX_STOCK - 10)..=MAX_STOCK, 0..=MAX_STOCK];
        prop_oneof![
            amount.clone().prop_map(Change::Add),
            amount.clone().prop_map(Change::Subtract),
            amount.prop_map(Change::Reserve),
            Just(Change::Release),
        ]
    }

    proptest! {
        #[test]
        fn whatever_is_added_every_reservation_can_be_given_back(
            start in 0..=MAX_STOCK,
            changes in prop::collection::vec(any_change(), 0..40),
        ) {
            let mut holding = held(start, 0);
            let mut reservations: Vec<i64> = Vec::new();
            for change in changes {
                match change {
                    Change::Add(amount) => {
                        if let Ok(after) = add_stock("a", holding, amount) {
                            holding = after;
                        }
                    }
                    Change::Subtract(amount) if amount <= holding.stock => holding.stock -= amount,
                    Change::Subtract(_) => {}
                    Change::Reserve(quantity) => {
                        if let Some(after) = holding.reserve(quantity) {
                            holding = after;
                            reservations.push(quantity);
                        }
                    }
                    Change::Release => {
                        if let Some(quantity) = reservations.pop() {
                            holding = holding.release(quantity).expect("a release always fits");
                        }
                    }
                }
                prop_assert!(holding.stock >= 0 && holding.reserved >= 0);
                prop_assert!(holding.stock <= MAX_STOCK - holding.reserved);
                prop_assert_eq!(holding.reserved, reservations.iter().sum::<i64>());
            }
        }
    }

    proptest! {
        #[test]
        fn lines_to_take_are_sorted_distinct_and_keep_every_unit(
            items in prop::collection::vec(("[a-e]", 0u64..1_000), 0..20)
        ) {
            let items: Vec<LineItem> = items.into_iter().map(|(id, q)| item(&id, q)).collect();
            let lines = lines_to_take(&items).unwrap();
            prop_assert!(lines.windows(2).all(|pair| pair[0].item_id < pair[1].item_id));
            for l in &lines {
                let asked: u64 = items.iter().filter(|i| i.item_id == l.item_id).map(|i| i.quantity).sum();
                prop_assert_eq!(l.quantity as u64, asked);
            }
            prop_assert!(items.iter().all(|i| lines.iter().any(|l| l.item_id == i.item_id)));
        }

        #[test]
        fn a_batch_never_takes_stock_below_zero_and_keeps_every_unit_accounted_for(
            commands in prop::collection::vec(
                (0usize..4, prop::option::of(prop::collection::vec(("[a-c]", 1u64..4), 1..3))),
                0..30,
            ),
            start in prop::collection::vec(0i64..8, 3),
        ) {
            let sagas: Vec<SagaId> = (0..4).map(|_| SagaId::new()).collect();
            let commands: Vec<(SagaId, StockCommand)> = commands
                .into_iter()
                .map(|(saga, lines)| {
                    let command = match lines {
                        Some(lines) => reserve(&lines.iter().map(|(id, q)| item(id, *q)).collect::<Vec<_>>()),
                        None => StockCommand::Release,
                    };
                    (sagas[saga], command)
                })
                .collect();
            let before: HashMap<String, Holding> =
                ["a", "b", "c"].iter().zip(&start).map(|(id, level)| (id.to_string(), held(*level, 0))).collect();
            let borrowed: Vec<_> = commands.iter().map(|(saga, command)| (*saga, command)).collect();

            let plan = plan_batch(&HashMap::new(), &before, &borrowed);

            prop_assert_eq!(plan.outcomes.len(), commands.len());
            prop_assert!(plan.outcomes.iter().all(Result::is_ok));
            let mut after = before.clone();
            after.extend(plan.stock.clone());
            prop_assert!(after.values().all(|level| level.stock >= 0));
            let mut recorded_reserved: HashMap<String, i64> = HashMap::new();
            for step in plan.inserted.values() {
                if let RecordedStep::Reserved { lines } = step {
                    for l in lines {
                        *recorded_reserved.entry(l.item_id.clone()).or_default() += l.quantity;
                    }
                }
            }
            for (id, level) in &before {
                let reserved = recorded_reserved.get(id).copied().unwrap_or(0);
                prop_assert_eq!(level.stock - after[id].stock, reserved);
                prop_assert_eq!(after[id].reserved, reserved, "the reserved count is what the records hold");
            }
        }
    }
}
