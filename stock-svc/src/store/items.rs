//! The `items` table. Beside its stock and price an item keeps `reserved`, the units checkout sagas reserved and
//! have not released (see [`Holding`]). Every REST change of stock is one atomic `UPDATE` whose `WHERE` clause
//! carries the rule (enough stock to subtract; room to add, stock and reserved together within [`MAX_STOCK`]), so
//! concurrent requests never take an item below zero or past the maximum without any lock held across round
//! trips. When the `UPDATE` matches nothing, a second read explains why, in the words of the domain.
//!
//! Amounts passed in are non-negative; callers parse them from requests or messages before they get here.

use std::collections::{BTreeMap, HashMap};

use diesel::{
    result::QueryResult,
    sql_types::{Array, BigInt, Text},
    ExpressionMethods, IntoSql, OptionalExtension, QueryDsl, QueryableByName,
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use platform::db::prepared;

use super::schema::items;
use crate::domain::{self, Holding, ItemState, StockError, MAX_STOCK};

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

/// The item with the most units reserved among those of `"0"` to `"count - 1"` that exist, with that count;
/// every one of them is locked until the end of the transaction (in ID order, as the saga worker locks items).
pub async fn lock_numbered(conn: &mut AsyncPgConnection, count: i64) -> QueryResult<Option<(String, i64)>> {
    #[derive(QueryableByName)]
    struct MostReserved {
        #[diesel(sql_type = Text)]
        item_id: String,
        #[diesel(sql_type = BigInt)]
        reserved: i64,
    }
    let most: Option<MostReserved> = diesel::sql_query(
        "WITH locked AS MATERIALIZED ( \
             SELECT item_id, reserved FROM items \
             WHERE item_id IN (SELECT i::text FROM generate_series(0, $1 - 1) AS i) \
             ORDER BY item_id FOR UPDATE) \
         SELECT item_id, reserved FROM locked ORDER BY reserved DESC, item_id LIMIT 1",
    )
    .bind::<BigInt, _>(count)
    .get_result(conn)
    .await
    .optional()?;
    Ok(most.map(|row| (row.item_id, row.reserved)))
}

/// Creates or overwrites the items `"0"` to `"count - 1"` with `stock` and `price`, in one statement; what they
/// have reserved stays. The caller has checked, under [`lock_numbered`], that `stock` leaves room for it.
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

/// Adds `amount` to the stock of `item_id` and returns the new state; refused, changing nothing, when stock and
/// reserved together would exceed [`MAX_STOCK`] (see [`domain::add_stock`]).
pub async fn add(conn: &mut AsyncPgConnection, item_id: &str, amount: i64) -> Result<ItemState, StoreError> {
    // `MAX_STOCK - reserved - amount` cannot overflow: both are between 0 and the maximum.
    let room_left = MAX_STOCK.saturating_sub(amount).into_sql::<BigInt>() - items::reserved;
    let added = diesel::update(items::table.find(item_id).filter(items::stock.le(room_left)))
        .set(items::stock.eq(items::stock + amount))
        .returning(STATE)
        .get_result(conn)
        .await
        .optional()?;
    if let Some(added) = added {
        return Ok(state(added));
    }
    let holding: Option<(i64, i64)> =
        items::table.find(item_id).select((items::stock, items::reserved)).first(conn).await.optional()?;
    let Some((stock, reserved)) = holding else { return Err(StockError::UnknownItem(item_id.to_owned()).into()) };
    let holding = Holding { stock, reserved };
    // The item may have changed since the update missed; the refusal stands either way.
    let refusal = domain::add_stock(item_id, holding, amount).err();
    Err(refusal
        .unwrap_or(StockError::TooMuchStock { item_id: item_id.to_owned(), in_stock: stock, reserved, added: amount })
        .into())
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

/// The holding of each of `item_ids` that exists, its row locked until the end of the transaction. Rows are
/// locked in ID order, so batches that lock overlapping items queue behind each other instead of deadlocking.
pub async fn lock_holdings(mut conn: &AsyncPgConnection, item_ids: &[&str]) -> QueryResult<HashMap<String, Holding>> {
    if item_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(String, i64, i64)> = items::table
        .select((items::item_id, items::stock, items::reserved))
        .filter(items::item_id.eq_any(item_ids))
        .order(items::item_id)
        .for_update()
        .load(&mut conn)
        .await?;
    Ok(rows.into_iter().map(|(item_id, stock, reserved)| (item_id, Holding { stock, reserved })).collect())
}

/// Sets the stock and reserved count of each item in `holdings`, in one statement. The caller holds the rows'
/// locks and worked the holdings out from what it read under them.
pub async fn set_holdings(mut conn: &AsyncPgConnection, holdings: &BTreeMap<String, Holding>) -> QueryResult<()> {
    if holdings.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = holdings.keys().map(String::as_str).collect();
    let stock: Vec<i64> = holdings.values().map(|holding| holding.stock).collect();
    let reserved: Vec<i64> = holdings.values().map(|holding| holding.reserved).collect();
    prepared(
        diesel::sql_query(
            "UPDATE items SET stock = new.stock, reserved = new.reserved \
             FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS new(item_id, stock, reserved) \
             WHERE items.item_id = new.item_id",
        )
        .bind::<Array<Text>, _>(ids)
        .bind::<Array<BigInt>, _>(stock)
        .bind::<Array<BigInt>, _>(reserved),
    )
    .execute(&mut conn)
    .await
    .map(drop)
}
