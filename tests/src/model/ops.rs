//! The calls a model test makes: one variant per endpoint of both API versions, with symbolic IDs and numbers
//! that are resolved against the model's state only when the step runs (so that "the user of order 1" or "the
//! second item of created order 0" still mean something after shrinking removed earlier steps), and the proptest
//! strategies that generate and shrink them.
//!
//! IDs come from a small pool so that calls collide: the `batch_init` IDs `"0"` to `"3"`, the IDs the services
//! created in this run, and IDs that never exist, among them strings that look like bad numbers.

use std::fmt;

use proptest::{collection::vec, prelude::*, strategy::Union};

/// How many of the `batch_init` IDs `"0"`, `"1"`, … the steps name.
pub const BATCH_IDS: u8 = 4;
/// IDs no entity ever has.
pub const UNKNOWN_IDS: [&str; 5] = ["9", "-1", "abc", "99999999999999999999", "nobody"];
/// Amounts near the top of what a `BIGINT` holds.
pub const HUGE: [u64; 4] = [i64::MAX as u64, i64::MAX as u64 - 1, 1 << 62, i64::MAX as u64 - 10];
/// Path segments that are not amounts.
pub const BAD_NUMBERS: [&str; 5] = ["-1", "abc", "99999999999999999999", "1.5", "+3"];

/// One ID of the pool, of whatever kind the call needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// The `batch_init` ID `"k"`.
    Batch(u8),
    /// The k-th ID (modulo how many there are) the services created in this run.
    Created(u8),
    /// One of [`UNKNOWN_IDS`].
    Unknown(u8),
}

/// A user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserRef {
    /// This user ID.
    Is(Pick),
    /// The user of this order, as the model knows it.
    OwnerOf(Pick),
}

/// An item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemRef {
    /// This item ID.
    Is(Pick),
    /// The k-th item (modulo its lines) of this order.
    InOrder(Pick, u8),
}

/// An order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderRef {
    /// This order ID.
    Is(Pick),
    /// `"d<k>"`: an order ID no order has, for payments made over REST only.
    Direct(u8),
}

/// A number in a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Num {
    /// This value.
    Lit(u64),
    /// One of [`HUGE`].
    Huge(u8),
    /// One of [`BAD_NUMBERS`].
    Bad(u8),
    /// What takes the stock or credit added to up to `i64::MAX - k` (`i64::MAX - k` elsewhere), resolved when
    /// the step runs.
    Fill(u8),
}

/// How [`Num::Fill`] is written until the runner knows what it fills.
pub const FILL_PREFIX: &str = "fill:";

impl fmt::Display for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Num::Lit(v) => write!(f, "{v}"),
            Num::Huge(k) => write!(f, "{}", HUGE[*k as usize % HUGE.len()]),
            Num::Bad(k) => f.write_str(BAD_NUMBERS[*k as usize % BAD_NUMBERS.len()]),
            Num::Fill(k) => write!(f, "{FILL_PREFIX}{k}"),
        }
    }
}

/// One call of the API, generic over how users, items, orders and numbers are named: [`Op`] names them
/// symbolically, [`Req`] with the strings sent.
#[derive(Clone, PartialEq, Eq)]
pub enum Call<U, I, O, N> {
    /// `POST /stock/item/create/{price}`.
    ItemCreate { price: N },
    /// `POST /stock/batch_init/{n}/{starting_stock}/{item_price}`.
    StockBatchInit { n: N, stock: N, price: N },
    /// `GET /stock/find/{item_id}`.
    StockFind { item: I },
    /// `POST /stock/add/{item_id}/{amount}`.
    StockAdd { item: I, amount: N },
    /// `POST /stock/subtract/{item_id}/{amount}`.
    StockSubtract { item: I, amount: N },
    /// `POST /payment/create_user`.
    UserCreate,
    /// `POST /payment/batch_init/{n}/{starting_money}`.
    PaymentBatchInit { n: N, money: N },
    /// `GET /payment/find_user/{user_id}`.
    FindUser { user: U },
    /// `POST /payment/add_funds/{user_id}/{amount}`.
    AddFunds { user: U, amount: N },
    /// `POST /payment/pay/{user_id}/{amount}`.
    Pay { user: U, amount: N },
    /// `POST /payment/pay/{user_id}/{order_id}/{amount}`.
    PayOrder { user: U, order: O, amount: N },
    /// `POST /payment/cancel/{user_id}/{order_id}`.
    PaymentCancel { user: U, order: O },
    /// `GET` (or, `post`, `POST`) `/payment/status/{user_id}/{order_id}`.
    PaymentStatus { user: U, order: O, post: bool },
    /// `POST /orders/create/{user_id}`.
    OrderCreate { user: U },
    /// `POST /orders/batch_init/{n}/{n_items}/{n_users}/{item_price}`.
    OrdersBatchInit { n: N, items: N, users: N, price: N },
    /// `GET /orders/find/{order_id}`.
    OrderFind { order: O },
    /// `POST /orders/addItem/{order_id}/{item_id}/{quantity}`, or without the quantity (one unit).
    AddItem { order: O, item: I, quantity: Option<N> },
    /// `DELETE /orders/removeItem/{order_id}/{item_id}`.
    RemoveItem { order: O, item: I },
    /// `DELETE /orders/remove/{order_id}`.
    RemoveOrder { order: O },
    /// `POST /orders/checkout/{order_id}`.
    Checkout { order: O },
    /// `POST /orders/cancel/{order_id}`.
    OrderCancel { order: O },
}

/// A call as generated: symbolic names.
pub type Op = Call<UserRef, ItemRef, OrderRef, Num>;
/// A call as sent: the path segments.
pub type Req = Call<String, String, String, String>;

/// One step of a sequence.
#[derive(Clone, PartialEq, Eq)]
pub enum Step {
    /// A call on its own, checked exactly against the model.
    Seq(Op),
    /// Calls sent all at once; each may have any of its allowed outcomes.
    Burst(Vec<Op>),
}

/// Which service answers a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// stock-svc.
    Stock,
    /// payment-svc.
    Payment,
    /// order-svc.
    Orders,
}

impl<U, I, O, N> Call<U, I, O, N> {
    /// The same call with its names translated.
    pub fn map<U2, I2, O2, N2>(
        &self,
        u: &impl Fn(&U) -> U2,
        i: &impl Fn(&I) -> I2,
        o: &impl Fn(&O) -> O2,
        n: &impl Fn(&N) -> N2,
    ) -> Call<U2, I2, O2, N2> {
        use Call::*;
        match self {
            ItemCreate { price } => ItemCreate { price: n(price) },
            StockBatchInit { n: count, stock, price } => {
                StockBatchInit { n: n(count), stock: n(stock), price: n(price) }
            }
            StockFind { item } => StockFind { item: i(item) },
            StockAdd { item, amount } => StockAdd { item: i(item), amount: n(amount) },
            StockSubtract { item, amount } => StockSubtract { item: i(item), amount: n(amount) },
            UserCreate => UserCreate,
            PaymentBatchInit { n: count, money } => PaymentBatchInit { n: n(count), money: n(money) },
            FindUser { user } => FindUser { user: u(user) },
            AddFunds { user, amount } => AddFunds { user: u(user), amount: n(amount) },
            Pay { user, amount } => Pay { user: u(user), amount: n(amount) },
            PayOrder { user, order, amount } => PayOrder { user: u(user), order: o(order), amount: n(amount) },
            PaymentCancel { user, order } => PaymentCancel { user: u(user), order: o(order) },
            PaymentStatus { user, order, post } => PaymentStatus { user: u(user), order: o(order), post: *post },
            OrderCreate { user } => OrderCreate { user: u(user) },
            OrdersBatchInit { n: count, items, users, price } => {
                OrdersBatchInit { n: n(count), items: n(items), users: n(users), price: n(price) }
            }
            OrderFind { order } => OrderFind { order: o(order) },
            AddItem { order, item, quantity } => {
                AddItem { order: o(order), item: i(item), quantity: quantity.as_ref().map(n) }
            }
            RemoveItem { order, item } => RemoveItem { order: o(order), item: i(item) },
            RemoveOrder { order } => RemoveOrder { order: o(order) },
            Checkout { order } => Checkout { order: o(order) },
            OrderCancel { order } => OrderCancel { order: o(order) },
        }
    }

    /// The call's name, as `MODEL_EXCLUDE` takes it.
    pub fn kind(&self) -> &'static str {
        use Call::*;
        match self {
            ItemCreate { .. } => "item_create",
            StockBatchInit { .. } => "stock_batch_init",
            StockFind { .. } => "stock_find",
            StockAdd { .. } => "stock_add",
            StockSubtract { .. } => "stock_subtract",
            UserCreate => "user_create",
            PaymentBatchInit { .. } => "payment_batch_init",
            FindUser { .. } => "find_user",
            AddFunds { .. } => "add_funds",
            Pay { .. } => "pay",
            PayOrder { .. } => "pay_order",
            PaymentCancel { .. } => "payment_cancel",
            PaymentStatus { .. } => "payment_status",
            OrderCreate { .. } => "order_create",
            OrdersBatchInit { .. } => "orders_batch_init",
            OrderFind { .. } => "order_find",
            AddItem { .. } => "add_item",
            RemoveItem { .. } => "remove_item",
            RemoveOrder { .. } => "remove_order",
            Checkout { .. } => "checkout",
            OrderCancel { .. } => "order_cancel",
        }
    }

    /// The numbers in the call's path.
    pub fn numbers(&self) -> Vec<&N> {
        use Call::*;
        match self {
            ItemCreate { price } => vec![price],
            StockBatchInit { n, stock, price } => vec![n, stock, price],
            StockAdd { amount, .. } | StockSubtract { amount, .. } => vec![amount],
            PaymentBatchInit { n, money } => vec![n, money],
            AddFunds { amount, .. } | Pay { amount, .. } | PayOrder { amount, .. } => vec![amount],
            OrdersBatchInit { n, items, users, price } => vec![n, items, users, price],
            AddItem { quantity, .. } => quantity.iter().collect(),
            StockFind { .. }
            | UserCreate
            | FindUser { .. }
            | PaymentCancel { .. }
            | PaymentStatus { .. }
            | OrderCreate { .. }
            | OrderFind { .. }
            | RemoveItem { .. }
            | RemoveOrder { .. }
            | Checkout { .. }
            | OrderCancel { .. } => Vec::new(),
        }
    }

    /// Whether the call is one of the three `batch_init`s.
    pub fn is_batch_init(&self) -> bool {
        matches!(self, Call::StockBatchInit { .. } | Call::PaymentBatchInit { .. } | Call::OrdersBatchInit { .. })
    }

    /// Whether the call changes the lines of an order or deletes one.
    pub fn edits_an_order(&self) -> bool {
        matches!(self, Call::AddItem { .. } | Call::RemoveItem { .. } | Call::RemoveOrder { .. })
    }
}

impl Req {
    /// The method, the service and the path of the request.
    pub fn http(&self) -> (reqwest::Method, Service, String) {
        use reqwest::Method;
        use Call::*;
        let (post, get, delete) = (Method::POST, Method::GET, Method::DELETE);
        match self {
            ItemCreate { price } => (post, Service::Stock, format!("/stock/item/create/{price}")),
            StockBatchInit { n, stock, price } => {
                (post, Service::Stock, format!("/stock/batch_init/{n}/{stock}/{price}"))
            }
            StockFind { item } => (get, Service::Stock, format!("/stock/find/{item}")),
            StockAdd { item, amount } => (post, Service::Stock, format!("/stock/add/{item}/{amount}")),
            StockSubtract { item, amount } => (post, Service::Stock, format!("/stock/subtract/{item}/{amount}")),
            UserCreate => (post, Service::Payment, "/payment/create_user".to_owned()),
            PaymentBatchInit { n, money } => (post, Service::Payment, format!("/payment/batch_init/{n}/{money}")),
            FindUser { user } => (get, Service::Payment, format!("/payment/find_user/{user}")),
            AddFunds { user, amount } => (post, Service::Payment, format!("/payment/add_funds/{user}/{amount}")),
            Pay { user, amount } => (post, Service::Payment, format!("/payment/pay/{user}/{amount}")),
            PayOrder { user, order, amount } => {
                (post, Service::Payment, format!("/payment/pay/{user}/{order}/{amount}"))
            }
            PaymentCancel { user, order } => (post, Service::Payment, format!("/payment/cancel/{user}/{order}")),
            PaymentStatus { user, order, post: true } => {
                (post, Service::Payment, format!("/payment/status/{user}/{order}"))
            }
            PaymentStatus { user, order, post: false } => {
                (get, Service::Payment, format!("/payment/status/{user}/{order}"))
            }
            OrderCreate { user } => (post, Service::Orders, format!("/orders/create/{user}")),
            OrdersBatchInit { n, items, users, price } => {
                (post, Service::Orders, format!("/orders/batch_init/{n}/{items}/{users}/{price}"))
            }
            OrderFind { order } => (get, Service::Orders, format!("/orders/find/{order}")),
            AddItem { order, item, quantity: Some(quantity) } => {
                (post, Service::Orders, format!("/orders/addItem/{order}/{item}/{quantity}"))
            }
            AddItem { order, item, quantity: None } => {
                (post, Service::Orders, format!("/orders/addItem/{order}/{item}"))
            }
            RemoveItem { order, item } => (delete, Service::Orders, format!("/orders/removeItem/{order}/{item}")),
            RemoveOrder { order } => (delete, Service::Orders, format!("/orders/remove/{order}")),
            Checkout { order } => (post, Service::Orders, format!("/orders/checkout/{order}")),
            OrderCancel { order } => (post, Service::Orders, format!("/orders/cancel/{order}")),
        }
    }
}

impl fmt::Display for Req {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (method, _, path) = self.http();
        write!(f, "{method} {path}")
    }
}

impl fmt::Display for Pick {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pick::Batch(k) => write!(f, "{k}"),
            Pick::Created(k) => write!(f, "new#{k}"),
            Pick::Unknown(k) => write!(f, "{:?}", UNKNOWN_IDS[*k as usize % UNKNOWN_IDS.len()]),
        }
    }
}

impl fmt::Display for UserRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserRef::Is(pick) => write!(f, "user {pick}"),
            UserRef::OwnerOf(order) => write!(f, "user of order {order}"),
        }
    }
}

impl fmt::Display for ItemRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ItemRef::Is(pick) => write!(f, "item {pick}"),
            ItemRef::InOrder(order, k) => write!(f, "item #{k} of order {order}"),
        }
    }
}

impl fmt::Display for OrderRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OrderRef::Is(pick) => write!(f, "order {pick}"),
            OrderRef::Direct(k) => write!(f, "order \"d{k}\""),
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Call::*;
        let kind = self.kind();
        match self {
            ItemCreate { price } => write!(f, "{kind}(price {price})"),
            StockBatchInit { n, stock, price } => write!(f, "{kind}(n {n}, stock {stock}, price {price})"),
            StockFind { item } => write!(f, "{kind}({item})"),
            StockAdd { item, amount } | StockSubtract { item, amount } => write!(f, "{kind}({item}, {amount})"),
            UserCreate => write!(f, "{kind}"),
            PaymentBatchInit { n, money } => write!(f, "{kind}(n {n}, money {money})"),
            FindUser { user } | OrderCreate { user } => write!(f, "{kind}({user})"),
            AddFunds { user, amount } | Pay { user, amount } => write!(f, "{kind}({user}, {amount})"),
            PayOrder { user, order, amount } => write!(f, "{kind}({user}, {order}, {amount})"),
            PaymentCancel { user, order } => write!(f, "{kind}({user}, {order})"),
            PaymentStatus { user, order, post } => {
                write!(f, "{kind}({user}, {order}, {})", if *post { "POST" } else { "GET" })
            }
            OrdersBatchInit { n, items, users, price } => {
                write!(f, "{kind}(n {n}, items {items}, users {users}, price {price})")
            }
            OrderFind { order } | RemoveOrder { order } | Checkout { order } | OrderCancel { order } => {
                write!(f, "{kind}({order})")
            }
            AddItem { order, item, quantity: Some(quantity) } => write!(f, "{kind}({order}, {item}, {quantity})"),
            AddItem { order, item, quantity: None } => write!(f, "{kind}({order}, {item})"),
            RemoveItem { order, item } => write!(f, "{kind}({order}, {item})"),
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Seq(op) => write!(f, "{op}"),
            Step::Burst(ops) => {
                f.write_str("burst [")?;
                for (k, op) in ops.iter().enumerate() {
                    write!(f, "{}{op}", if k == 0 { "" } else { " | " })?;
                }
                f.write_str("]")
            }
        }
    }
}

/// Shown as it reads in a report, so that proptest's messages are readable too.
impl fmt::Debug for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Debug for Req {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A sequence, one step a line.
pub struct Sequence<'a>(pub &'a [Step]);

impl fmt::Display for Sequence<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (k, step) in self.0.iter().enumerate() {
            writeln!(f, "  {k:>2}: {step}")?;
        }
        Ok(())
    }
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![
        6 => (0..BATCH_IDS).prop_map(Pick::Batch),
        3 => (0..4u8).prop_map(Pick::Created),
        1 => (0..UNKNOWN_IDS.len() as u8).prop_map(Pick::Unknown),
    ]
}

fn user() -> impl Strategy<Value = UserRef> {
    prop_oneof![5 => pick().prop_map(UserRef::Is), 5 => pick().prop_map(UserRef::OwnerOf)]
}

fn item() -> impl Strategy<Value = ItemRef> {
    prop_oneof![6 => pick().prop_map(ItemRef::Is), 4 => (pick(), 0..2u8).prop_map(|(o, k)| ItemRef::InOrder(o, k))]
}

fn order() -> impl Strategy<Value = OrderRef> {
    pick().prop_map(OrderRef::Is)
}

/// Orders as payment-svc sees them: mostly real ones, sometimes IDs only REST payments use.
fn paid_order() -> impl Strategy<Value = OrderRef> {
    prop_oneof![7 => order(), 3 => (0..2u8).prop_map(OrderRef::Direct)]
}

/// Amounts of stock and money: mostly small, sometimes near the maximum, sometimes not numbers.
fn amount() -> impl Strategy<Value = Num> {
    prop_oneof![
        12 => proptest::sample::select(vec![0u64, 1, 2, 3, 5, 10, 100]).prop_map(Num::Lit),
        1 => (0..HUGE.len() as u8).prop_map(Num::Huge),
        1 => (0..2u8).prop_map(Num::Fill),
        1 => (0..BAD_NUMBERS.len() as u8).prop_map(Num::Bad),
    ]
}

/// Amounts added to stock or credit: often up to the maximum, where what cancels may give back must still fit.
fn top_up() -> impl Strategy<Value = Num> {
    prop_oneof![
        8 => proptest::sample::select(vec![1u64, 0, 2, 3, 5, 10, 100]).prop_map(Num::Lit),
        1 => (0..HUGE.len() as u8).prop_map(Num::Huge),
        4 => (0..2u8).prop_map(Num::Fill),
        1 => (0..BAD_NUMBERS.len() as u8).prop_map(Num::Bad),
    ]
}

fn price() -> impl Strategy<Value = Num> {
    prop_oneof![
        12 => proptest::sample::select(vec![1u64, 2, 0, 5]).prop_map(Num::Lit),
        1 => (0..HUGE.len() as u8).prop_map(Num::Huge),
        1 => (0..BAD_NUMBERS.len() as u8).prop_map(Num::Bad),
    ]
}

fn quantity() -> impl Strategy<Value = Num> {
    prop_oneof![
        12 => (1..=3u64).prop_map(Num::Lit),
        1 => Just(Num::Lit(0)),
        1 => (0..HUGE.len() as u8).prop_map(Num::Huge),
        1 => (0..BAD_NUMBERS.len() as u8).prop_map(Num::Bad),
    ]
}

/// How many entities a `batch_init` makes: within the pool, sometimes 0 or not a number.
fn count(max: u64) -> impl Strategy<Value = Num> {
    prop_oneof![
        12 => (1..=max).prop_map(Num::Lit),
        1 => Just(Num::Lit(0)),
        1 => (0..BAD_NUMBERS.len() as u8).prop_map(Num::Bad),
    ]
}

fn start_amount() -> impl Strategy<Value = Num> {
    prop_oneof![
        12 => proptest::sample::select(vec![10u64, 0, 1, 5, 100]).prop_map(Num::Lit),
        1 => (0..HUGE.len() as u8).prop_map(Num::Huge),
        1 => (0..2u8).prop_map(Num::Fill),
        1 => (0..BAD_NUMBERS.len() as u8).prop_map(Num::Bad),
    ]
}

fn stock_batch_init() -> BoxedStrategy<Op> {
    (count(BATCH_IDS as u64), start_amount(), price())
        .prop_map(|(n, stock, price)| Call::StockBatchInit { n, stock, price })
        .boxed()
}

fn payment_batch_init() -> BoxedStrategy<Op> {
    (count(BATCH_IDS as u64), start_amount()).prop_map(|(n, money)| Call::PaymentBatchInit { n, money }).boxed()
}

fn orders_batch_init() -> BoxedStrategy<Op> {
    // One more user than the pool has, so that some orders belong to nobody.
    (count(BATCH_IDS as u64), count(BATCH_IDS as u64), count(BATCH_IDS as u64 + 1), price())
        .prop_map(|(n, items, users, price)| Call::OrdersBatchInit { n, items, users, price })
        .boxed()
}

fn checkout() -> BoxedStrategy<Op> {
    order().prop_map(|order| Call::Checkout { order }).boxed()
}

fn order_cancel() -> BoxedStrategy<Op> {
    order().prop_map(|order| Call::OrderCancel { order }).boxed()
}

/// Mostly the user who can cancel: the order's own.
fn payer() -> impl Strategy<Value = UserRef> {
    prop_oneof![2 => pick().prop_map(UserRef::Is), 8 => pick().prop_map(UserRef::OwnerOf)]
}

/// A user and an order for payment-svc: mostly an order and its own user, else any two.
fn user_and_order() -> impl Strategy<Value = (UserRef, OrderRef)> {
    prop_oneof![
        6 => pick().prop_map(|order| (UserRef::OwnerOf(order), OrderRef::Is(order))),
        4 => (payer(), paid_order()),
    ]
}

fn payment_cancel() -> BoxedStrategy<Op> {
    user_and_order().prop_map(|(user, order)| Call::PaymentCancel { user, order }).boxed()
}

fn stock_add() -> BoxedStrategy<Op> {
    (item(), top_up()).prop_map(|(item, amount)| Call::StockAdd { item, amount }).boxed()
}

fn stock_subtract() -> BoxedStrategy<Op> {
    (item(), amount()).prop_map(|(item, amount)| Call::StockSubtract { item, amount }).boxed()
}

fn add_funds() -> BoxedStrategy<Op> {
    (payer(), top_up()).prop_map(|(user, amount)| Call::AddFunds { user, amount }).boxed()
}

fn pay() -> BoxedStrategy<Op> {
    (user(), amount()).prop_map(|(user, amount)| Call::Pay { user, amount }).boxed()
}

fn pay_order() -> BoxedStrategy<Op> {
    (user_and_order(), amount()).prop_map(|((user, order), amount)| Call::PayOrder { user, order, amount }).boxed()
}

fn add_item() -> BoxedStrategy<Op> {
    (order(), item(), proptest::option::weighted(0.7, quantity()))
        .prop_map(|(order, item, quantity)| Call::AddItem { order, item, quantity })
        .boxed()
}

/// Any single call, weighted towards the ones that move stock and money.
pub fn op() -> impl Strategy<Value = Op> {
    Union::new_weighted(vec![
        (14, checkout()),
        (7, order_cancel()),
        (7, payment_cancel()),
        (8, add_item()),
        (3, (order(), item()).prop_map(|(order, item)| Call::RemoveItem { order, item }).boxed()),
        (2, order().prop_map(|order| Call::RemoveOrder { order }).boxed()),
        (4, user().prop_map(|user| Call::OrderCreate { user }).boxed()),
        (3, order().prop_map(|order| Call::OrderFind { order }).boxed()),
        (2, orders_batch_init()),
        (2, price().prop_map(|price| Call::ItemCreate { price }).boxed()),
        (2, stock_batch_init()),
        (2, item().prop_map(|item| Call::StockFind { item }).boxed()),
        (9, stock_add()),
        (4, stock_subtract()),
        (2, Just(Call::UserCreate).boxed()),
        (2, payment_batch_init()),
        (2, user().prop_map(|user| Call::FindUser { user }).boxed()),
        (7, add_funds()),
        (3, pay()),
        (4, pay_order()),
        (
            3,
            (user_and_order(), any::<bool>())
                .prop_map(|((user, order), post)| Call::PaymentStatus { user, order, post })
                .boxed(),
        ),
    ])
}

/// A call of a burst: checkouts and cancels of the same few orders, with what can disturb them.
fn burst_op() -> impl Strategy<Value = Op> {
    Union::new_weighted(vec![
        (10, checkout()),
        (4, order_cancel()),
        (4, payment_cancel()),
        (3, stock_subtract()),
        (3, stock_add()),
        (3, pay()),
        (2, pay_order()),
        (3, add_funds()),
        (2, stock_batch_init()),
        (2, payment_batch_init()),
        (1, orders_batch_init()),
        (2, add_item()),
    ])
}

/// A step: mostly a single call, sometimes a burst of two to six.
pub fn step() -> impl Strategy<Value = Step> {
    prop_oneof![8 => op().prop_map(Step::Seq), 2 => vec(burst_op(), 2..=6).prop_map(Step::Burst)]
}

/// A sequence of up to `max_steps` steps.
pub fn sequence(max_steps: usize) -> impl Strategy<Value = Vec<Step>> {
    vec(step(), 1..=max_steps.max(1))
}
