//! The order intake reads the checkouts of the orders it begins, and no others, however the table has changed
//! since PostgreSQL planned its statements. From their sixth run on a connection PostgreSQL keeps one plan for
//! them; made while `checkouts` was small and never analysed (a fresh database, a server with autovacuum off), the
//! lookup of the orders' checkouts in flight once scanned the whole index of checkouts due to be sent again, and
//! with it the entry every settled checkout leaves there until a VACUUM: in the benchmark, 480 entries per batch
//! and growing, 87,000 a second.

use std::ops::Range;

use diesel::{sql_types::BigInt, QueryableByName};
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use order_svc::{
    domain::Begun,
    startup::Order,
    store::{checkouts::begin_many, outcomes::settle},
};
use platform::{startup::Service, testing::fresh_database};
use shared_contracts::CheckoutOutcome;

/// How long before a begun checkout's start would be sent again: never, within the test.
const RESEND_AFTER_MS: i64 = 600_000;

fn order_ids(numbers: Range<u32>) -> Vec<String> {
    numbers.map(|n| format!("o{n}")).collect()
}

/// Index entries of `checkouts` read so far, this connection's reads included.
async fn checkout_entries_read(conn: &mut AsyncPgConnection) -> i64 {
    #[derive(QueryableByName)]
    struct Read {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    // A backend hands its counts over when it goes idle, at most once a second unless told to.
    conn.batch_execute("SELECT pg_stat_force_next_flush()").await.expect("the flush");
    let read: Read = diesel::sql_query(
        "SELECT coalesce(sum(idx_tup_read), 0)::bigint AS n FROM pg_stat_user_indexes WHERE relname = 'checkouts'",
    )
    .get_result(conn)
    .await
    .expect("the counts");
    read.n
}

#[tokio::test]
async fn the_intake_reads_only_its_orders_checkouts_after_planning_on_a_small_table() {
    let url = fresh_database("intake_plans").await.expect("a test database");
    let pool = platform::db::prepare(&url, Order::MIGRATIONS, 1).await.expect("the schema");
    let mut conn = pool.get().await.expect("a connection");
    conn.batch_execute(
        "INSERT INTO orders (id, user_id, total) SELECT 'o' || i, 'u', 1 FROM generate_series(1, 2050) AS i;
         INSERT INTO order_items (order_id, item_id, quantity, unit_total)
             SELECT 'o' || i, 'x', 1, 1 FROM generate_series(1, 2050) AS i;",
    )
    .await
    .expect("the orders");
    // Fifty checkouts in flight, then the intake's statements run often enough on the small table to be planned
    // for good (the orders checked out again join their checkouts in flight).
    begin_many(&mut conn, &order_ids(1..51), RESEND_AFTER_MS).await.expect("fifty checkouts");
    for _ in 0..8 {
        begin_many(&mut conn, &order_ids(1..4), RESEND_AFTER_MS).await.expect("a batch joining checkouts");
    }
    // Two thousand checkouts begun and paid since.
    for batch in order_ids(51..2051).chunks(250) {
        let begun = begin_many(&mut conn, batch, RESEND_AFTER_MS).await.expect("a batch of checkouts");
        let outcomes: Vec<_> = begun
            .answers
            .into_iter()
            .zip(batch)
            .map(|(answer, order_id)| match answer {
                Ok(Begun::Started(saga_id)) => (saga_id, CheckoutOutcome::Paid { order_id: order_id.clone() }),
                other => panic!("order {order_id} was not checked out: {other:?}"),
            })
            .collect();
        assert_eq!(settle(&mut conn, &outcomes).await.expect("the outcomes").len(), batch.len());
    }

    let before = checkout_entries_read(&mut conn).await;
    for _ in 0..10 {
        begin_many(&mut conn, &order_ids(1..4), RESEND_AFTER_MS).await.expect("a batch joining checkouts");
    }
    let read = checkout_entries_read(&mut conn).await - before;
    // Three orders' checkouts in flight, ten times; a scan of the due index would read 2,050 a time.
    assert!(read <= 60, "ten batches of three orders read {read} index entries of checkouts");
}
