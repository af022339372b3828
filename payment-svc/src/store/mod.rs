//! PostgreSQL access for payment-svc: every query the service makes, grouped by what it touches.
//!
//! - [`users`]: users, their credit and what of theirs may still be refunded; each REST change of credit is one
//!   atomic statement.
//! - [`order_payments`]: payments a REST client makes against an order, their cancellation and status.
//! - [`saga`]: the saga worker's charges and refunds, a whole batch in one transaction of a few set-based
//!   statements, with the payment row as inbox.
//!
//! Lock order, to keep deadlocks away: a transaction that touches both locks `payments` rows before `users` rows.
//! The one exception is a saga's first charge, which inserts its payment row after locking the user because there
//! was no row to lock before; two transactions can only meet there when one saga's command is handled twice at
//! once, and then the later insert fails and its batch is redelivered.

pub mod order_payments;
pub mod saga;
pub mod users;

use crate::domain::CreditRefusal;

/// The embedded SQL migrations of the service's database.
pub const MIGRATIONS: diesel_migrations::EmbeddedMigrations = diesel_migrations::embed_migrations!("migrations");

/// Why a REST operation on the store did not happen.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No user has this ID.
    #[error("user {0} not found")]
    UnknownUser(String),
    /// The user never paid for this order.
    #[error("user {user_id} has no payment for order {order_id}")]
    NoPayment {
        /// The user.
        user_id: String,
        /// The order.
        order_id: String,
    },
    /// The rules of credit refuse the change.
    #[error(transparent)]
    Refused(#[from] CreditRefusal),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] diesel::result::Error),
}

/// `value` as a `BIGINT`. Callers only pass amounts already checked against [`crate::domain::MAX_CREDIT`]; should
/// one slip through, the statement fails rather than storing a wrapped number.
fn bigint(value: u64) -> diesel::QueryResult<i64> {
    i64::try_from(value).map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))
}

/// A stored `BIGINT` amount as the unsigned number it is; the table's `CHECK (x >= 0)` constraints make the
/// fallback unreachable.
fn from_bigint(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}
