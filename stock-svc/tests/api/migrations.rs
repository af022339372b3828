//! The migrations against a database that already holds data: the count of reserved stock starts out as what the
//! recorded reservations hold.

use diesel::{sql_types::BigInt, Connection, QueryableByName, RunQueryDsl};
use diesel_async::{async_connection_wrapper::AsyncConnectionWrapper, AsyncPgConnection};
use diesel_migrations::MigrationHarness;
use platform::testing::fresh_database;
use stock_svc::store::MIGRATIONS;

#[derive(QueryableByName)]
struct Reserved {
    #[diesel(sql_type = BigInt)]
    reserved: i64,
}

/// The reservations of a database from before the count was kept: two sagas still holding item `a`, one holding
/// `b`, and records that hold nothing (released, rejected, cancelled).
const RECORDED_BEFORE: &str = r#"
    INSERT INTO items (item_id, stock, price) VALUES ('a', 10, 1), ('b', 5, 1), ('c', 7, 1);
    INSERT INTO saga_steps (saga_id, state, items, reason) VALUES
        (gen_random_uuid(), 'reserved', '[{"item_id": "a", "quantity": 2}, {"item_id": "b", "quantity": 1}]', NULL),
        (gen_random_uuid(), 'reserved', '[{"item_id": "a", "quantity": 3}]', NULL),
        (gen_random_uuid(), 'released', '[{"item_id": "a", "quantity": 4}, {"item_id": "c", "quantity": 4}]', NULL),
        (gen_random_uuid(), 'rejected', '[{"item_id": "c", "quantity": 9}]', '{"kind": "out_of_stock", "item_id": "c"}'),
        (gen_random_uuid(), 'cancelled', '[]', NULL);
"#;

#[tokio::test]
async fn the_reserved_count_is_backfilled_from_the_recorded_reservations() {
    let url = fresh_database("stock").await.expect("creating a test database");

    let reserved = tokio::task::spawn_blocking(move || {
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::establish(&url).expect("connecting");
        conn.run_pending_migrations(MIGRATIONS).expect("migrating");
        conn.revert_last_migration(MIGRATIONS).expect("going back to before the count");
        diesel::connection::SimpleConnection::batch_execute(&mut conn, RECORDED_BEFORE).expect("recording");
        conn.run_pending_migrations(MIGRATIONS).expect("migrating again");
        diesel::sql_query("SELECT reserved FROM items ORDER BY item_id")
            .load::<Reserved>(&mut conn)
            .expect("reading the counts")
            .into_iter()
            .map(|row| row.reserved)
            .collect::<Vec<_>>()
    })
    .await
    .expect("the migration task");

    assert_eq!(reserved, [5, 1, 0]);
}
