//! The rules of stock-svc, free of I/O: what an item looks like, why a stock change is refused, and what the saga
//! worker does with a command given what it recorded for that saga before.
//!
//! The saga step of one checkout is a small state machine. It starts with no record; a `Reserve` takes the stock
//! (recorded `reserved`) or is refused (`rejected`); a `Release` gives a reservation back (`released`) or, when it
//! comes first, leaves a `cancelled` tombstone so that the late `Reserve` takes nothing. Every other combination
//! repeats the answer already given, which is what makes redelivered and duplicated commands harmless.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shared_contracts::{FailureReason, LineItem, StockCommand, StockReply};

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
    }
}
