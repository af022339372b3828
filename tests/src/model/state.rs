//! The model's state: the data the services hold as the API shows it (items, users, orders, payments per user
//! and order), the ledgers the conservation invariants compare against, how symbolic calls resolve to requests,
//! what is read back from the system ([`Snapshot`]), and the checks between the two. [`super::rules`] changes it
//! call by call. Pure: no I/O.
//!
//! Numbers are `i128`, so that the model itself never overflows where the services must refuse to.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::ops::{Call, ItemRef, Op, OrderRef, Pick, Req, UserRef, BATCH_IDS, FILL_PREFIX, UNKNOWN_IDS};

/// The most a stock, credit, price, quantity or total may be (a `BIGINT`).
pub const MAX: i128 = i64::MAX as i128;
/// Stock or credit up to this must be accepted; above it the services may refuse (their documented maximum).
pub const SURELY_ALLOWED: i128 = 1 << 40;
/// The user IDs a `batch_init` of orders may name: one past the pool, so some orders belong to nobody.
pub const BATCH_USERS: u8 = BATCH_IDS + 1;

/// An item of stock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Units in stock.
    pub stock: i128,
    /// Price of one unit.
    pub price: i128,
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Units.
    pub quantity: i128,
    /// What they added to the total, at the prices of their time (what `removeItem` takes off).
    pub cost: i128,
}

/// What a cancel of an unpaid order answers: 4xx if it was never cancelled, 200 if it was cancelled and nothing
/// happened since, either when a checkout was tried since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancelled {
    /// Never cancelled.
    Never,
    /// Cancelled, and no checkout since.
    Done,
    /// Cancelled, then a checkout was tried.
    Unsure,
}

/// An order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// Its user.
    pub user: String,
    /// Its lines, by item.
    pub lines: BTreeMap<String, Line>,
    /// Its total.
    pub total: i128,
    /// Whether a checkout paid it (and no cancel undid that).
    pub paid: bool,
    /// See [`Cancelled`].
    pub cancelled: Cancelled,
}

/// What payment-svc holds for one user and order ID.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pair {
    /// The REST payment (`/payment/pay/{user}/{order}/{amount}`) charged now, and its amount.
    pub direct: Option<i128>,
    /// A REST payment was ever charged.
    pub direct_ever: bool,
    /// The checkout payment charged now: the order's total.
    pub checkout: Option<i128>,
    /// A checkout ever charged this user for this order.
    pub checkout_ever: bool,
    /// A checkout of this order by this user ran, so payment-svc may have a row for it.
    pub checkout_tried: bool,
    /// A `batch_init` of orders replaced the order this pair's checkout paid: what the services then do with the
    /// payment is not modelled, and answers about the pair are not checked.
    pub tainted: bool,
}

/// The data of the whole system, as the model expects it.
#[derive(Debug, Clone, Default)]
pub struct Model {
    /// Items by ID.
    pub items: BTreeMap<String, Item>,
    /// Credit by user ID.
    pub users: BTreeMap<String, i128>,
    /// Orders by ID.
    pub orders: BTreeMap<String, Order>,
    /// Payments by (user, order).
    pub pairs: BTreeMap<(String, String), Pair>,
    /// IDs of items the services created, in order.
    pub created_items: Vec<String>,
    /// IDs of users the services created, in order.
    pub created_users: Vec<String>,
    /// IDs of orders the services created, in order.
    pub created_orders: Vec<String>,
    /// Per item, what stock plus units in paid orders must be: the start, plus every add and minus every
    /// subtract answered 2xx, reset by `batch_init`.
    pub stock_ledger: BTreeMap<String, i128>,
    /// Per user, what credit plus totals of paid orders must be, kept the same way.
    pub credit_ledger: BTreeMap<String, i128>,
}

/// `raw` as the services parse an amount: digits only, at most [`MAX`].
pub fn amount(raw: &str) -> Option<i128> {
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    raw.parse::<u64>().ok().map(i128::from).filter(|value| *value <= MAX)
}

/// `raw` as a count or quantity: an amount of at least 1.
pub fn positive(raw: &str) -> Option<i128> {
    amount(raw).filter(|value| *value >= 1)
}

/// The IDs `"0"` to `"n - 1"`.
pub fn batch_ids(n: i128) -> Vec<String> {
    (0..n.min(1000)).map(|k| k.to_string()).collect()
}

/// The integer `key` of a JSON body.
pub fn number(body: &Value, key: &str) -> Option<i128> {
    body[key].as_i64().map(i128::from).or_else(|| body[key].as_u64().map(i128::from))
}

/// The string `key` of a JSON body, or what is wrong.
pub fn expect_string(body: &Value, key: &str) -> Result<String, String> {
    body[key].as_str().map(str::to_owned).ok_or_else(|| format!("body has no string {key}: {body}"))
}

/// An order's lines as the API shows them: `[[item_id, quantity], …]`, merged per item.
pub fn lines_of(body: &Value) -> Result<BTreeMap<String, i128>, String> {
    let items = body["items"].as_array().ok_or_else(|| format!("body has no items: {body}"))?;
    let mut lines = BTreeMap::new();
    for pair in items {
        let item = pair[0].as_str().ok_or_else(|| format!("bad line {pair}"))?;
        let quantity = pair[1].as_u64().map(i128::from).ok_or_else(|| format!("bad line {pair}"))?;
        *lines.entry(item.to_owned()).or_default() += quantity;
    }
    Ok(lines)
}

/// An order as `find` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenOrder {
    /// Its user.
    pub user: String,
    /// Units per item.
    pub lines: BTreeMap<String, i128>,
    /// Its total.
    pub total: i128,
    /// Whether it is paid.
    pub paid: bool,
}

impl SeenOrder {
    /// Reads the body of `GET /orders/find/{id}`.
    pub fn from_body(body: &Value) -> Result<Self, String> {
        Ok(Self {
            user: expect_string(body, "user_id")?,
            lines: lines_of(body)?,
            total: number(body, "total_cost").ok_or_else(|| format!("body has no total_cost: {body}"))?,
            paid: body["paid"].as_bool().ok_or_else(|| format!("body has no paid: {body}"))?,
        })
    }
}

impl Order {
    /// The order as `find` would show it.
    pub fn seen(&self) -> SeenOrder {
        SeenOrder {
            user: self.user.clone(),
            lines: self.lines.iter().map(|(item, line)| (item.clone(), line.quantity)).collect(),
            total: self.total,
            paid: self.paid,
        }
    }
}

/// The system as read back over the API.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Items that exist.
    pub items: BTreeMap<String, Item>,
    /// Users that exist, with their credit.
    pub users: BTreeMap<String, i128>,
    /// Orders that exist.
    pub orders: BTreeMap<String, SeenOrder>,
}

impl Snapshot {
    /// Per item: stock plus the units paid orders hold.
    pub fn held_stock(&self) -> BTreeMap<String, i128> {
        let mut held: BTreeMap<String, i128> = self.items.iter().map(|(id, item)| (id.clone(), item.stock)).collect();
        for order in self.orders.values().filter(|order| order.paid) {
            for (item, quantity) in &order.lines {
                *held.entry(item.clone()).or_default() += quantity;
            }
        }
        held
    }

    /// Per user: credit plus the totals of their paid orders.
    pub fn held_credit(&self) -> BTreeMap<String, i128> {
        let mut held = self.users.clone();
        for order in self.orders.values().filter(|order| order.paid) {
            *held.entry(order.user.clone()).or_default() += order.total;
        }
        held
    }

    /// No stock or credit below zero.
    pub fn check_not_negative(&self) -> Result<(), String> {
        for (id, item) in &self.items {
            if item.stock < 0 {
                return Err(format!("item {id} has stock {}", item.stock));
            }
        }
        for (id, credit) in &self.users {
            if *credit < 0 {
                return Err(format!("user {id} has credit {credit}"));
            }
        }
        Ok(())
    }
}

/// Compares two ledgers: what the model counted against what the system holds.
pub fn check_ledger(what: &str, counted: &BTreeMap<String, i128>, held: &BTreeMap<String, i128>) -> Result<(), String> {
    let keys: BTreeSet<&String> = counted.keys().chain(held.keys()).collect();
    for key in keys {
        let (want, got) = (counted.get(key).copied().unwrap_or(0), held.get(key).copied().unwrap_or(0));
        if want != got {
            return Err(format!(
                "{what} of {key} is {got}, but start + added − subtracted (as answered 2xx) is {want}"
            ));
        }
    }
    Ok(())
}

impl Model {
    /// The concrete request for `op` in the current state.
    pub fn resolve(&self, op: &Op) -> Req {
        let mut req =
            op.map(&|user| self.user_id(user), &|item| self.item_id(item), &|order| self.order_id(order), &|n| {
                n.to_string()
            });
        let current = match &req {
            Call::StockAdd { item, .. } => self.items.get(item).map_or(0, |i| i.stock),
            Call::AddFunds { user, .. } => self.users.get(user).copied().unwrap_or(0),
            _ => 0,
        };
        let fill = |raw: &mut String| {
            if let Some(k) = raw.strip_prefix(FILL_PREFIX).and_then(|k| k.parse::<i128>().ok()) {
                *raw = (MAX - current - k).max(0).to_string();
            }
        };
        match &mut req {
            Call::StockAdd { amount, .. } | Call::AddFunds { amount, .. } | Call::Pay { amount, .. } => fill(amount),
            Call::PayOrder { amount, .. } | Call::StockSubtract { amount, .. } => fill(amount),
            Call::StockBatchInit { stock, .. } => fill(stock),
            Call::PaymentBatchInit { money, .. } => fill(money),
            _ => {}
        }
        req
    }

    fn pick(pick: Pick, created: &[String], kind: &str) -> String {
        match pick {
            Pick::Batch(k) => k.to_string(),
            Pick::Created(_) if created.is_empty() => format!("no-{kind}-created-yet"),
            Pick::Created(k) => created[k as usize % created.len()].clone(),
            Pick::Unknown(k) => UNKNOWN_IDS[k as usize % UNKNOWN_IDS.len()].to_owned(),
        }
    }

    fn order_of(&self, pick: Pick) -> String {
        Self::pick(pick, &self.created_orders, "order")
    }

    fn user_id(&self, user: &UserRef) -> String {
        match user {
            UserRef::Is(pick) => Self::pick(*pick, &self.created_users, "user"),
            UserRef::OwnerOf(order) => {
                self.orders.get(&self.order_of(*order)).map_or_else(|| "nobody".to_owned(), |o| o.user.clone())
            }
        }
    }

    fn item_id(&self, item: &ItemRef) -> String {
        match item {
            ItemRef::Is(pick) => Self::pick(*pick, &self.created_items, "item"),
            ItemRef::InOrder(order, k) => match self.orders.get(&self.order_of(*order)) {
                Some(order) if !order.lines.is_empty() => {
                    order.lines.keys().nth(*k as usize % order.lines.len()).cloned().unwrap_or_default()
                }
                _ => "0".to_owned(),
            },
        }
    }

    fn order_id(&self, order: &OrderRef) -> String {
        match order {
            OrderRef::Is(pick) => self.order_of(*pick),
            OrderRef::Direct(k) => format!("d{k}"),
        }
    }

    /// The IDs to read back: every one the model knows or the services may have made.
    pub fn ids_to_read(&self) -> (BTreeSet<String>, BTreeSet<String>, BTreeSet<String>) {
        let batch = |n: u8| (0..n).map(|k| k.to_string()).collect::<Vec<_>>();
        let items = self.items.keys().cloned().chain(self.created_items.iter().cloned()).chain(batch(BATCH_IDS));
        let users = self.users.keys().cloned().chain(self.created_users.iter().cloned()).chain(batch(BATCH_USERS));
        let orders = self.orders.keys().cloned().chain(self.created_orders.iter().cloned()).chain(batch(BATCH_IDS));
        (items.collect(), users.collect(), orders.collect())
    }

    /// Units of `item` that paid orders hold (a cancel may give them back).
    pub fn paid_quantity(&self, item: &str) -> i128 {
        self.orders.values().filter(|o| o.paid).filter_map(|o| o.lines.get(item)).map(|line| line.quantity).sum()
    }

    /// The totals of `user`'s paid orders.
    pub fn paid_total(&self, user: &str) -> i128 {
        self.orders.values().filter(|o| o.paid && o.user == user).map(|o| o.total).sum()
    }

    /// What cancels may still give back to `user`: the charged payments of all their pairs.
    pub fn refundable(&self, user: &str) -> i128 {
        self.pairs
            .iter()
            .filter(|((u, _), _)| u == user)
            .map(|(_, pair)| pair.direct.unwrap_or(0) + pair.checkout.unwrap_or(0))
            .sum()
    }

    /// Whether a pair of `user` is tainted (see [`Pair::tainted`]).
    pub fn has_tainted_pair(&self, user: &str) -> bool {
        self.pairs.iter().any(|((u, _), pair)| u == user && pair.tainted)
    }

    /// The pair of `user` and `order`, made empty if new.
    pub fn pair_mut(&mut self, user: &str, order: &str) -> &mut Pair {
        self.pairs.entry((user.to_owned(), order.to_owned())).or_default()
    }

    /// The pair of `user` and `order`, empty if none.
    pub fn pair(&self, user: &str, order: &str) -> Pair {
        self.pairs.get(&(user.to_owned(), order.to_owned())).cloned().unwrap_or_default()
    }

    /// Whether answers about this pair are not modelled.
    pub fn is_tainted(&self, user: &str, order: &str) -> bool {
        self.pair(user, order).tainted
    }

    /// Compares what the system holds with the model, exactly, naming every difference.
    pub fn compare(&self, seen: &Snapshot) -> Result<(), String> {
        let orders: BTreeMap<String, SeenOrder> = self.orders.iter().map(|(id, o)| (id.clone(), o.seen())).collect();
        let differences: Vec<String> = [
            differences("items", &self.items, &seen.items),
            differences("users' credit", &self.users, &seen.users),
            differences("orders", &orders, &seen.orders),
        ]
        .into_iter()
        .flatten()
        .collect();
        if differences.is_empty() {
            return Ok(());
        }
        Err(differences.join("; "))
    }

    /// The invariants over the model's own state, after it was compared with or taken from the system: the
    /// ledgers hold, and nothing a cancel may still give back would overflow.
    pub fn check_invariants(&self, seen: &Snapshot) -> Result<(), String> {
        seen.check_not_negative()?;
        check_ledger("stock plus units in paid orders", &self.stock_ledger, &seen.held_stock())?;
        check_ledger("credit plus totals of paid orders", &self.credit_ledger, &seen.held_credit())?;
        for (id, held) in seen.held_stock() {
            if held > MAX {
                return Err(format!("item {id}: stock plus units cancels may give back is {held}, above {MAX}"));
            }
        }
        for (id, credit) in &self.users {
            let held = credit + self.refundable(id);
            if held > MAX && !self.has_tainted_pair(id) {
                return Err(format!("user {id}: credit plus what cancels may refund is {held}, above {MAX}"));
            }
        }
        for (id, order) in &self.orders {
            let pair = self.pair(&order.user, id);
            if !pair.tainted && order.paid != pair.checkout.is_some() {
                return Err(format!("model: order {id} paid {} but its payment is {:?}", order.paid, pair.checkout));
            }
        }
        Ok(())
    }

    /// Takes the state over from `seen` where the model cannot know it. Lines keep their cost where their
    /// quantity is unchanged, else cost their units at today's price; ledgers restart from what is held.
    pub fn adopt(&mut self, seen: &Snapshot) {
        for (id, order) in &self.orders {
            let now_paid = seen.orders.get(id).is_some_and(|o| o.paid && o.user == order.user);
            if order.paid && !now_paid {
                self.pairs.entry((order.user.clone(), id.clone())).or_default().checkout = None;
            }
        }
        let mut orders = BTreeMap::new();
        for (id, found) in &seen.orders {
            let before = self.orders.get(id).filter(|o| o.user == found.user);
            let lines = before
                .map(|o| o.lines.clone())
                .filter(|lines| lines.iter().map(|(i, l)| (i, &l.quantity)).eq(found.lines.iter()))
                .unwrap_or_else(|| guess_costs(found, seen));
            let cancelled = before.map_or(Cancelled::Never, |o| o.cancelled);
            let order = Order { user: found.user.clone(), lines, total: found.total, paid: found.paid, cancelled };
            if order.paid {
                let pair = self.pairs.entry((order.user.clone(), id.clone())).or_default();
                pair.checkout = Some(order.total);
                pair.checkout_ever = true;
                pair.checkout_tried = true;
            }
            orders.insert(id.clone(), order);
        }
        self.orders = orders;
        self.items = seen.items.clone();
        self.users = seen.users.clone();
        self.stock_ledger = seen.held_stock();
        self.credit_ledger = seen.held_credit();
    }
}

/// The costs of an order's lines when the model did not see them made: at today's prices if they add up to the
/// total, else the total spread evenly over the units (as a `batch_init` prices them).
fn guess_costs(order: &SeenOrder, seen: &Snapshot) -> BTreeMap<String, Line> {
    let price = |item: &String| seen.items.get(item).map_or(0, |i| i.price);
    let at_prices: i128 = order.lines.iter().map(|(item, q)| q * price(item)).sum();
    let units: i128 = order.lines.values().sum();
    let unit_cost = |item: &String| match () {
        _ if at_prices == order.total => price(item),
        _ if units > 0 && order.total % units == 0 => order.total / units,
        _ => price(item),
    };
    order.lines.iter().map(|(item, q)| (item.clone(), Line { quantity: *q, cost: q * unit_cost(item) })).collect()
}

fn differences<V: PartialEq + std::fmt::Debug>(
    what: &str,
    model: &BTreeMap<String, V>,
    seen: &BTreeMap<String, V>,
) -> Option<String> {
    let keys: BTreeSet<&String> = model.keys().chain(seen.keys()).collect();
    let diffs: Vec<String> = keys
        .into_iter()
        .filter(|k| model.get(*k) != seen.get(*k))
        .map(|k| format!("{k}: system {:?}, model {:?}", seen.get(k), model.get(k)))
        .collect();
    (!diffs.is_empty()).then(|| format!("{what} differ: {}", diffs.join(", ")))
}
