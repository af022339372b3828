//! The rules of the API, call by call: what each call must answer given the model's state, and how the data
//! changes when it succeeds. Where the rules allow several answers (a huge amount the services may refuse, a
//! cancel the model cannot decide) the model follows the one the system gave.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{
    ops::{Call, Req},
    state::{
        amount, batch_ids, expect_string, lines_of, number, positive, Cancelled, Item, Line, Model, Order, SeenOrder,
        MAX, SURELY_ALLOWED,
    },
};
use crate::Answer;

/// A class of answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx.
    Ok,
    /// 404: an unknown ID.
    NotFound,
    /// 400: a malformed number.
    BadInput,
    /// Any 4xx: a business rule refuses.
    Refused,
    /// 409 naming the unfinished sagas: a `batch_init` while sagas run.
    Busy,
}

impl Outcome {
    fn admits(self, answer: &Answer) -> bool {
        let status = answer.status.as_u16();
        match self {
            Outcome::Ok => (200..300).contains(&status),
            Outcome::NotFound => status == 404,
            Outcome::BadInput => status == 400,
            Outcome::Refused => (400..500).contains(&status),
            Outcome::Busy => status == 409 && answer.body.to_string().contains("unfinished"),
        }
    }
}

/// Which of `allowed` the answer is; 2xx is `Ok`, anything else `Refused` or the specific error.
pub fn judge(allowed: &[Outcome], answer: &Answer) -> Result<Outcome, String> {
    match allowed.iter().find(|outcome| outcome.admits(answer)) {
        Some(_) if answer.status.is_success() => Ok(Outcome::Ok),
        Some(outcome) => Ok(*outcome),
        None => Err(format!("answered {}, the model allows {allowed:?}", answer.status.as_u16())),
    }
}

/// What the runner must do after a call the model could not follow on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Follow {
    /// Nothing.
    Nothing,
    /// Read the orders a `batch_init` made (their items and users are random) and give them to
    /// [`Model::install_batch_order`].
    BatchOrders {
        /// How many.
        n: u32,
        /// Items they pick from.
        items: u32,
        /// Users they pick from.
        users: u32,
        /// The price of every unit.
        price: i128,
    },
    /// Read the whole system back: the call touched what the model does not predict.
    Resync,
}

fn expect_number(body: &Value, key: &str, want: i128) -> Result<(), String> {
    match number(body, key) {
        Some(got) if got == want => Ok(()),
        got => Err(format!("body {key} is {got:?}, the model says {want} (body {body})")),
    }
}

impl Model {
    /// The outcomes of adding `amount` to a stock or credit of `current` of which cancels may give back `held`
    /// more: accepted when small, refused when what may be given back would overflow, either in between.
    fn room_for(current: i128, held: i128, amount: i128, unsure: bool) -> Vec<Outcome> {
        if current + held + amount > MAX && !unsure {
            vec![Outcome::Refused]
        } else if current + amount > SURELY_ALLOWED {
            vec![Outcome::Ok, Outcome::Refused]
        } else {
            vec![Outcome::Ok]
        }
    }

    /// Undoes the checkout of the paid order `id`: its stock back, its total refunded, unpaid.
    fn cancel_paid_order(&mut self, id: &str) {
        let Some(order) = self.orders.get_mut(id) else { return };
        order.paid = false;
        order.cancelled = Cancelled::Done;
        let order = order.clone();
        for (item, line) in &order.lines {
            if let Some(item) = self.items.get_mut(item) {
                item.stock += line.quantity;
            }
        }
        if let Some(credit) = self.users.get_mut(&order.user) {
            *credit += order.total;
        }
        self.pair_mut(&order.user, id).checkout = None;
    }

    /// Checks the answer to `req` against the model and applies what it did.
    pub fn apply(&mut self, req: &Req, answer: &Answer) -> Result<Follow, String> {
        use Outcome::{BadInput, NotFound, Refused};
        const OK: Outcome = Outcome::Ok;
        let body = &answer.body;
        match req {
            Call::ItemCreate { price } => {
                let Some(price) = amount(price) else { return judge(&[BadInput], answer).map(|_| Follow::Nothing) };
                judge(&[OK], answer)?;
                let id = expect_string(body, "item_id")?;
                if self.items.contains_key(&id) {
                    return Err(format!("created item {id} existed before"));
                }
                self.items.insert(id.clone(), Item { stock: 0, price });
                self.stock_ledger.insert(id.clone(), 0);
                self.created_items.push(id);
            }
            Call::StockBatchInit { n, stock, price } => {
                let (Some(n), Some(stock), Some(price)) = (positive(n), amount(stock), amount(price)) else {
                    return judge(&[BadInput], answer).map(|_| Follow::Nothing);
                };
                let ids = batch_ids(n);
                let allowed = if ids.iter().any(|id| stock + self.paid_quantity(id) > MAX) {
                    vec![Refused]
                } else if stock > SURELY_ALLOWED {
                    vec![OK, Refused]
                } else {
                    vec![OK]
                };
                if judge(&allowed, answer)? == OK {
                    for id in ids {
                        let held = self.paid_quantity(&id);
                        self.items.insert(id.clone(), Item { stock, price });
                        self.stock_ledger.insert(id, stock + held);
                    }
                }
            }
            Call::StockFind { item } => match self.items.get(item) {
                None => {
                    judge(&[NotFound], answer)?;
                }
                Some(known) => {
                    judge(&[OK], answer)?;
                    expect_number(body, "stock", known.stock)?;
                    expect_number(body, "price", known.price)?;
                }
            },
            Call::StockAdd { item, amount: raw } | Call::StockSubtract { item, amount: raw } => {
                let adding = matches!(req, Call::StockAdd { .. });
                let mut errors = Vec::new();
                let value = amount(raw);
                if value.is_none() {
                    errors.push(BadInput);
                }
                let known = self.items.get(item).cloned();
                if known.is_none() {
                    errors.push(NotFound);
                }
                let (Some(value), Some(known)) = (value, known) else {
                    return judge(&errors, answer).map(|_| Follow::Nothing);
                };
                let allowed = match adding {
                    true => Self::room_for(known.stock, self.paid_quantity(item), value, false),
                    false if value > known.stock => vec![Refused],
                    false => vec![OK],
                };
                if judge(&allowed, answer)? == OK {
                    let change = if adding { value } else { -value };
                    let stock = known.stock + change;
                    self.items.insert(item.clone(), Item { stock, ..known });
                    *self.stock_ledger.entry(item.clone()).or_default() += change;
                    expect_number(body, "stock", stock)?;
                }
            }
            Call::UserCreate => {
                judge(&[OK], answer)?;
                let id = expect_string(body, "user_id")?;
                if self.users.contains_key(&id) {
                    return Err(format!("created user {id} existed before"));
                }
                self.users.insert(id.clone(), 0);
                self.credit_ledger.insert(id.clone(), 0);
                self.created_users.push(id);
            }
            Call::PaymentBatchInit { n, money } => {
                let (Some(n), Some(money)) = (positive(n), amount(money)) else {
                    return judge(&[BadInput], answer).map(|_| Follow::Nothing);
                };
                let ids = batch_ids(n);
                let unsure = ids.iter().any(|id| self.has_tainted_pair(id));
                let allowed = if ids.iter().any(|id| money + self.refundable(id) > MAX) && !unsure {
                    vec![Refused]
                } else if money > SURELY_ALLOWED || unsure {
                    vec![OK, Refused]
                } else {
                    vec![OK]
                };
                if judge(&allowed, answer)? == OK {
                    for id in ids {
                        let held = self.paid_total(&id);
                        self.users.insert(id.clone(), money);
                        self.credit_ledger.insert(id, money + held);
                    }
                }
            }
            Call::FindUser { user } => match self.users.get(user) {
                None => {
                    judge(&[NotFound], answer)?;
                }
                Some(credit) => {
                    judge(&[OK], answer)?;
                    expect_number(body, "credit", *credit)?;
                }
            },
            Call::AddFunds { user, amount: raw } | Call::Pay { user, amount: raw } => {
                let adding = matches!(req, Call::AddFunds { .. });
                let mut errors = Vec::new();
                let value = amount(raw);
                if value.is_none() {
                    errors.push(BadInput);
                }
                let credit = self.users.get(user).copied();
                if credit.is_none() {
                    errors.push(NotFound);
                }
                let (Some(value), Some(credit)) = (value, credit) else {
                    return judge(&errors, answer).map(|_| Follow::Nothing);
                };
                let allowed = match adding {
                    true => Self::room_for(credit, self.refundable(user), value, self.has_tainted_pair(user)),
                    false if value > credit => vec![Refused],
                    false => vec![OK],
                };
                if judge(&allowed, answer)? == OK {
                    let change = if adding { value } else { -value };
                    self.users.insert(user.clone(), credit + change);
                    *self.credit_ledger.entry(user.clone()).or_default() += change;
                    expect_number(body, "credit", credit + change)?;
                }
            }
            Call::PayOrder { user, order, amount: raw } => {
                let mut errors = Vec::new();
                let value = amount(raw);
                if value.is_none() {
                    errors.push(BadInput);
                }
                let credit = self.users.get(user).copied();
                if credit.is_none() {
                    errors.push(NotFound);
                }
                let (Some(value), Some(credit)) = (value, credit) else {
                    return judge(&errors, answer).map(|_| Follow::Nothing);
                };
                let pair = self.pair(user, order);
                if pair.tainted {
                    judge(&[OK, Refused], answer)?;
                    return Ok(Follow::Resync);
                }
                if pair.direct.is_some() {
                    judge(&[OK], answer)?;
                    if body["already_paid"].as_bool() != Some(true) {
                        return Err(format!("a repeated payment does not say already_paid: {body}"));
                    }
                    expect_number(body, "credit", credit)?;
                } else if judge(&[if value > credit { Refused } else { OK }], answer)? == OK {
                    if body["already_paid"].as_bool() != Some(false) {
                        return Err(format!("a first payment does not say already_paid false: {body}"));
                    }
                    self.users.insert(user.clone(), credit - value);
                    *self.credit_ledger.entry(user.clone()).or_default() -= value;
                    let pair = self.pair_mut(user, order);
                    pair.direct = Some(value);
                    pair.direct_ever = true;
                    expect_number(body, "credit", credit - value)?;
                }
            }
            Call::PaymentCancel { user, order } => {
                if !self.users.contains_key(user) {
                    judge(&[NotFound], answer)?;
                    return Ok(Follow::Nothing);
                }
                let pair = self.pair(user, order);
                if pair.tainted {
                    judge(&[OK, Refused], answer)?;
                    return Ok(Follow::Resync);
                }
                if pair.direct.is_some() || pair.checkout.is_some() {
                    judge(&[OK], answer)?;
                    let direct = pair.direct.unwrap_or(0);
                    expect_number(body, "refunded", direct + pair.checkout.unwrap_or(0))?;
                    if let Some(credit) = self.users.get_mut(user) {
                        *credit += direct;
                    }
                    *self.credit_ledger.entry(user.clone()).or_default() += direct;
                    self.pair_mut(user, order).direct = None;
                    if pair.checkout.is_some() {
                        self.cancel_paid_order(order);
                    }
                } else {
                    let allowed = if pair.direct_ever || pair.checkout_ever {
                        vec![OK]
                    } else if pair.checkout_tried {
                        vec![OK, Refused]
                    } else {
                        vec![Refused]
                    };
                    if judge(&allowed, answer)? == OK {
                        expect_number(body, "refunded", 0)?;
                    }
                }
            }
            Call::PaymentStatus { user, order, .. } => {
                if !self.users.contains_key(user) {
                    judge(&[NotFound], answer)?;
                    return Ok(Follow::Nothing);
                }
                judge(&[OK], answer)?;
                let pair = self.pair(user, order);
                let paid = pair.direct.is_some() || pair.checkout.is_some();
                if !pair.tainted && body["paid"].as_bool() != Some(paid) {
                    return Err(format!("status says {body}, the model says paid {paid}"));
                }
            }
            Call::OrderCreate { user } => {
                if !self.users.contains_key(user) {
                    judge(&[NotFound], answer)?;
                    return Ok(Follow::Nothing);
                }
                judge(&[OK], answer)?;
                let id = expect_string(body, "order_id")?;
                if self.orders.contains_key(&id) {
                    return Err(format!("created order {id} existed before"));
                }
                let order = Order {
                    user: user.clone(),
                    lines: BTreeMap::new(),
                    total: 0,
                    paid: false,
                    cancelled: Cancelled::Never,
                };
                self.orders.insert(id.clone(), order);
                self.created_orders.push(id);
            }
            Call::OrdersBatchInit { n, items, users, price } => {
                let parsed = (positive(n), positive(items), positive(users), amount(price));
                let (Some(n), Some(items), Some(users), Some(price)) = parsed else {
                    return judge(&[BadInput], answer).map(|_| Follow::Nothing);
                };
                if 2 * price > MAX {
                    return judge(&[BadInput], answer).map(|_| Follow::Nothing);
                }
                judge(&[OK], answer)?;
                for id in batch_ids(n) {
                    self.replace_order(&id);
                }
                let small = |v: i128| u32::try_from(v).unwrap_or(u32::MAX);
                return Ok(Follow::BatchOrders { n: small(n), items: small(items), users: small(users), price });
            }
            Call::OrderFind { order } => match self.orders.get(order) {
                None => {
                    judge(&[NotFound], answer)?;
                }
                Some(known) => {
                    judge(&[OK], answer)?;
                    let seen = SeenOrder::from_body(body)?;
                    if seen != known.seen() {
                        return Err(format!("find shows {seen:?}, the model says {:?}", known.seen()));
                    }
                }
            },
            Call::AddItem { order, item, quantity } => {
                let mut errors = Vec::new();
                let units = quantity.as_deref().map_or(Some(1), positive);
                if units.is_none() {
                    errors.push(BadInput);
                }
                let price = self.items.get(item).map(|i| i.price);
                if price.is_none() {
                    errors.push(NotFound);
                }
                let known = self.orders.get(order).cloned();
                if known.is_none() {
                    errors.push(NotFound);
                }
                let (Some(units), Some(price), Some(known)) = (units, price, known) else {
                    return judge(&errors, answer).map(|_| Follow::Nothing);
                };
                let line = known.lines.get(item).cloned().unwrap_or(Line { quantity: 0, cost: 0 });
                let cost = units * price;
                let too_large = cost > MAX || known.total + cost > MAX || line.quantity + units > MAX;
                if judge(&[if known.paid || too_large { Refused } else { OK }], answer)? == OK {
                    let order_now = self.orders.get_mut(order).expect("known order");
                    order_now
                        .lines
                        .insert(item.clone(), Line { quantity: line.quantity + units, cost: line.cost + cost });
                    order_now.total += cost;
                    Self::expect_lines(body, order_now)?;
                }
            }
            Call::RemoveItem { order, item } => {
                let Some(known) = self.orders.get(order).cloned() else {
                    return judge(&[NotFound], answer).map(|_| Follow::Nothing);
                };
                let Some(line) = known.lines.get(item).cloned() else {
                    return judge(&[NotFound], answer).map(|_| Follow::Nothing);
                };
                if judge(&[if known.paid { Refused } else { OK }], answer)? == OK {
                    let order_now = self.orders.get_mut(order).expect("known order");
                    order_now.lines.remove(item);
                    order_now.total -= line.cost;
                    Self::expect_lines(body, order_now)?;
                }
            }
            Call::RemoveOrder { order } => {
                let Some(known) = self.orders.get(order) else {
                    return judge(&[NotFound], answer).map(|_| Follow::Nothing);
                };
                if judge(&[if known.paid { Refused } else { OK }], answer)? == OK {
                    self.orders.remove(order);
                }
            }
            Call::Checkout { order } => {
                let Some(known) = self.orders.get(order).cloned() else {
                    return judge(&[NotFound], answer).map(|_| Follow::Nothing);
                };
                if known.paid {
                    judge(&[OK], answer)?;
                    return Ok(Follow::Nothing);
                }
                if known.lines.is_empty() {
                    judge(&[Refused], answer)?;
                    return Ok(Follow::Nothing);
                }
                let stock_suffices = known
                    .lines
                    .iter()
                    .all(|(item, line)| self.items.get(item).is_some_and(|i| i.stock >= line.quantity));
                let credit_suffices = self.users.get(&known.user).is_some_and(|credit| *credit >= known.total);
                let outcome = judge(&[if stock_suffices && credit_suffices { OK } else { Refused }], answer)?;
                let pair = self.pair_mut(&known.user, order);
                pair.checkout_tried = true;
                if outcome == OK {
                    pair.checkout = Some(known.total);
                    pair.checkout_ever = true;
                    for (item, line) in &known.lines {
                        self.items.get_mut(item).expect("checked above").stock -= line.quantity;
                    }
                    *self.users.get_mut(&known.user).expect("checked above") -= known.total;
                    self.orders.get_mut(order).expect("known order").paid = true;
                } else if known.cancelled == Cancelled::Done {
                    self.orders.get_mut(order).expect("known order").cancelled = Cancelled::Unsure;
                }
            }
            Call::OrderCancel { order } => {
                let Some(known) = self.orders.get(order).cloned() else {
                    return judge(&[NotFound], answer).map(|_| Follow::Nothing);
                };
                if known.paid {
                    judge(&[OK], answer)?;
                    self.cancel_paid_order(order);
                    return Ok(Follow::Nothing);
                }
                let allowed = match known.cancelled {
                    Cancelled::Never => vec![Refused],
                    Cancelled::Done => vec![OK],
                    Cancelled::Unsure => vec![OK, Refused],
                };
                judge(&allowed, answer)?;
            }
        }
        Ok(Follow::Nothing)
    }

    /// Forgets order `id` as a `batch_init` of orders replaces it. What it held as paid no longer counts, and its
    /// checkout payment is left behind in payment-svc.
    pub fn replace_order(&mut self, id: &str) {
        let Some(old) = self.orders.remove(id) else { return };
        if old.paid {
            for (item, line) in &old.lines {
                *self.stock_ledger.entry(item.clone()).or_default() -= line.quantity;
            }
            *self.credit_ledger.entry(old.user.clone()).or_default() -= old.total;
            self.pair_mut(&old.user, id).tainted = true;
        }
    }

    /// Takes in order `id` as a `batch_init` made it (read back as `found`), checking its shape.
    pub fn install_batch_order(&mut self, id: &str, found: &Answer, batch: &Follow) -> Result<(), String> {
        let Follow::BatchOrders { items, users, price, .. } = batch else { return Ok(()) };
        if !found.status.is_success() {
            return Err(format!("order {id} of the batch_init is not there: {}", found.status));
        }
        let seen = SeenOrder::from_body(&found.body)?;
        let in_range = |id: &str, n: u32| id.parse::<u32>().is_ok_and(|k| k < n);
        let units: i128 = seen.lines.values().sum();
        if seen.paid
            || units != 2
            || seen.total != 2 * price
            || !in_range(&seen.user, *users)
            || !seen.lines.keys().all(|item| in_range(item, *items))
        {
            return Err(format!("order {id} of the batch_init is {seen:?}"));
        }
        let lines = seen.lines.iter().map(|(item, q)| (item.clone(), Line { quantity: *q, cost: q * price })).collect();
        let order = Order { user: seen.user, lines, total: seen.total, paid: false, cancelled: Cancelled::Never };
        self.orders.insert(id.to_owned(), order);
        Ok(())
    }

    fn expect_lines(body: &Value, order: &Order) -> Result<(), String> {
        expect_number(body, "total_cost", order.total)?;
        let lines = lines_of(body)?;
        let want: BTreeMap<String, i128> = order.lines.iter().map(|(i, l)| (i.clone(), l.quantity)).collect();
        if lines != want {
            return Err(format!("the order's lines are {lines:?}, the model says {want:?}"));
        }
        Ok(())
    }
}
