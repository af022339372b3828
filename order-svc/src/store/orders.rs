//! Orders and their lines: creation, `batch_init`, lookup, adding and removing items, deletion; and the locking
//! of an order's row, with reading its checkout in flight, that every change of an order starts with.

use std::collections::HashMap;

use diesel::{
    sql_types::{Array, BigInt, Bool, Text},
    OptionalExtension, QueryableByName,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use platform::db::prepared;
use shared_contracts::{LineItem, SagaId};

use super::{bigint, stored_amount, OrderView, StoreError};
use crate::domain::{BatchInit, CheckoutPhase, InFlight, Line, OrderStatus};

/// An order's row, locked for the rest of the transaction, and whether a checkout or cancellation of it is in
/// flight.
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
    /// The locked order this row is, with its checkout in flight.
    fn locked(self, in_flight: Option<InFlight>) -> Result<LockedOrder, StoreError> {
        Ok(LockedOrder {
            user_id: self.user_id,
            total: stored_amount(self.total, "an order total")?,
            status: OrderStatus { paid: self.paid, in_flight },
        })
    }
}

/// The checkout of an order in flight (`pending` or `cancelling`; the schema allows one per order), as read.
#[derive(QueryableByName)]
struct InFlightRow {
    #[diesel(sql_type = Text)]
    order_id: String,
    #[diesel(sql_type = Text)]
    saga_id: String,
    #[diesel(sql_type = Text)]
    state: String,
}

/// The saga in flight that the checkout of saga `saga_id` with `state`, both as stored, is; corrupt when the state
/// is not one of a checkout in flight.
pub(crate) fn parse_in_flight(saga_id: &str, state: &str) -> Result<InFlight, StoreError> {
    let saga_id = parse_saga_id(saga_id)?;
    CheckoutPhase::parse(state)
        .and_then(|phase| phase.in_flight(saga_id))
        .ok_or_else(|| StoreError::Corrupt(format!("checkout {saga_id} in flight is in state {state:?}")))
}

/// The checkouts in flight of the orders bound as `$1` (an array), as [`InFlightRow`]s.
const IN_FLIGHT_OF_ORDERS: &str = "SELECT order_id, saga_id::text AS saga_id, state FROM checkouts
     WHERE order_id = ANY($1) AND state IN ('pending', 'cancelling')";

/// A saga ID stored as text, read back.
pub(crate) fn parse_saga_id(text: &str) -> Result<SagaId, StoreError> {
    text.parse().map_err(|e| StoreError::Corrupt(format!("saga ID {text}: {e}")))
}

/// The one number a query selects, as `n`.
#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
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

/// How long a `batch_init` waits for the checkouts of its orders to end before it locks them and counts for the
/// last time: sagas end within seconds, so a `batch_init` right after a burst of checkouts succeeds.
const BATCH_INIT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// How many checkouts of orders `"0"` to `"orders - 1"` are pending or cancelling.
async fn unfinished_checkouts(conn: &mut AsyncPgConnection, orders: i64) -> Result<i64, StoreError> {
    let unfinished: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM checkouts WHERE state IN ('pending', 'cancelling')
         AND order_id IN (SELECT i::text FROM generate_series(0, $1 - 1) AS i)",
    )
    .bind::<BigInt, _>(orders)
    .get_result(conn)
    .await?;
    Ok(unfinished.n)
}

/// Replaces orders `"0"` to `"n - 1"` (with their lines and checkouts) by fresh ones as `batch` describes, in
/// set-based statements so that a hundred thousand orders take seconds. Waits up to [`BATCH_INIT_PATIENCE`] for
/// checkouts of those orders in flight to end, then is refused, changing nothing, while any still is: its saga
/// is taking or giving back stock and credit for the order as it is, and its outcome could no longer be
/// recorded. The existing orders are locked first, in the order [`lock_many`] uses, so that no checkout of them
/// can begin between the last count and the replacement.
pub async fn batch_init(conn: &mut AsyncPgConnection, batch: &BatchInit) -> Result<(), StoreError> {
    let orders = bigint(batch.orders)?;
    let items = bigint(batch.items)?;
    let users = bigint(batch.users)?;
    let price = bigint(batch.item_price)?;
    let total = bigint(batch.order_total())?;
    let patience = tokio::time::Instant::now() + BATCH_INIT_PATIENCE;
    while unfinished_checkouts(conn, orders).await? > 0 && tokio::time::Instant::now() < patience {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    conn.transaction::<_, StoreError, _>(async |conn| {
        diesel::sql_query(
            r#"SELECT id FROM orders WHERE id IN (SELECT i::text FROM generate_series(0, $1 - 1) AS i)
               ORDER BY id COLLATE "C" FOR UPDATE"#,
        )
        .bind::<BigInt, _>(orders)
        .execute(conn)
        .await?;
        // A statement of its own, whose snapshot sees what the previous holders of the locks committed.
        let unfinished = unfinished_checkouts(conn, orders).await?;
        if unfinished > 0 {
            return Err(StoreError::UnfinishedCheckouts(stored_amount(unfinished, "a count")?));
        }
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

/// Adds `quantity` units of `item_id` at `price` each to the order, if [`OrderStatus::addition`] allows it;
/// returns the new state.
pub async fn add_item(
    conn: &mut AsyncPgConnection,
    order_id: &str,
    item_id: &str,
    quantity: u64,
    price: u64,
) -> Result<OrderView, StoreError> {
    conn.transaction::<_, StoreError, _>(async |conn| {
        let order = lock(conn, order_id).await?;
        let line = line(conn, order_id, item_id).await?.unwrap_or_default();
        let added = order.status.addition(order.total, line, quantity, price)?;
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

/// Removes the line of `item_id` from the order, if [`OrderStatus::removal`] allows it, taking what the line cost
/// off the total; returns the new state.
pub async fn remove_item(conn: &mut AsyncPgConnection, order_id: &str, item_id: &str) -> Result<OrderView, StoreError> {
    conn.transaction::<_, StoreError, _>(async |conn| {
        let order = lock(conn, order_id).await?;
        let line = line(conn, order_id, item_id)
            .await?
            .ok_or_else(|| StoreError::ItemNotInOrder { order_id: order_id.to_owned(), item_id: item_id.to_owned() })?;
        let total = order.status.removal(order.total, line)?;
        diesel::sql_query("DELETE FROM order_items WHERE order_id = $1 AND item_id = $2")
            .bind::<Text, _>(order_id)
            .bind::<Text, _>(item_id)
            .execute(conn)
            .await?;
        set_total(conn, order_id, total).await?;
        find(conn, order_id).await
    })
    .await
}

/// Deletes the order with its lines and past checkouts, unless it is paid, being checked out or being cancelled.
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
    lock_many(conn, &[order_id.to_owned()])
        .await?
        .remove(order_id)
        .ok_or_else(|| StoreError::UnknownOrder(order_id.to_owned()))
}

/// Locks the rows of every order in `order_ids` that exists, in ID order, and reads each with its checkout in
/// flight. Missing orders are simply absent from the map. The checkouts are read by a second statement on
/// purpose: its snapshot is taken after the locks were granted, so it sees the checkout that the previous holder
/// of a lock may just have committed; within the locking statement it would not. The two are pipelined, which
/// keeps that order on the server and costs one round trip.
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
    let locking = prepared(
        diesel::sql_query(
            r#"SELECT id, user_id, paid, total FROM orders WHERE id = ANY($1) ORDER BY id COLLATE "C" FOR UPDATE"#,
        )
        .bind::<Array<Text>, _>(order_ids),
    )
    .load::<LockedRow>(&mut conn);
    let in_flight = prepared(diesel::sql_query(IN_FLIGHT_OF_ORDERS).bind::<Array<Text>, _>(order_ids))
        .load::<InFlightRow>(&mut conn);
    let (rows, in_flight) = futures::try_join!(locking, in_flight)?;
    let mut in_flight_of = HashMap::with_capacity(in_flight.len());
    for row in &in_flight {
        in_flight_of.insert(row.order_id.as_str(), parse_in_flight(&row.saga_id, &row.state)?);
    }
    rows.into_iter()
        .map(|row| {
            let in_flight = in_flight_of.get(row.id.as_str()).copied();
            Ok((row.id, row.order.locked(in_flight)?))
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
