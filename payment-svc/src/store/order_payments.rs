//! Payments a REST client makes against an order (`/payment/pay/{user}/{order}/{amount}`), their cancellation,
//! and the paid status of an order. A REST payment is the row keyed [`domain::rest_payment_key`]; a cancel
//! refunds it here. Status and cancellation also see the rows the checkout saga made for the same user and order,
//! but a cancel never refunds those here: only cancelling the order gives a checkout's money (and its stock) back.

use diesel::{
    sql_types::{BigInt, Bool, Nullable, Text},
    OptionalExtension, QueryResult, QueryableByName,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use super::{
    bigint, from_bigint,
    users::{self, Payment},
    StoreError,
};
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
    /// The total of the checkout payments still charged; `NULL` when there is none.
    #[diesel(sql_type = Nullable<BigInt>)]
    by_checkout: Option<i64>,
}

/// What a cancel of a user's payments for an order did, and what it left to order-svc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancellation {
    /// What the REST payment for the pair gave back now; 0 when it was refunded before, or there is none.
    pub refunded: u64,
    /// What the checkout payments of the pair that are still charged hold, if there are any. They are left alone:
    /// cancelling the order gives them back, with the stock the checkout took.
    pub by_checkout: Option<u64>,
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
        Ok(OrderPayment::Paid { credit: users::pay(conn, user_id, amount, Payment::Refundable).await? })
    })
    .await
}

/// Refunds the REST payment of `user_id` for `order_id` if it is `charged` (so once), and reports what checkout
/// payments of the pair are still charged, leaving them alone. An unknown user is [`StoreError::UnknownUser`], a
/// pair without any payment [`StoreError::NoPayment`].
pub async fn cancel(conn: &mut AsyncPgConnection, user_id: &str, order_id: &str) -> Result<Cancellation, StoreError> {
    conn.transaction::<_, StoreError, _>(async |conn| {
        let status = status(conn, user_id, order_id).await?;
        if !status.user_exists {
            return Err(StoreError::UnknownUser(user_id.to_owned()));
        }
        if !status.any_payment {
            return Err(StoreError::NoPayment { user_id: user_id.to_owned(), order_id: order_id.to_owned() });
        }
        let refunded: Option<Amount> = diesel::sql_query(
            "UPDATE payments SET state = 'refunded', updated_at = now() WHERE key = $1 AND state = 'charged' \
             RETURNING amount",
        )
        .bind::<Text, _>(domain::rest_payment_key(user_id, order_id))
        .get_result(conn)
        .await
        .optional()?;
        let refunded = match refunded {
            None => 0,
            Some(row) => {
                let amount = from_bigint(row.amount);
                let account = users::account_for_update(conn, user_id)
                    .await?
                    .ok_or_else(|| StoreError::UnknownUser(user_id.to_owned()))?;
                users::set_account(conn, user_id, domain::refund(user_id, account, amount)?).await?;
                amount
            }
        };
        Ok(Cancellation { refunded, by_checkout: status.by_checkout.map(from_bigint) })
    })
    .await
}

/// What the checkout payments of `user_id` for `order_id` that are still charged hold, if there are any.
pub async fn charged_by_checkout(
    conn: &mut AsyncPgConnection,
    user_id: &str,
    order_id: &str,
) -> Result<Option<u64>, StoreError> {
    Ok(status(conn, user_id, order_id).await?.by_checkout.map(from_bigint))
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
         EXISTS (SELECT 1 FROM payments WHERE user_id = $1 AND order_id = $2) AS any_payment, \
         (SELECT sum(amount)::bigint FROM payments \
          WHERE user_id = $1 AND order_id = $2 AND state = 'charged' AND key <> $3) AS by_checkout",
    )
    .bind::<Text, _>(user_id)
    .bind::<Text, _>(order_id)
    .bind::<Text, _>(domain::rest_payment_key(user_id, order_id))
    .get_result(conn)
    .await
}
