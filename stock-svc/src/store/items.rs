//! The `items` table. Every change of stock is one atomic `UPDATE` whose `WHERE` clause carries the rule (enough
//! stock to subtract, room to add), so concurrent requests never take an item below zero or beyond `BIGINT`
//! without any lock held across round trips. When the `UPDATE` matches nothing, a second read explains why.
//!
//! Amounts passed in are non-negative; callers parse them from requests or messages before they get here.

use diesel::{result::QueryResult, sql_types::BigInt, ExpressionMethods, OptionalExtension, QueryDsl};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::schema::items;
use crate::domain::{ItemState, Line, StockError};

/// A stock change that did not happen: refused by the rules, or the database failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The rules refused the change; nothing was written.
    #[error(transparent)]
    Refused(#[from] StockError),
    /// The database failed.
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
}

/// The columns an update returns, in [`ItemState`] order.
const STATE: (items::stock, items::price) = (items::stock, items::price);

fn state((stock, price): (i64, i64)) -> ItemState {
    ItemState { stock, price }
}

/// Creates an item with no stock at `price` and returns its new ID.
pub async fn create(conn: &mut AsyncPgConnection, price: i64) -> QueryResult<String> {
    let item_id = uuid::Uuid::new_v4().to_string();
    diesel::insert_into(items::table)
        .values((items::item_id.eq(&item_id), items::stock.eq(0), items::price.eq(price)))
        .execute(conn)
        .await?;
    Ok(item_id)
}

/// Creates or overwrites the items `"0"` to `"count - 1"` with `stock` and `price`, in one statement.
pub async fn batch_init(conn: &mut AsyncPgConnection, count: i64, stock: i64, price: i64) -> QueryResult<()> {
    diesel::sql_query(
        "INSERT INTO items (item_id, stock, price) \
         SELECT i::text, $2, $3 FROM generate_series(0, $1 - 1) AS i \
         ON CONFLICT (item_id) DO UPDATE SET stock = EXCLUDED.stock, price = EXCLUDED.price",
    )
    .bind::<BigInt, _>(count)
    .bind::<BigInt, _>(stock)
    .bind::<BigInt, _>(price)
    .execute(conn)
    .await
    .map(drop)
}

/// The item `item_id`, if it exists.
pub async fn find(conn: &mut AsyncPgConnection, item_id: &str) -> QueryResult<Option<ItemState>> {
    items::table.find(item_id).select(STATE).first(conn).await.optional().map(|row| row.map(state))
}

/// Adds `amount` to the stock of `item_id` and returns the new state.
pub async fn add(conn: &mut AsyncPgConnection, item_id: &str, amount: i64) -> Result<ItemState, StoreError> {
    let added = diesel::update(items::table.find(item_id).filter(items::stock.le(i64::MAX.saturating_sub(amount))))
        .set(items::stock.eq(items::stock + amount))
        .returning(STATE)
        .get_result(conn)
        .await
        .optional()?;
    if let Some(added) = added {
        return Ok(state(added));
    }
    match find(conn, item_id).await? {
        None => Err(StockError::UnknownItem(item_id.to_owned()).into()),
        Some(current) => {
            Err(StockError::TooMuchStock { item_id: item_id.to_owned(), in_stock: current.stock, added: amount }.into())
        }
    }
}

/// Subtracts `amount` from the stock of `item_id` and returns the new state; refused if the stock is short.
pub async fn subtract(conn: &mut AsyncPgConnection, item_id: &str, amount: i64) -> Result<ItemState, StoreError> {
    let taken = diesel::update(items::table.find(item_id).filter(items::stock.ge(amount)))
        .set(items::stock.eq(items::stock - amount))
        .returning(STATE)
        .get_result(conn)
        .await
        .optional()?;
    if let Some(taken) = taken {
        return Ok(state(taken));
    }
    match find(conn, item_id).await? {
        None => Err(StockError::UnknownItem(item_id.to_owned()).into()),
        Some(current) => {
            Err(StockError::NotEnoughStock { item_id: item_id.to_owned(), in_stock: current.stock, requested: amount }
                .into())
        }
    }
}

/// Subtracts every line in the given order and stops at the first refusal. Not atomic by itself: run it in a
/// transaction (or savepoint) and roll back on error, so that a refusal leaves every line as it was.
pub async fn take_all(conn: &mut AsyncPgConnection, lines: &[Line]) -> Result<(), StoreError> {
    for line in lines {
        subtract(conn, &line.item_id, line.quantity).await?;
    }
    Ok(())
}

/// Adds every line back to stock, in the given order.
pub async fn put_back(conn: &mut AsyncPgConnection, lines: &[Line]) -> QueryResult<()> {
    for line in lines {
        diesel::update(items::table.find(&line.item_id))
            .set(items::stock.eq(items::stock + line.quantity))
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// Locks the rows of `item_ids` (sorted by the caller) until the end of the transaction, in that order.
pub async fn lock_in_order(conn: &mut AsyncPgConnection, item_ids: &[&str]) -> QueryResult<()> {
    if item_ids.is_empty() {
        return Ok(());
    }
    diesel::sql_query(r#"SELECT item_id FROM items WHERE item_id = ANY($1) ORDER BY item_id COLLATE "C" FOR UPDATE"#)
        .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(item_ids)
        .execute(conn)
        .await
        .map(drop)
}
