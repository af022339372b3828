//! The `items` table. Every change of stock is one atomic `UPDATE` whose `WHERE` clause carries the rule (enough
//! stock to subtract, room to add), so concurrent requests never take an item below zero or beyond `BIGINT`
//! without any lock held across round trips. When the `UPDATE` matches nothing, a second read explains why.
//!
//! Amounts passed in are non-negative; callers parse them from requests or messages before they get here.

use std::collections::{BTreeMap, HashMap};

use diesel::{
    result::QueryResult,
    sql_types::{Array, BigInt, Text},
    ExpressionMethods, OptionalExtension, QueryDsl,
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use platform::db::prepared;

use super::schema::items;
use crate::domain::{ItemState, StockError};

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

/// The stock of each of `item_ids` that exists, its row locked until the end of the transaction. Rows are locked in
/// ID order, so batches that lock overlapping items queue behind each other instead of deadlocking.
pub async fn lock_stock(conn: &mut AsyncPgConnection, item_ids: &[&str]) -> QueryResult<HashMap<String, i64>> {
    if item_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(String, i64)> = items::table
        .select((items::item_id, items::stock))
        .filter(items::item_id.eq_any(item_ids))
        .order(items::item_id)
        .for_update()
        .load(conn)
        .await?;
    Ok(rows.into_iter().collect())
}

/// Sets the stock of each item in `stock`, in one statement. The caller holds the rows' locks and worked the
/// levels out from what it read under them.
pub async fn set_stock(mut conn: &AsyncPgConnection, stock: &BTreeMap<String, i64>) -> QueryResult<()> {
    if stock.is_empty() {
        return Ok(());
    }
    let (ids, levels): (Vec<&str>, Vec<i64>) = stock.iter().map(|(id, level)| (id.as_str(), *level)).unzip();
    prepared(
        diesel::sql_query(
            "UPDATE items SET stock = new.stock FROM unnest($1::text[], $2::bigint[]) AS new(item_id, stock) \
             WHERE items.item_id = new.item_id",
        )
        .bind::<Array<Text>, _>(ids)
        .bind::<Array<BigInt>, _>(levels),
    )
    .execute(&mut conn)
    .await
    .map(drop)
}
