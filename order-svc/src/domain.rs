//! The rules of order-svc, free of I/O: when an order may still change, what a checkout request does given the
//! order's state, how lines and totals add up without overflowing, and what a `batch_init` may ask for.
//!
//! An order is open until it is paid. While a checkout saga is in flight the order is frozen: the coordinator is
//! taking stock and credit for the snapshot it was sent, so changing the order under it would make the books
//! disagree. A paid order is the record of a sale and never changes again.

use std::collections::BTreeMap;

use platform::http::MAX_AMOUNT;
use shared_contracts::{LineItem, SagaId};

/// The most orders, items or users one `batch_init` may name.
pub const MAX_BATCH: u64 = 10_000_000;

/// Why a change to an order, or its checkout, is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The order is paid and so final.
    #[error("order is already paid")]
    AlreadyPaid,
    /// A checkout saga of the order is in flight.
    #[error("a checkout of this order is in progress")]
    CheckoutInProgress,
    /// There is nothing to check out.
    #[error("order has no items")]
    NoItems,
    /// The order's total, or a line's quantity, would exceed what the database holds.
    #[error("the order's total or quantity would exceed the maximum of {MAX_AMOUNT}")]
    TooLarge,
}

/// What is known about an order when a change or a checkout of it is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderStatus {
    /// Whether the order is paid.
    pub paid: bool,
    /// The saga of the checkout in flight, if one is.
    pub pending_checkout: Option<SagaId>,
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
    /// Whether items may be added to or removed from the order.
    pub fn check_items_editable(self) -> Result<(), Refusal> {
        if self.paid {
            return Err(Refusal::AlreadyPaid);
        }
        if self.pending_checkout.is_some() {
            return Err(Refusal::CheckoutInProgress);
        }
        Ok(())
    }

    /// Whether the order may be deleted. A checkout in flight is named first: it is the reason the client can
    /// wait out, whereas a paid order stays undeletable for good.
    pub fn check_deletable(self) -> Result<(), Refusal> {
        if self.pending_checkout.is_some() {
            return Err(Refusal::CheckoutInProgress);
        }
        if self.paid {
            return Err(Refusal::AlreadyPaid);
        }
        Ok(())
    }

    /// What a checkout of the order does, given whether it has any lines.
    pub fn checkout_step(self, has_items: bool) -> Result<CheckoutStep, Refusal> {
        if self.paid {
            return Ok(CheckoutStep::AlreadyPaid);
        }
        if let Some(saga_id) = self.pending_checkout {
            return Ok(CheckoutStep::Join(saga_id));
        }
        if !has_items {
            return Err(Refusal::NoItems);
        }
        Ok(CheckoutStep::Start)
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

    const OPEN: OrderStatus = OrderStatus { paid: false, pending_checkout: None };

    fn in_flight() -> OrderStatus {
        OrderStatus { paid: false, pending_checkout: Some(SagaId::new()) }
    }

    fn line(item_id: &str, quantity: u64) -> LineItem {
        LineItem { item_id: item_id.to_owned(), quantity }
    }

    #[test]
    fn an_open_order_can_be_edited_deleted_and_checked_out() {
        assert_eq!(OPEN.check_items_editable(), Ok(()));
        assert_eq!(OPEN.check_deletable(), Ok(()));
        assert_eq!(OPEN.checkout_step(true), Ok(CheckoutStep::Start));
    }

    #[test]
    fn a_paid_order_is_final_and_its_checkout_is_answered_at_once() {
        let paid = OrderStatus { paid: true, pending_checkout: None };
        assert_eq!(paid.check_items_editable(), Err(Refusal::AlreadyPaid));
        assert_eq!(paid.check_deletable(), Err(Refusal::AlreadyPaid));
        assert_eq!(paid.checkout_step(true), Ok(CheckoutStep::AlreadyPaid));
        assert_eq!(paid.checkout_step(false), Ok(CheckoutStep::AlreadyPaid));
    }

    #[test]
    fn an_order_in_checkout_is_frozen_and_a_second_checkout_joins_the_saga() {
        let status = in_flight();
        let saga_id = status.pending_checkout.unwrap();
        assert_eq!(status.check_items_editable(), Err(Refusal::CheckoutInProgress));
        assert_eq!(status.check_deletable(), Err(Refusal::CheckoutInProgress));
        assert_eq!(status.checkout_step(true), Ok(CheckoutStep::Join(saga_id)));
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
