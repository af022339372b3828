//! The database of order-svc: orders and their lines ([`orders`]), and the checkout attempts of each order with
//! their cancellations, which also say which requests to the coordinator are due to be sent again
//! ([`checkouts`]). Queries are plain SQL through diesel-async; the schema is in `migrations/`. The store loads and
//! writes rows; what a request does with them is decided in [`crate::domain`], and the messages that follow are
//! built in [`crate::messaging`].
//!
//! Every change to an order, the start of its checkout or cancellation, the recording of an outcome and a
//! `batch_init` happen in a transaction that first locks the order's row (several orders' rows in ID order).
//! That one lock is what makes "add an item", "remove the order", "start a checkout" and "start a cancellation"
//! exclusive with one another, so a saga's snapshot of the order is never changed under it; and taking it before
//! any checkout row is what keeps these transactions from deadlocking with one another.

pub mod cancellations;
pub mod checkouts;
pub mod orders;
pub mod outcomes;

use diesel_async::pooled_connection::deadpool::PoolError;
use shared_contracts::LineItem;

use crate::domain::Refusal;

/// Why a store operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No order has this ID.
    #[error("order {0} does not exist")]
    UnknownOrder(String),
    /// The order has no line for this item.
    #[error("item {item_id} is not in order {order_id}")]
    ItemNotInOrder {
        /// The order.
        order_id: String,
        /// The item asked for.
        item_id: String,
    },
    /// The order's rules refuse the change.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// A `batch_init` would replace orders with this many checkouts or cancellations in flight.
    #[error("{0} checkouts of these orders are unfinished; try again when they have ended")]
    UnfinishedCheckouts(u64),
    /// A row holds what the schema's checks should have kept out (a negative amount, an unreadable reason).
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    /// The database failed or refused the query.
    #[error("database error: {0}")]
    Database(#[from] diesel::result::Error),
    /// No connection could be had from the pool.
    #[error("no database connection: {0}")]
    Pool(#[from] PoolError),
}

/// An order as clients see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderView {
    /// The order's ID.
    pub order_id: String,
    /// Who buys.
    pub user_id: String,
    /// Whether it is paid.
    pub paid: bool,
    /// What it costs.
    pub total: u64,
    /// Its lines, one per item, sorted by item ID.
    pub items: Vec<LineItem>,
}

/// Reads a `BIGINT` column that the schema keeps non-negative.
fn stored_amount(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} is negative: {value}")))
}

/// Converts an amount for a `BIGINT` column; amounts come checked against `MAX_AMOUNT`, so this only fails on a
/// bug upstream, which is refused rather than wrapped around.
fn bigint(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Refused(Refusal::TooLarge))
}
