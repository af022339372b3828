//! Concurrent bursts: several calls sent at once. Each call may have any outcome its rules allow at some moment
//! of the burst; afterwards the system must still be one the calls could have made, checked through the SPEC's
//! invariants: stock plus units in paid orders, and credit plus totals of paid orders, change only by what adds,
//! subtracts and payments answered 2xx (a `batch_init` resets them, at a moment of the burst the model does not
//! know, so it accepts every moment); an order becomes paid only through a checkout answered 2xx and unpaid only
//! through a cancel answered 2xx; nothing is negative. Then the model takes the state over from the system.
//!
//! Calls whose effect on money could not be told apart from another's are left out of a burst: a second
//! `batch_init`, order edits beside a `batch_init`, REST payments against real orders, cancels of pairs that had
//! a REST payment, calls on pairs the model no longer follows.

use std::collections::{BTreeMap, BTreeSet};

use super::{
    ops::{Call, Req},
    rules::{judge, Outcome},
    state::{amount, batch_ids, positive, Cancelled, Line, Model, Order, Snapshot, MAX, SURELY_ALLOWED},
};
use crate::Answer;

/// A call of a burst and its answer.
pub type Record = (Req, Answer);

/// Which of `reqs` a burst sends, given the state before it.
pub fn admit(model: &Model, reqs: &[Req]) -> Vec<bool> {
    let batch = reqs.iter().position(|r| r.is_batch_init());
    reqs.iter()
        .enumerate()
        .map(|(k, req)| match req {
            _ if req.is_batch_init() => Some(k) == batch,
            _ if req.edits_an_order() => batch.is_none(),
            Call::PayOrder { user, order, .. } => is_direct(order) && !model.is_tainted(user, order),
            Call::PaymentCancel { user, order } => {
                let pair = model.pair(user, order);
                !pair.tainted && (is_direct(order) || !pair.direct_ever)
            }
            Call::PaymentStatus { user, order, .. } => !model.is_tainted(user, order),
            _ => true,
        })
        .collect()
}

/// Whether `order` is one of the IDs of [`super::ops::OrderRef::Direct`] (`"d0"`, `"d1"`), which no order has.
fn is_direct(order: &str) -> bool {
    order.strip_prefix('d').is_some_and(|k| k.parse::<u8>().is_ok())
}

fn malformed(req: &Req) -> bool {
    let bad = |raw: &String| amount(raw).is_none();
    let bad_count = |raw: &String| positive(raw).is_none();
    match req {
        Call::ItemCreate { price } => bad(price),
        Call::StockBatchInit { n, stock, price } => bad_count(n) || bad(stock) || bad(price),
        Call::StockAdd { amount, .. }
        | Call::StockSubtract { amount, .. }
        | Call::AddFunds { amount, .. }
        | Call::Pay { amount, .. }
        | Call::PayOrder { amount, .. } => bad(amount),
        Call::PaymentBatchInit { n, money } => bad_count(n) || bad(money),
        Call::OrdersBatchInit { n, items, users, price } => {
            let total_too_large = amount(price).is_some_and(|p| 2 * p > MAX);
            bad_count(n) || bad_count(items) || bad_count(users) || bad(price) || total_too_large
        }
        Call::AddItem { quantity: Some(quantity), .. } => bad_count(quantity),
        _ => false,
    }
}

/// Checks one answer of a burst on its own: never 5xx, malformed numbers refused, a `batch_init` done or refused
/// because sagas are unfinished (or, for huge amounts, refused), creations done.
pub fn judge_answer(req: &Req, answer: &Answer) -> Result<(), String> {
    use Outcome::*;
    let huge = |raw: &String| amount(raw).is_some_and(|v| v > SURELY_ALLOWED);
    let allowed: &[Outcome] = match req {
        _ if malformed(req) => &[Refused],
        Call::StockBatchInit { stock: start, .. } | Call::PaymentBatchInit { money: start, .. } if huge(start) => {
            &[Ok, Busy, Refused]
        }
        _ if req.is_batch_init() => &[Ok, Busy],
        Call::UserCreate | Call::ItemCreate { .. } => &[Ok],
        _ => &[Ok, Refused],
    };
    judge(allowed, answer).map(drop)
}

/// The IDs the calls of a burst created, by kind: items, users, orders.
pub fn created(records: &[Record]) -> (Vec<String>, Vec<String>, Vec<String>) {
    let mut made = (Vec::new(), Vec::new(), Vec::new());
    for (req, answer) in records.iter().filter(|(_, a)| a.status.is_success()) {
        let id = |key: &str| answer.body[key].as_str().map(str::to_owned);
        match req {
            Call::ItemCreate { .. } => made.0.extend(id("item_id")),
            Call::UserCreate => made.1.extend(id("user_id")),
            Call::OrderCreate { .. } => made.2.extend(id("order_id")),
            _ => {}
        }
    }
    made
}

/// The (user, order) pairs of REST payments the burst touched, whose status the runner reads afterwards.
pub fn direct_pairs(records: &[Record]) -> BTreeSet<(String, String)> {
    records
        .iter()
        .filter_map(|(req, _)| match req {
            Call::PayOrder { user, order, .. } | Call::PaymentCancel { user, order } if is_direct(order) => {
                Some((user.clone(), order.clone()))
            }
            _ => None,
        })
        .collect()
}

/// The `batch_init` of the burst that answered 2xx, if any.
enum Reset {
    None,
    Stock { ids: Vec<String>, stock: i128 },
    Payment { ids: Vec<String>, money: i128 },
    Orders { ids: Vec<String> },
}

fn reset_of(records: &[Record]) -> Reset {
    for (req, _) in records.iter().filter(|(_, a)| a.status.is_success()) {
        match req {
            Call::StockBatchInit { n, stock, .. } => {
                return Reset::Stock { ids: batch_ids(positive(n).unwrap_or(0)), stock: amount(stock).unwrap_or(0) };
            }
            Call::PaymentBatchInit { n, money } => {
                return Reset::Payment { ids: batch_ids(positive(n).unwrap_or(0)), money: amount(money).unwrap_or(0) };
            }
            Call::OrdersBatchInit { n, .. } => return Reset::Orders { ids: batch_ids(positive(n).unwrap_or(0)) },
            _ => {}
        }
    }
    Reset::None
}

/// What the burst's calls said about one order.
#[derive(Default)]
struct Fate {
    checkout_tried: bool,
    checkout_ok: bool,
    cancel_ok: bool,
    removed: bool,
    edited: bool,
}

fn fates(model: &Model, records: &[Record]) -> BTreeMap<String, Fate> {
    let mut fates: BTreeMap<String, Fate> = BTreeMap::new();
    for (req, answer) in records {
        let ok = answer.status.is_success();
        match req {
            Call::Checkout { order } => {
                let fate = fates.entry(order.clone()).or_default();
                fate.checkout_tried = true;
                fate.checkout_ok |= ok;
            }
            Call::OrderCancel { order } => fates.entry(order.clone()).or_default().cancel_ok |= ok,
            Call::PaymentCancel { user, order } if !is_direct(order) => {
                let owner = model.orders.get(order).map(|o| o.user.as_str());
                if owner == Some(user.as_str()) {
                    fates.entry(order.clone()).or_default().cancel_ok |= ok;
                }
            }
            Call::RemoveOrder { order } => fates.entry(order.clone()).or_default().removed |= ok,
            Call::AddItem { order, .. } | Call::RemoveItem { order, .. } => {
                fates.entry(order.clone()).or_default().edited |= ok
            }
            _ => {}
        }
    }
    fates
}

/// Per item or user, what calls answered 2xx added (positive) or took (negative).
type Deltas = BTreeMap<String, Vec<i128>>;

/// The [`Deltas`] of stock and of credit.
fn deltas(records: &[Record]) -> Result<(Deltas, Deltas), String> {
    let (mut stock, mut credit): (Deltas, Deltas) = Default::default();
    for (req, answer) in records.iter().filter(|(_, a)| a.status.is_success()) {
        let value = |raw: &String| amount(raw).unwrap_or(0);
        match req {
            Call::StockAdd { item, amount } => stock.entry(item.clone()).or_default().push(value(amount)),
            Call::StockSubtract { item, amount } => stock.entry(item.clone()).or_default().push(-value(amount)),
            Call::AddFunds { user, amount } => credit.entry(user.clone()).or_default().push(value(amount)),
            Call::Pay { user, amount } => credit.entry(user.clone()).or_default().push(-value(amount)),
            Call::PayOrder { user, amount, .. } => match answer.body["already_paid"].as_bool() {
                Some(true) => {}
                Some(false) => credit.entry(user.clone()).or_default().push(-value(amount)),
                None => return Err(format!("{req} answered without already_paid: {}", answer.body)),
            },
            Call::PaymentCancel { user, order } if is_direct(order) => {
                let refunded = answer.body["refunded"].as_i64().map(i128::from);
                let refunded = refunded.ok_or_else(|| format!("{req} answered without refunded: {}", answer.body))?;
                credit.entry(user.clone()).or_default().push(refunded);
            }
            _ => {}
        }
    }
    Ok((stock, credit))
}

/// Every sum of `base` and a subset of `terms`.
fn subset_sums(base: i128, terms: &[i128]) -> BTreeSet<i128> {
    let mut sums = BTreeSet::from([base]);
    for term in terms {
        let more: Vec<i128> = sums.iter().map(|s| s + term).collect();
        sums.extend(more);
    }
    sums
}

/// Whether order `id` may have been paid, and unpaid, at the moment of the burst's `batch_init`.
fn may_be_paid(model: &Model, fates: &BTreeMap<String, Fate>, id: &str) -> (bool, bool) {
    let was = model.orders.get(id).is_some_and(|o| o.paid);
    let fate = fates.get(id);
    let paid = was || fate.is_some_and(|f| f.checkout_ok);
    let unpaid = !was || fate.is_some_and(|f| f.cancel_ok);
    (paid, unpaid)
}

/// What paid orders among `orders` held at the moment of the reset: the part that is sure, and the parts
/// that may or may not count.
fn held_at_reset(
    model: &Model,
    fates: &BTreeMap<String, Fate>,
    orders: impl Iterator<Item = String>,
    held: impl Fn(&Order) -> i128,
) -> (i128, Vec<i128>) {
    let (mut sure, mut maybe) = (0, Vec::new());
    for id in orders {
        let Some(order) = model.orders.get(&id) else { continue };
        let amount = held(order);
        if amount == 0 {
            continue;
        }
        match may_be_paid(model, fates, &id) {
            (true, false) => sure += amount,
            (true, true) => maybe.push(amount),
            _ => {}
        }
    }
    (sure, maybe)
}

/// Checks the system after a burst against the state before it (`model`) and the answers.
pub fn check(model: &Model, records: &[Record], seen: &Snapshot) -> Result<(), String> {
    seen.check_not_negative()?;
    let fates = fates(model, records);
    let reset = reset_of(records);
    let replaced: BTreeSet<String> = match &reset {
        Reset::Orders { ids } => ids.iter().filter(|id| model.orders.contains_key(*id)).cloned().collect(),
        _ => BTreeSet::new(),
    };
    check_orders(model, &fates, &replaced, seen)?;
    for (id, item) in &model.items {
        match seen.items.get(id) {
            None => return Err(format!("item {id} vanished")),
            Some(now) if now.price != item.price && !matches!(&reset, Reset::Stock { ids, .. } if ids.contains(id)) => {
                return Err(format!("item {id} changed its price to {}", now.price));
            }
            _ => {}
        }
    }
    for id in model.users.keys() {
        if !seen.users.contains_key(id) {
            return Err(format!("user {id} vanished"));
        }
    }

    let (stock_deltas, credit_deltas) = deltas(records)?;
    let held_stock = seen.held_stock();
    let items: BTreeSet<&String> = held_stock.keys().chain(model.stock_ledger.keys()).collect();
    for item in items {
        let deltas = stock_deltas.get(item).cloned().unwrap_or_default();
        let before = model.stock_ledger.get(item).copied().unwrap_or(0);
        let units = |o: &Order| o.lines.get(item).map_or(0, |l| l.quantity);
        let possible = match &reset {
            Reset::Stock { ids, stock } if ids.contains(item) => {
                let (sure, mut maybe) = held_at_reset(model, &fates, model.orders.keys().cloned(), units);
                maybe.extend(deltas);
                subset_sums(stock + sure, &maybe)
            }
            Reset::Orders { .. } => {
                let (sure, maybe) = held_at_reset(model, &fates, replaced.iter().cloned(), units);
                let after = before + deltas.iter().sum::<i128>() - sure;
                subset_sums(0, &maybe).into_iter().map(|m| after - m).collect()
            }
            _ => BTreeSet::from([before + deltas.iter().sum::<i128>()]),
        };
        let held = held_stock.get(item).copied().unwrap_or(0);
        if !possible.contains(&held) {
            return Err(format!(
                "conservation of stock: item {item} has stock plus units in paid orders {held}, the answers allow \
                 only {possible:?} (before {before}, 2xx adds/subtracts {:?})",
                stock_deltas.get(item)
            ));
        }
    }

    let held_credit = seen.held_credit();
    let users: BTreeSet<&String> = held_credit.keys().chain(model.credit_ledger.keys()).collect();
    for user in users {
        let deltas = credit_deltas.get(user).cloned().unwrap_or_default();
        let before = model.credit_ledger.get(user).copied().unwrap_or(0);
        let total = |o: &Order| if &o.user == user { o.total } else { 0 };
        let possible = match &reset {
            Reset::Payment { ids, money } if ids.contains(user) => {
                let (sure, mut maybe) = held_at_reset(model, &fates, model.orders.keys().cloned(), total);
                maybe.extend(deltas);
                subset_sums(money + sure, &maybe)
            }
            Reset::Orders { .. } => {
                let (sure, maybe) = held_at_reset(model, &fates, replaced.iter().cloned(), total);
                let after = before + deltas.iter().sum::<i128>() - sure;
                subset_sums(0, &maybe).into_iter().map(|m| after - m).collect()
            }
            _ => BTreeSet::from([before + deltas.iter().sum::<i128>()]),
        };
        let held = held_credit.get(user).copied().unwrap_or(0);
        if !possible.contains(&held) {
            return Err(format!(
                "conservation of credit: user {user} has credit plus totals of paid orders {held}, the answers \
                 allow only {possible:?} (before {before}, 2xx funds/payments/refunds {:?})",
                credit_deltas.get(user)
            ));
        }
    }
    Ok(())
}

/// An order is paid after a burst only through a checkout answered 2xx, unpaid only through a cancel answered
/// 2xx; a checkout answered 2xx leaves it paid unless a cancel followed; untouched orders keep their lines.
fn check_orders(
    model: &Model,
    fates: &BTreeMap<String, Fate>,
    replaced: &BTreeSet<String>,
    seen: &Snapshot,
) -> Result<(), String> {
    let none = Fate::default();
    for (id, before) in model.orders.iter().filter(|(id, _)| !replaced.contains(*id)) {
        let fate = fates.get(id).unwrap_or(&none);
        let Some(now) = seen.orders.get(id) else {
            if fate.removed {
                continue;
            }
            return Err(format!("order {id} vanished"));
        };
        if now.paid && !before.paid && !fate.checkout_ok {
            return Err(format!("order {id} became paid, but no checkout of it answered 2xx"));
        }
        if !now.paid && before.paid && !fate.cancel_ok {
            return Err(format!("order {id} became unpaid, but no cancel of it answered 2xx"));
        }
        if !now.paid && fate.checkout_ok && !fate.cancel_ok {
            return Err(format!("a checkout of order {id} answered 2xx, but the order is not paid"));
        }
        if now.user != before.user {
            return Err(format!("order {id} changed its user to {}", now.user));
        }
        let lines: BTreeMap<String, i128> = before.lines.iter().map(|(i, l)| (i.clone(), l.quantity)).collect();
        if !fate.edited && (now.lines != lines || now.total != before.total) {
            return Err(format!("order {id} changed without an edit: {now:?}"));
        }
    }
    Ok(())
}

/// Takes the state over from the system after a burst that passed [`check`]; `direct_paid` is the status of
/// every pair of [`direct_pairs`].
pub fn take_over(
    model: &mut Model,
    records: &[Record],
    seen: &Snapshot,
    direct_paid: &BTreeMap<(String, String), bool>,
) -> Result<(), String> {
    let before = model.clone();
    let fates = fates(&before, records);
    if let Reset::Orders { ids } = reset_of(records) {
        for id in ids {
            model.replace_order(&id);
        }
    }
    model.adopt(seen);
    for (id, order) in model.orders.iter_mut() {
        let Some(fate) = fates.get(id) else { continue };
        // A cancel answered 2xx cancelled something only if the order was paid at some moment of the burst (a
        // cancel of a payment that was refunded before answers 200 and changes nothing).
        let was_paid = before.orders.get(id).is_some_and(|o| o.paid && o.user == order.user);
        let cancelled = fate.cancel_ok && (was_paid || fate.checkout_ok) && !order.paid;
        if cancelled {
            order.cancelled = if fate.checkout_tried { Cancelled::Unsure } else { Cancelled::Done };
        } else if fate.checkout_tried && order.cancelled == Cancelled::Done {
            order.cancelled = Cancelled::Unsure;
        }
        if fate.edited {
            let old = before.orders.get(id).filter(|o| o.user == order.user);
            order.lines = line_costs(&before, records, id, old, &order.lines);
            let cost: i128 = order.lines.values().map(|l| l.cost).sum();
            if cost != order.total {
                return Err(format!("order {id} has total {} but its lines cost {cost}", order.total));
            }
        }
    }
    for (req, _) in records {
        if let Call::Checkout { order } = req {
            let owners: Vec<String> = [before.orders.get(order), model.orders.get(order)]
                .into_iter()
                .flatten()
                .map(|o| o.user.clone())
                .collect();
            for owner in owners {
                model.pair_mut(&owner, order).checkout_tried = true;
            }
        }
    }
    for ((user, order), paid) in direct_paid {
        let charged: Vec<i128> = records
            .iter()
            .filter(|(_, a)| a.status.is_success() && a.body["already_paid"].as_bool() == Some(false))
            .filter_map(|(req, _)| match req {
                Call::PayOrder { user: u, order: o, amount: raw } if u == user && o == order => amount(raw),
                _ => None,
            })
            .collect();
        let earlier = before.pair(user, order).direct;
        let pair = model.pair_mut(user, order);
        pair.direct_ever |= !charged.is_empty();
        pair.direct = match (paid, charged.as_slice(), earlier) {
            (false, _, _) => None,
            (true, [one], _) => Some(*one),
            (true, [], Some(amount)) => Some(amount),
            (true, [], None) => {
                return Err(format!("status of ({user}, {order}) says paid, but nothing paid for it"));
            }
            (true, _, _) => {
                pair.tainted = true;
                None
            }
        };
    }
    Ok(())
}

/// The cost of each line of order `id` after a burst edited it: unchanged lines keep theirs, added units cost
/// the item's price (unchanged during such a burst), and a line removed in the burst costs only what was added
/// after.
fn line_costs(
    before: &Model,
    records: &[Record],
    id: &str,
    old: Option<&Order>,
    now: &BTreeMap<String, Line>,
) -> BTreeMap<String, Line> {
    now.iter()
        .map(|(item, line)| {
            let removed = records.iter().any(|(req, answer)| {
                answer.status.is_success()
                    && matches!(req, Call::RemoveItem { order, item: i } if order == id && i == item)
            });
            let price = before.items.get(item).map_or(0, |i| i.price);
            let kept = old.and_then(|o| o.lines.get(item)).filter(|_| !removed);
            let cost = match kept {
                Some(old_line) => old_line.cost + (line.quantity - old_line.quantity) * price,
                None => line.quantity * price,
            };
            (item.clone(), Line { quantity: line.quantity, cost })
        })
        .collect()
}
