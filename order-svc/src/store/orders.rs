//! Orders and their lines: creation, `batch_init`, lookup, adding and removing items, deletion.

use std::collections::HashMap;

use diesel::{
    sql_types::{Array, BigInt, Bool, Text},
    OptionalExtension, QueryableByName,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use platform::db::prepared;
use shared_contracts::{LineItem, SagaId};

use super::{bigint, stored_amount, OrderView, StoreError};
use crate::domain::{self, BatchInit, Line, OrderStatus};

/// An order's row, locked for the rest of the transaction, and whether a checkout of it is in flight.
pub(crate) struct LockedOrder {
    pub(crate) user_id: String,
    pub(crate) total: u64,
    pub(crate) status: OrderStatus,
}

#[derive(QueryableByName)]
struct OrderRow {
    #[diesel(sql_type = Text)]
    user_id: String,
    #[diesel(sql_type = Bool)]
    paid: bool,
    #[diesel(sql_type = BigInt)]
    total: i64,
}

impl OrderRow {
    /// The locked order this row is, with the saga of its checkout in flight.
    fn locked(self, pending_checkout: Option<SagaId>) -> Result<LockedOrder, StoreError> {
        Ok(LockedOrder {
            user_id: self.user_id,
            total: stored_amount(self.total, "an order total")?,
            status: OrderStatus { paid: self.paid, pending_checkout },
        })
    }
}

/// A saga ID stored as text, read back.
pub(crate) fn parse_saga_id(text: &str) -> Result<SagaId, StoreError> {
    text.parse().map_err(|e| StoreError::Corrupt(format!("saga ID {text}: {e}")))
}

/// A saga ID read back as text.
#[derive(QueryableByName)]
pub(crate) struct PendingRow {
    #[diesel(sql_type = Text)]
    pub(crate) saga_id: String,
}

#[derive(QueryableByName)]
struct LineRow {
    #[diesel(sql_type = BigInt)]
    quantity: i64,
    #[diesel(sql_type = BigInt)]
    unit_total: i64,
}

/// An order's lines aggregated into two columns of one row (`item_ids` and `quantities`, same order).
#[derive(QueryableByName)]
pub(crate) struct LineColumns {
    #[diesel(sql_type = Array<Text>)]
    item_ids: Vec<String>,
    #[diesel(sql_type = Array<BigInt>)]
    quantities: Vec<i64>,
}

impl LineColumns {
    /// The lines, in the order the columns hold them.
    pub(crate) fn into_items(self) -> Result<Vec<LineItem>, StoreError> {
        self.item_ids
            .into_iter()
            .zip(self.quantities)
            .map(|(item_id, quantity)| Ok(LineItem { quantity: stored_amount(quantity, "a quantity")?, item_id }))
            .collect()
    }
}

#[derive(QueryableByName)]
struct ViewRow {
    #[diesel(sql_type = Text)]
    user_id: String,
    #[diesel(sql_type = Bool)]
    paid: bool,
    #[diesel(sql_type = BigInt)]
    total: i64,
    #[diesel(embed)]
    lines: LineColumns,
}

/// Creates an empty, unpaid order of `user_id`.
pub async fn create(conn: &mut AsyncPgConnection, order_id: &str, user_id: &str) -> Result<(), StoreError> {
    diesel::sql_query("INSERT INTO orders (id, user_id, total) VALUES ($1, $2, 0)")
        .bind::<Text, _>(order_id)
        .bind::<Text, _>(user_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Replaces orders `"0"` to `"n - 1"` (with their lines and checkouts) by fresh ones as `batch` describes, in
/// set-based statements so that a hundred thousand orders take seconds.
pub async fn batch_init(conn: &mut AsyncPgConnection, batch: &BatchInit) -> Result<(), StoreError> {
    let orders = bigint(batch.orders)?;
    let items = bigint(batch.items)?;
    let users = bigint(batch.users)?;
    let price = bigint(batch.item_price)?;
    let total = bigint(batch.order_total())?;
    conn.transaction::<_, StoreError, _>(async |conn| {
        // Existing orders are overwritten in place rather than deleted, which would cost a cascade per order.
        for table in ["order_items", "checkouts"] {
            diesel::sql_query(format!(
                "DELETE FROM {table} WHERE order_id IN (SELECT i::text FROM generate_series(0, $1 - 1) AS i)"
            ))
            .bind::<BigInt, _>(orders)
            .execute(conn)
            .await?;
        }
        // Each order picks two items; picking the same item twice makes one line of two units.
        diesel::sql_query(
            "WITH picks AS MATERIALIZED (
                 SELECT i::text AS order_id,
                        floor(random() * $2)::bigint::text AS first_item,
                        floor(random() * $2)::bigint::text AS second_item,
                        floor(random() * $3)::bigint::text AS user_id
                 FROM generate_series(0, $1 - 1) AS i
             ), new_orders AS (
                 INSERT INTO orders (id, user_id, total) SELECT order_id, user_id, $5 FROM picks
                 ON CONFLICT (id) DO UPDATE
                 SET user_id = excluded.user_id, paid = false, total = excluded.total, created_at = now()
             )
             INSERT INTO order_items (order_id, item_id, quantity, unit_total)
             SELECT order_id, item_id, count(*), count(*) * $4
             FROM (SELECT order_id, first_item AS item_id FROM picks
                   UNION ALL SELECT order_id, second_item FROM picks) AS picked
             GROUP BY order_id, item_id",
        )
        .bind::<BigInt, _>(orders)
        .bind::<BigInt, _>(items)
        .bind::<BigInt, _>(users)
        .bind::<BigInt, _>(price)
        .bind::<BigInt, _>(total)
        .execute(conn)
        .await?;
        Ok(())
    })
    .await
}

/// The order `order_id` with its lines.
pub async fn find(conn: &mut AsyncPgConnection, order_id: &str) -> Result<OrderView, StoreError> {
    // One statement, so the lines and the total come from the same snapshot.
    let row: Option<ViewRow> = diesel::sql_query(
        r#"SELECT o.user_id, o.paid, o.total,
                  COALESCE(array_agg(i.item_id ORDER BY i.item_id COLLATE "C")
                           FILTER (WHERE i.item_id IS NOT NULL), '{}') AS item_ids,
                  COALESCE(array_agg(i.quantity ORDER BY i.item_id COLLATE "C")
                           FILTER (WHERE i.item_id IS NOT NULL), '{}') AS quantities
           FROM orders o LEFT JOIN order_items i ON i.order_id = o.id
           WHERE o.id = $1
           GROUP BY o.id"#,
    )
    .bind::<Text, _>(order_id)
    .get_result(conn)
    .await
    .optional()?;
    let row = row.ok_or_else(|| StoreError::UnknownOrder(order_id.to_owned()))?;
    let items = row.lines.into_items()?;
    Ok(OrderView {
        order_id: order_id.to_owned(),
        user_id: row.user_id,
        paid: row.paid,
        total: stored_amount(row.total, "an order total")?,
        items,
    })
}

/// Adds `quantity` units of `item_id` at `price` each to the order, if it is open; returns the new state.
pub async fn add_item(
    conn: &mut AsyncPgConnection,
    order_id: &str,
    item_id: &str,
    quantity: u64,
    price: u64,
) -> Result<OrderView, StoreError> {
    conn.transaction::<_, StoreError, _>(async |conn| {
        let order = lock(conn, order_id).await?;
        order.status.check_items_editable()?;
        let line = line(conn, order_id, item_id).await?.unwrap_or_default();
        let added = domain::add_units(order.total, line, quantity, price)?;
        diesel::sql_query(
            "INSERT INTO order_items (order_id, item_id, quantity, unit_total) VALUES ($1, $2, $3, $4)
             ON CONFLICT (order_id, item_id) DO UPDATE SET quantity = $3, unit_total = $4",
        )
        .bind::<Text, _>(order_id)
        .bind::<Text, _>(item_id)
        .bind::<BigInt, _>(bigint(added.line.quantity)?)
        .bind::<BigInt, _>(bigint(added.line.unit_total)?)
        .execute(conn)
        .await?;
        set_total(conn, order_id, added.total).await?;
        find(conn, order_id).await
    })
    .await
}

/// Removes the line of `item_id` from the order, if it is open, taking what the line cost off the total; returns
/// the new state.
pub async fn remove_item(conn: &mut AsyncPgConnection, order_id: &str, item_id: &str) -> Result<OrderView, StoreError> {
    conn.transaction::<_, StoreError, _>(async |conn| {
        let order = lock(conn, order_id).await?;
        let line = line(conn, order_id, item_id)
            .await?
            .ok_or_else(|| StoreError::ItemNotInOrder { order_id: order_id.to_owned(), item_id: item_id.to_owned() })?;
        order.status.check_items_editable()?;
        diesel::sql_query("DELETE FROM order_items WHERE order_id = $1 AND item_id = $2")
            .bind::<Text, _>(order_id)
            .bind::<Text, _>(item_id)
            .execute(conn)
            .await?;
        set_total(conn, order_id, domain::remove_line(order.total, line)).await?;
        find(conn, order_id).await
    })
    .await
}

/// Deletes the order with its lines and past checkouts, unless it is paid or being checked out.
pub async fn delete(conn: &mut AsyncPgConnection, order_id: &str) -> Result<(), StoreError> {
    conn.transaction::<_, StoreError, _>(async |conn| {
        lock(conn, order_id).await?.status.check_deletable()?;
        diesel::sql_query("DELETE FROM orders WHERE id = $1").bind::<Text, _>(order_id).execute(conn).await?;
        Ok(())
    })
    .await
}

/// Locks the order's row until the end of the transaction and reads it and its checkout in flight.
pub(crate) async fn lock(conn: &mut AsyncPgConnection, order_id: &str) -> Result<LockedOrder, StoreError> {
    let row: Option<OrderRow> = diesel::sql_query("SELECT user_id, paid, total FROM orders WHERE id = $1 FOR UPDATE")
        .bind::<Text, _>(order_id)
        .get_result(conn)
        .await
        .optional()?;
    let row = row.ok_or_else(|| StoreError::UnknownOrder(order_id.to_owned()))?;
    // A separate statement on purpose: its snapshot is taken after the lock was granted, so it sees the checkout
    // that the previous holder of the lock may just have committed. Within the locking statement it would not.
    let pending: Option<PendingRow> =
        diesel::sql_query("SELECT saga_id::text AS saga_id FROM checkouts WHERE order_id = $1 AND state = 'pending'")
            .bind::<Text, _>(order_id)
            .get_result(conn)
            .await
            .optional()?;
    let pending_checkout = pending.map(|p| parse_saga_id(&p.saga_id)).transpose()?;
    row.locked(pending_checkout)
}

/// Locks the rows of every order in `order_ids` that exists, in ID order, and reads each with its checkout in
/// flight (see [`lock`] for why that is a second statement; the two are pipelined, which keeps that order on the
/// server). Missing orders are simply absent from the map.
pub(crate) async fn lock_many(
    mut conn: &AsyncPgConnection,
    order_ids: &[String],
) -> Result<HashMap<String, LockedOrder>, StoreError> {
    #[derive(QueryableByName)]
    struct LockedRow {
        #[diesel(sql_type = Text)]
        id: String,
        #[diesel(embed)]
        order: OrderRow,
    }
    #[derive(QueryableByName)]
    struct PendingOfOrder {
        #[diesel(sql_type = Text)]
        order_id: String,
        #[diesel(sql_type = Text)]
        saga_id: String,
    }
    let locking = prepared(
        diesel::sql_query(
            r#"SELECT id, user_id, paid, total FROM orders WHERE id = ANY($1) ORDER BY id COLLATE "C" FOR UPDATE"#,
        )
        .bind::<Array<Text>, _>(order_ids),
    )
    .load::<LockedRow>(&mut conn);
    let pending = prepared(
        diesel::sql_query(
            "SELECT order_id, saga_id::text AS saga_id FROM checkouts WHERE order_id = ANY($1) AND state = 'pending'",
        )
        .bind::<Array<Text>, _>(order_ids),
    )
    .load::<PendingOfOrder>(&mut conn);
    let (rows, pending) = futures::try_join!(locking, pending)?;
    let mut in_flight = HashMap::with_capacity(pending.len());
    for row in pending {
        in_flight.insert(row.order_id, parse_saga_id(&row.saga_id)?);
    }
    rows.into_iter()
        .map(|row| {
            let pending_checkout = in_flight.get(&row.id).copied();
            Ok((row.id, row.order.locked(pending_checkout)?))
        })
        .collect()
}

/// Every line of each order in `order_ids`, per order, sorted by item ID.
pub(crate) async fn lines_of_many(
    mut conn: &AsyncPgConnection,
    order_ids: &[String],
) -> Result<HashMap<String, Vec<LineItem>>, StoreError> {
    #[derive(QueryableByName)]
    struct LineOfOrder {
        #[diesel(sql_type = Text)]
        order_id: String,
        #[diesel(sql_type = Text)]
        item_id: String,
        #[diesel(sql_type = BigInt)]
        quantity: i64,
    }
    let rows: Vec<LineOfOrder> = prepared(
        diesel::sql_query(
            r#"SELECT order_id, item_id, quantity FROM order_items WHERE order_id = ANY($1)
           ORDER BY order_id, item_id COLLATE "C""#,
        )
        .bind::<Array<Text>, _>(order_ids),
    )
    .load(&mut conn)
    .await?;
    let mut lines: HashMap<String, Vec<LineItem>> = HashMap::new();
    for row in rows {
        let line = LineItem { quantity: stored_amount(row.quantity, "a quantity")?, item_id: row.item_id };
        lines.entry(row.order_id).or_default().push(line);
    }
    Ok(lines)
}

async fn line(conn: &mut AsyncPgConnection, order_id: &str, item_id: &str) -> Result<Option<Line>, StoreError> {
    let row: Option<LineRow> =
        diesel::sql_query("SELECT quantity, unit_total FROM order_items WHERE order_id = $1 AND item_id = $2")
            .bind::<Text, _>(order_id)
            .bind::<Text, _>(item_id)
            .get_result(conn)
            .await
            .optional()?;
    row.map(|row| {
        Ok(Line {
            quantity: stored_amount(row.quantity, "a quantity")?,
            unit_total: stored_amount(row.unit_total, "a line total")?,
        })
    })
    .transpose()
}

async fn set_total(conn: &mut AsyncPgConnection, order_id: &str, total: u64) -> Result<(), StoreError> {
    diesel::sql_query("UPDATE orders SET total = $2 WHERE id = $1")
        .bind::<Text, _>(order_id)
        .bind::<BigInt, _>(bigint(total)?)
        .execute(conn)
        .await?;
    Ok(())
}
