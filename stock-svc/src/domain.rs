//! The rules of stock-svc, free of I/O: what an item looks like, why a stock change is refused, and stock's
//! effect in the checkout saga ([`Stock`]): a reservation takes its lines from the items' holdings, all or
//! nothing, and a release gives them back. The protocol around it (what is recorded per saga, the tombstone of a
//! release that comes first, the repeated replies) is the `participant` crate's.
//!
//! Stock is bounded so that every compensation fits: an item keeps, beside its stock, the units reserved by sagas
//! and not released (see [`Holding`]), and no write that adds stock may take the two together beyond
//! [`MAX_STOCK`]. A release moves units from reserved back to stock, so it can never overflow.

use std::collections::BTreeMap;

use participant::{Changes, Effect, Held};
use serde::{Deserialize, Serialize};
use shared_contracts::{FailureReason, LineItem};

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

/// stock-svc's effect in the checkout saga: a reservation asks for line items and takes [`Line`]s from the
/// items' [`Holding`]s, a release gives those lines back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stock;

impl Effect for Stock {
    type Request = Vec<LineItem>;
    type Taken = Vec<Line>;
    type Resource = Holding;
    type Unprocessable = Unprocessable;

    fn keys_of_request(items: &Vec<LineItem>) -> impl Iterator<Item = &str> {
        items.iter().map(|item| item.item_id.as_str())
    }

    fn keys_of_taken(lines: &Vec<Line>) -> impl Iterator<Item = &str> {
        lines.iter().map(|line| line.item_id.as_str())
    }

    /// Takes every line or none, in item order (see [`lines_to_take`]); the first line that is unknown or short
    /// refuses the whole reservation.
    fn take(held: &Held<'_, Holding>, items: &Vec<LineItem>) -> Result<(Vec<Line>, Changes<Holding>), FailureReason> {
        let lines = lines_to_take(items)?;
        let mut taken = Vec::with_capacity(lines.len());
        for line in &lines {
            let holding =
                held.get(&line.item_id).ok_or_else(|| FailureReason::UnknownItem { item_id: line.item_id.clone() })?;
            let after = holding
                .reserve(line.quantity)
                .ok_or_else(|| FailureReason::OutOfStock { item_id: line.item_id.clone() })?;
            taken.push((line.item_id.clone(), after));
        }
        Ok((lines, taken))
    }

    /// Gives every line back or none; the first line whose item is gone or full refuses the whole release.
    fn give_back(held: &Held<'_, Holding>, lines: &Vec<Line>) -> Result<Changes<Holding>, Unprocessable> {
        let mut restored = Vec::with_capacity(lines.len());
        for line in lines {
            let holding =
                held.get(&line.item_id).ok_or_else(|| Unprocessable::ItemGone { item_id: line.item_id.clone() })?;
            let after = holding.release(line.quantity).ok_or_else(|| Unprocessable::WouldOverflow {
                item_id: line.item_id.clone(),
                in_stock: holding.stock,
                released: line.quantity,
            })?;
            restored.push((line.item_id.clone(), after));
        }
        Ok(restored)
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
    use std::collections::HashMap;

    use participant::{keys_to_lock, plan_batch, Command, Record, Recorded, Reply};
    use proptest::prelude::*;
    use shared_contracts::SagaId;

    use super::*;

    fn item(id: &str, quantity: u64) -> LineItem {
        LineItem { item_id: id.into(), quantity }
    }

    fn line(id: &str, quantity: i64) -> Line {
        Line { item_id: id.into(), quantity }
    }

    fn reserve(items: &[LineItem]) -> Command<Vec<LineItem>> {
        Command::Step(items.to_vec())
    }

    fn stock(levels: &[(&str, i64)]) -> HashMap<String, Holding> {
        levels.iter().map(|(id, level)| (id.to_string(), Holding { stock: *level, reserved: 0 })).collect()
    }

    fn held(stock: i64, reserved: i64) -> Holding {
        Holding { stock, reserved }
    }

    /// What [`Stock::take`] makes of `items` on `holdings`.
    fn take(
        holdings: &HashMap<String, Holding>,
        items: &[LineItem],
    ) -> Result<(Vec<Line>, Changes<Holding>), FailureReason> {
        Stock::take(&Held::new(holdings, &HashMap::new()), &items.to_vec())
    }

    #[test]
    fn a_reservation_takes_its_lines_in_item_order() {
        let (lines, changes) = take(&stock(&[("a", 5), ("b", 5)]), &[item("b", 1), item("a", 2)]).unwrap();
        assert_eq!(lines, [line("a", 2), line("b", 1)]);
        assert_eq!(changes, [("a".into(), held(3, 2)), ("b".into(), held(4, 1))]);
    }

    #[test]
    fn a_reservation_that_can_never_be_met_is_refused_as_out_of_stock() {
        let refusal = take(&stock(&[("a", 5)]), &[item("a", u64::MAX)]);
        assert_eq!(refusal, Err(FailureReason::OutOfStock { item_id: "a".into() }));
    }

    #[test]
    fn an_unknown_item_or_a_short_line_refuses_the_whole_reservation() {
        let holdings = stock(&[("a", 5), ("b", 1)]);
        assert_eq!(
            take(&holdings, &[item("a", 1), item("zz", 1)]),
            Err(FailureReason::UnknownItem { item_id: "zz".into() })
        );
        assert_eq!(
            take(&holdings, &[item("a", 1), item("b", 2)]),
            Err(FailureReason::OutOfStock { item_id: "b".into() })
        );
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

    #[test]
    fn a_batch_moves_reserved_units_and_gives_released_ones_back() {
        let (first, second, third, released) = (SagaId::new(), SagaId::new(), SagaId::new(), SagaId::new());
        let recorded = HashMap::from([(released, Record::Applied(vec![line("b", 2)]))]);
        let (take_3, take_2) = (reserve(&[item("a", 3)]), reserve(&[item("a", 2), item("b", 1)]));
        let commands = [(first, &take_3), (second, &take_3), (third, &take_2), (released, &Command::Compensate)];
        let holdings = HashMap::from([("a".into(), held(5, 0)), ("b".into(), held(1, 2))]);

        assert_eq!(keys_to_lock::<Stock>(&Recorded::from(recorded.clone()), &commands), ["a", "b"]);
        let plan = plan_batch::<Stock>(&recorded.into(), &holdings, &commands);

        let short = Reply::Rejected { reason: FailureReason::OutOfStock { item_id: "a".into() } };
        assert_eq!(plan.outcomes, [Ok(Reply::Applied), Ok(short), Ok(Reply::Applied), Ok(Reply::Compensated)]);
        assert_eq!(plan.resources, BTreeMap::from([("a".into(), held(0, 5)), ("b".into(), held(2, 1))]));
        assert_eq!(plan.inserted[&third].record, Record::Applied(vec![line("a", 2), line("b", 1)]));
        assert_eq!(plan.compensated, BTreeMap::from([(released, vec![line("b", 2)])]));
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
            (full, Record::Applied(vec![line("a", 1), line("b", 2)])),
            (gone, Record::Applied(vec![line("a", 1), line("zz", 1)])),
            (kept, Record::Applied(vec![line("a", 1)])),
        ]);
        let holdings = HashMap::from([("a".into(), held(5, 3)), ("b".into(), held(MAX_STOCK - 1, 2))]);
        let take = reserve(&[item("a", 2)]);
        let commands = [
            (full, &Command::Compensate),
            (gone, &Command::Compensate),
            (kept, &Command::Compensate),
            (reserving, &take),
        ];

        let plan = plan_batch::<Stock>(&recorded.into(), &holdings, &commands);

        let overflow = Unprocessable::WouldOverflow { item_id: "b".into(), in_stock: MAX_STOCK - 1, released: 2 };
        assert_eq!(
            overflow.to_string(),
            format!("item b has {} in stock, giving back 2 would exceed the maximum of {MAX_STOCK}", MAX_STOCK - 1)
        );
        assert_eq!(
            plan.outcomes,
            [
                Err(participant::NotApplied::Unprocessable(overflow)),
                Err(participant::NotApplied::Unprocessable(Unprocessable::ItemGone { item_id: "zz".into() })),
                Ok(Reply::Compensated),
                Ok(Reply::Applied)
            ]
        );
        assert_eq!(plan.resources, BTreeMap::from([("a".into(), held(4, 4))]), "only kept and reserving moved stock");
        assert_eq!(plan.compensated, BTreeMap::from([(kept, vec![line("a", 1)])]));
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
        fn a_batch_never_takes_stock_below_zero_and_counts_what_the_records_hold_as_reserved(
            commands in prop::collection::vec(
                (0usize..4, prop::option::of(prop::collection::vec(("[a-c]", 1u64..4), 1..3))),
                0..30,
            ),
            start in prop::collection::vec(0i64..8, 3),
        ) {
            let sagas: Vec<SagaId> = (0..4).map(|_| SagaId::new()).collect();
            let commands: Vec<(SagaId, Command<Vec<LineItem>>)> = commands
                .into_iter()
                .map(|(saga, lines)| {
                    let command = match lines {
                        Some(lines) => reserve(&lines.iter().map(|(id, q)| item(id, *q)).collect::<Vec<_>>()),
                        None => Command::Compensate,
                    };
                    (sagas[saga], command)
                })
                .collect();
            let before: HashMap<String, Holding> =
                ["a", "b", "c"].iter().zip(&start).map(|(id, level)| (id.to_string(), held(*level, 0))).collect();
            let borrowed: Vec<_> = commands.iter().map(|(saga, command)| (*saga, command)).collect();

            let plan = plan_batch::<Stock>(&Recorded::default(), &before, &borrowed);

            prop_assert_eq!(plan.outcomes.len(), commands.len());
            prop_assert!(plan.outcomes.iter().all(Result::is_ok));
            let mut after = before.clone();
            after.extend(plan.resources.clone());
            prop_assert!(after.values().all(|level| level.stock >= 0));
            let mut recorded_reserved: HashMap<String, i64> = HashMap::new();
            for new in plan.inserted.values() {
                if let Record::Applied(lines) = &new.record {
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
