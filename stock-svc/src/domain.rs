//! The rules of stock-svc, free of I/O: what an item looks like, why a stock change is refused, and what the saga
//! worker does with a command given what it recorded for that saga before.
//!
//! The saga step of one checkout is a small state machine. It starts with no record; a `Reserve` takes the stock
//! (recorded `reserved`) or is refused (`rejected`); a `Release` gives a reservation back (`released`) or, when it
//! comes first, leaves a `cancelled` tombstone so that the late `Reserve` takes nothing. Every other combination
//! repeats the answer already given, which is what makes redelivered and duplicated commands harmless.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use shared_contracts::{FailureReason, LineItem, SagaId, StockCommand, StockReply};

/// The stock and price of one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ItemState {
    /// Units in stock.
    pub stock: i64,
    /// Price of one unit.
    pub price: i64,
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
    /// Adding would take the stock beyond what the database can hold.
    #[error("item {item_id} has {in_stock} in stock, adding {added} would exceed the maximum of {max}", max = i64::MAX)]
    TooMuchStock {
        /// The item.
        item_id: String,
        /// Its stock when the addition was refused.
        in_stock: i64,
        /// What was to be added.
        added: i64,
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

/// What a batch of saga commands does, worked out in memory from the rows the batch locked: one reply per command
/// and the rows to write back. The worker writes it with a few set-based statements instead of several round trips
/// per command.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BatchPlan {
    /// The reply to each command, in the order the commands were given.
    pub replies: Vec<StockReply>,
    /// The new stock of every item whose stock the batch changed.
    pub stock: BTreeMap<String, i64>,
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

/// Applies `commands` in order to the sagas' records `recorded` and the items' stock `stock` (an item missing from
/// `stock` does not exist), each command exactly as [`decide`] rules, every command seeing what the ones before it
/// did. Fails only if giving a reservation back would overflow an item's stock; the batch must then not be written.
pub fn plan_batch(
    recorded: &HashMap<SagaId, RecordedStep>,
    stock: &HashMap<String, i64>,
    commands: &[(SagaId, &StockCommand)],
) -> Result<BatchPlan, StockError> {
    let mut records: HashMap<SagaId, RecordedStep> = HashMap::new();
    let mut levels: HashMap<String, i64> = HashMap::new();
    let mut replies = Vec::with_capacity(commands.len());
    for &(saga_id, command) in commands {
        let current = records.get(&saga_id).or_else(|| recorded.get(&saga_id));
        let (reply, record) = match decide(current, command) {
            StepAction::Repeat(reply) => (reply, None),
            StepAction::Reserve(lines) => match take(stock, &mut levels, &lines) {
                Ok(()) => (StockReply::Reserved, Some(RecordedStep::Reserved { lines })),
                Err(refusal) => rejected(command, reservation_refused(refusal)),
            },
            StepAction::Reject(reason) => rejected(command, reason),
            StepAction::Restore(lines) => {
                put_back(stock, &mut levels, &lines)?;
                (StockReply::Released, Some(RecordedStep::Released { lines }))
            }
            StepAction::Tombstone => (StockReply::Released, Some(RecordedStep::Cancelled)),
        };
        replies.push(reply);
        if let Some(record) = record {
            records.insert(saga_id, record);
        }
    }
    let mut plan = BatchPlan { replies, ..BatchPlan::default() };
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
    Ok(plan)
}

fn rejected(command: &StockCommand, reason: FailureReason) -> (StockReply, Option<RecordedStep>) {
    let items = match command {
        StockCommand::Reserve { items } => items.clone(),
        StockCommand::Release => Vec::new(),
    };
    (StockReply::Rejected { reason: reason.clone() }, Some(RecordedStep::Rejected { items, reason }))
}

/// The stock of `item_id` as the batch has left it so far.
fn level(stock: &HashMap<String, i64>, levels: &HashMap<String, i64>, item_id: &str) -> Option<i64> {
    levels.get(item_id).or_else(|| stock.get(item_id)).copied()
}

/// Takes every line or none; the first line that is unknown or short refuses the whole reservation.
fn take(stock: &HashMap<String, i64>, levels: &mut HashMap<String, i64>, lines: &[Line]) -> Result<(), StockError> {
    for line in lines {
        let in_stock =
            level(stock, levels, &line.item_id).ok_or_else(|| StockError::UnknownItem(line.item_id.clone()))?;
        if in_stock < line.quantity {
            return Err(StockError::NotEnoughStock {
                item_id: line.item_id.clone(),
                in_stock,
                requested: line.quantity,
            });
        }
    }
    for line in lines {
        let in_stock = level(stock, levels, &line.item_id).unwrap_or_default();
        levels.insert(line.item_id.clone(), in_stock - line.quantity);
    }
    Ok(())
}

/// Adds every line back. A line whose item no longer exists has nowhere to go and is skipped.
fn put_back(stock: &HashMap<String, i64>, levels: &mut HashMap<String, i64>, lines: &[Line]) -> Result<(), StockError> {
    for line in lines {
        let Some(in_stock) = level(stock, levels, &line.item_id) else { continue };
        let restored = in_stock.checked_add(line.quantity).ok_or_else(|| StockError::TooMuchStock {
            item_id: line.item_id.clone(),
            in_stock,
            added: line.quantity,
        })?;
        levels.insert(line.item_id.clone(), restored);
    }
    Ok(())
}

/// The reason a saga's reservation is refused when taking one of its lines met `refusal`.
pub fn reservation_refused(refusal: StockError) -> FailureReason {
    match refusal {
        StockError::UnknownItem(item_id) => FailureReason::UnknownItem { item_id },
        // A reservation only subtracts, so only `NotEnoughStock` comes from it; an addition refused for lack of
        // room would leave the checkout short all the same.
        StockError::NotEnoughStock { item_id, .. } | StockError::TooMuchStock { item_id, .. } => {
            FailureReason::OutOfStock { item_id }
        }
    }
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

    fn stock(levels: &[(&str, i64)]) -> HashMap<String, i64> {
        levels.iter().map(|(id, level)| (id.to_string(), *level)).collect()
    }

    #[test]
    fn a_batch_takes_stock_in_command_order_and_refuses_what_is_left_short() {
        let (first, second, third) = (SagaId::new(), SagaId::new(), SagaId::new());
        let (take_3, take_2) = (reserve(&[item("a", 3)]), reserve(&[item("a", 2), item("b", 1)]));
        let commands = [(first, &take_3), (second, &take_3), (third, &take_2)];

        let plan = plan_batch(&HashMap::new(), &stock(&[("a", 5), ("b", 1)]), &commands).unwrap();

        let short = StockReply::Rejected { reason: FailureReason::OutOfStock { item_id: "a".into() } };
        assert_eq!(plan.replies, [StockReply::Reserved, short, StockReply::Reserved]);
        assert_eq!(plan.stock, BTreeMap::from([("a".into(), 0), ("b".into(), 0)]));
        assert_eq!(plan.inserted.len(), 3);
        assert!(plan.updated.is_empty());
    }

    #[test]
    fn an_unknown_item_refuses_the_reservation_without_taking_its_other_lines() {
        let saga = SagaId::new();
        let command = reserve(&[item("a", 1), item("zz", 1)]);

        let plan = plan_batch(&HashMap::new(), &stock(&[("a", 5)]), &[(saga, &command)]).unwrap();

        let unknown = FailureReason::UnknownItem { item_id: "zz".into() };
        assert_eq!(plan.replies, [StockReply::Rejected { reason: unknown.clone() }]);
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

        let plan = plan_batch(&recorded, &stock(&[("a", 0)]), &commands).unwrap();

        assert_eq!(plan.replies, [StockReply::Released, StockReply::Reserved]);
        assert_eq!(plan.stock, BTreeMap::from([("a".into(), 2)]));
        assert!(plan.inserted.is_empty());
        assert_eq!(plan.updated, BTreeMap::from([(released, RecordedStep::Released { lines: vec![line("a", 2)] })]));
    }

    #[test]
    fn a_release_before_its_reserve_in_one_batch_blocks_it() {
        let saga = SagaId::new();
        let take = reserve(&[item("a", 1)]);

        let plan =
            plan_batch(&HashMap::new(), &stock(&[("a", 1)]), &[(saga, &StockCommand::Release), (saga, &take)]).unwrap();

        let cancelled = StockReply::Rejected { reason: FailureReason::Cancelled };
        assert_eq!(plan.replies, [StockReply::Released, cancelled]);
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
            let before: HashMap<String, i64> =
                ["a", "b", "c"].iter().zip(&start).map(|(id, level)| (id.to_string(), *level)).collect();
            let borrowed: Vec<_> = commands.iter().map(|(saga, command)| (*saga, command)).collect();

            let plan = plan_batch(&HashMap::new(), &before, &borrowed).unwrap();

            prop_assert_eq!(plan.replies.len(), commands.len());
            let mut after = before.clone();
            after.extend(plan.stock.clone());
            prop_assert!(after.values().all(|&level| level >= 0));
            let mut held: HashMap<String, i64> = HashMap::new();
            for step in plan.inserted.values() {
                if let RecordedStep::Reserved { lines } = step {
                    for l in lines {
                        *held.entry(l.item_id.clone()).or_default() += l.quantity;
                    }
                }
            }
            for (id, level) in &before {
                prop_assert_eq!(level - after[id], held.get(id).copied().unwrap_or(0));
            }
        }
    }
}
