//! The migrations against a database that already holds data: what may be refunded to each user starts out as
//! what their charged payments hold.

use diesel::{sql_types::BigInt, Connection, QueryableByName, RunQueryDsl};
use diesel_async::{async_connection_wrapper::AsyncConnectionWrapper, AsyncPgConnection};
use diesel_migrations::MigrationHarness;
use payment_svc::store::MIGRATIONS;
use platform::testing::fresh_database;

#[derive(QueryableByName)]
struct Refundable {
    #[diesel(sql_type = BigInt)]
    refundable: i64,
}

/// The payments of a database from before the count was kept: user `a` has a charged checkout payment and a
/// charged payment for an order, `b` one charged checkout payment, and the payments that hold nothing (refunded,
/// rejected, a tombstone) count for no one.
const RECORDED_BEFORE: &str = r#"
    INSERT INTO users (id, credit) VALUES ('a', 10), ('b', 5), ('c', 7);
    INSERT INTO payments (key, user_id, order_id, amount, state, reason) VALUES
        ('saga:00000000-0000-0000-0000-000000000001', 'a', 'o1', 20, 'charged', NULL),
        ('http:a:o2', 'a', 'o2', 3, 'charged', NULL),
        ('saga:00000000-0000-0000-0000-000000000002', 'b', 'o3', 4, 'charged', NULL),
        ('saga:00000000-0000-0000-0000-000000000003', 'c', 'o4', 9, 'refunded', NULL),
        ('http:c:o5', 'c', 'o5', 9, 'refunded', NULL),
        ('saga:00000000-0000-0000-0000-000000000004', 'c', 'o6', 0, 'rejected', '{"kind": "cancelled"}'),
        ('saga:00000000-0000-0000-0000-000000000005', '', '', 0, 'cancelled', NULL);
"#;

#[tokio::test]
async fn what_may_be_refunded_is_backfilled_from_the_charged_payments() {
    let url = fresh_database("payment").await.expect("creating a test database");

    let refundable = tokio::task::spawn_blocking(move || {
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::establish(&url).expect("connecting");
        conn.run_pending_migrations(MIGRATIONS).expect("migrating");
        conn.revert_last_migration(MIGRATIONS).expect("going back to before the count");
        diesel::connection::SimpleConnection::batch_execute(&mut conn, RECORDED_BEFORE).expect("recording");
        conn.run_pending_migrations(MIGRATIONS).expect("migrating again");
        diesel::sql_query("SELECT refundable FROM users ORDER BY id")
            .load::<Refundable>(&mut conn)
            .expect("reading the counts")
            .into_iter()
            .map(|row| row.refundable)
            .collect::<Vec<_>>()
    })
    .await
    .expect("the migration task");

    assert_eq!(refundable, [23, 4, 0]);
}
