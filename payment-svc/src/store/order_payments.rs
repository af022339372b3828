//! Payments a REST client makes against an order (`/payment/pay/{user}/{order}/{amount}`), their cancellation,
//! and the paid status of an order. A REST payment is the row keyed [`domain::rest_payment_key`]; cancellation
//! and status also see the rows the checkout saga made for the same user and order.

use diesel::{
    sql_types::{BigInt, Bool, Text},
    QueryResult, QueryableByName,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use super::{bigint, from_bigint, users, StoreError};
use crate::domain;

/// What a REST payment against an order did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderPayment {
    /// The amount was taken; the user's credit is now `credit`.
    Paid {
        /// The credit after paying.
        credit: u64,
    },
    /// The order was paid before by this user: nothing was taken.
    AlreadyPaid {
        /// The user's credit, unchanged.
        credit: u64,
    },
}

#[derive(QueryableByName)]
struct Amount {
    #[diesel(sql_type = BigInt)]
    amount: i64,
}

#[derive(QueryableByName)]
struct Status {
    #[diesel(sql_type = Bool)]
    user_exists: bool,
    #[diesel(sql_type = Bool)]
    paid: bool,
    #[diesel(sql_type = Bool)]
    any_payment: bool,
}

/// Charges `amount` to `user_id` for `order_id`, once: while the REST payment for the pair is `charged`, a
/// repeat takes nothing. A payment that was cancelled can be made again.
pub async fn pay(
    conn: &mut AsyncPgConnection,
    user_id: &str,
    order_id: &str,
    amount: u64,
) -> Result<OrderPayment, StoreError> {
    let key = domain::rest_payment_key(user_id, order_id);
    conn.transaction::<_, StoreError, _>(async |conn| {
        // Claiming the row first serialises concurrent payments of the same pair on its key: the second waits
        // here, then finds it charged. A refusal below rolls the claim back.
        let claimed = diesel::sql_query(
            "INSERT INTO payments (key, user_id, order_id, amount, state) VALUES ($1, $2, $3, $4, 'charged') \
             ON CONFLICT (key) DO UPDATE SET amount = EXCLUDED.amount, state = 'charged', reason = NULL, \
             updated_at = now() WHERE payments.state <> 'charged'",
        )
        .bind::<Text, _>(&key)
        .bind::<Text, _>(user_id)
        .bind::<Text, _>(order_id)
        .bind::<BigInt, _>(bigint(amount)?)
        .execute(conn)
        .await?;
        if claimed == 0 {
            return Ok(OrderPayment::AlreadyPaid { credit: users::find(conn, user_id).await? });
        }
        Ok(OrderPayment::Paid { credit: users::pay(conn, user_id, amount).await? })
    })
    .await
}

/// Refunds every `charged` payment of `user_id` for `order_id` (made over REST or by a saga) and returns the
/// total given back; 0 when they were all refunded before.
pub async fn cancel(conn: &mut AsyncPgConnection, user_id: &str, order_id: &str) -> Result<u64, StoreError> {
    conn.transaction::<_, StoreError, _>(async |conn| {
        let amounts: Vec<u64> = diesel::sql_query(
            "UPDATE payments SET state = 'refunded', updated_at = now() \
             WHERE user_id = $1 AND order_id = $2 AND state = 'charged' RETURNING amount",
        )
        .bind::<Text, _>(user_id)
        .bind::<Text, _>(order_id)
        .load::<Amount>(conn)
        .await?
        .into_iter()
        .map(|row| from_bigint(row.amount))
        .collect();
        if amounts.is_empty() {
            let status = status(conn, user_id, order_id).await?;
            return match status {
                Status { user_exists: false, .. } => Err(StoreError::UnknownUser(user_id.to_owned())),
                Status { any_payment: false, .. } => {
                    Err(StoreError::NoPayment { user_id: user_id.to_owned(), order_id: order_id.to_owned() })
                }
                _ => Ok(0),
            };
        }
        let credit = users::credit_for_update(conn, user_id)
            .await?
            .ok_or_else(|| StoreError::UnknownUser(user_id.to_owned()))?;
        let new_credit = domain::refund_all(user_id, credit, &amounts)?;
        users::set_credit(conn, user_id, new_credit).await?;
        Ok(new_credit - credit)
    })
    .await
}

/// Whether `user_id` has a `charged` payment for `order_id`.
pub async fn is_paid(conn: &mut AsyncPgConnection, user_id: &str, order_id: &str) -> Result<bool, StoreError> {
    match status(conn, user_id, order_id).await? {
        Status { user_exists: false, .. } => Err(StoreError::UnknownUser(user_id.to_owned())),
        Status { paid, .. } => Ok(paid),
    }
}

async fn status(conn: &mut AsyncPgConnection, user_id: &str, order_id: &str) -> QueryResult<Status> {
    diesel::sql_query(
        "SELECT EXISTS (SELECT 1 FROM users WHERE id = $1) AS user_exists, \
         EXISTS (SELECT 1 FROM payments WHERE user_id = $1 AND order_id = $2 AND state = 'charged') AS paid, \
         EXISTS (SELECT 1 FROM payments WHERE user_id = $1 AND order_id = $2) AS any_payment",
    )
    .bind::<Text, _>(user_id)
    .bind::<Text, _>(order_id)
    .get_result(conn)
    .await
}
