//! Pool connections look rows up by index whatever the table's statistics say. The services' hot paths read and
//! lock batches of rows with `= ANY($1)`; on a table that has never been analysed (a fresh database, a server with
//! autovacuum off, the minute before autovacuum's first visit) PostgreSQL guesses that each element matches 0.5% of
//! the table, so for a batch of a few hundred keys it scans the whole table. That happened in the benchmark: the
//! order intake read all of `order_items` once per batch.
#![cfg(feature = "testing")]

use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use platform::testing::fresh_database;

#[derive(diesel::QueryableByName)]
struct PlanLine {
    #[diesel(sql_type = diesel::sql_types::Text, column_name = "QUERY PLAN")]
    line: String,
}

/// A pool of one connection to a fresh database with an empty table `lines`, keyed by order and item.
async fn pool_with_lines(purpose: &str) -> platform::db::Pool {
    let url = fresh_database(purpose).await.expect("a test database");
    let pool = platform::db::pool(&url, 1).expect("a pool");
    let mut conn = pool.get().await.expect("a connection");
    conn.batch_execute(
        "CREATE TABLE lines (order_id TEXT NOT NULL, item_id TEXT NOT NULL, PRIMARY KEY (order_id, item_id))",
    )
    .await
    .expect("the table");
    drop(conn);
    pool
}

fn assert_uses_the_index(plan: &[PlanLine]) {
    let plan: Vec<&str> = plan.iter().map(|line| line.line.as_str()).collect();
    assert!(plan.iter().any(|line| line.contains("lines_pkey")), "{plan:#?}");
    assert!(!plan.iter().any(|line| line.contains("Seq Scan")), "{plan:#?}");
}

#[tokio::test]
async fn a_batch_lookup_on_a_table_never_analysed_uses_its_index() {
    let pool = pool_with_lines("plans").await;
    let mut conn = pool.get().await.expect("a connection");
    conn.batch_execute("INSERT INTO lines SELECT (i / 2)::text, i::text FROM generate_series(1, 50000) AS i")
        .await
        .expect("the rows");
    let keys: Vec<String> = (0..300).map(|n| (n * 7).to_string()).collect();
    let plan: Vec<PlanLine> = diesel::sql_query("EXPLAIN SELECT item_id FROM lines WHERE order_id = ANY($1)")
        .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(&keys)
        .load(&mut *conn)
        .await
        .expect("the plan");
    assert_uses_the_index(&plan);
}

/// PostgreSQL plans a prepared statement once for all values after its fifth run, and keeps that plan. Made while
/// a table was tiny (a fresh database), such a plan once kept scanning the table long after it had grown.
#[tokio::test]
async fn a_statement_planned_while_its_table_was_tiny_still_uses_the_index_once_it_has_grown() {
    let pool = pool_with_lines("plans_generic").await;
    let mut conn = pool.get().await.expect("a connection");
    conn.batch_execute(
        "INSERT INTO lines SELECT (i / 2)::text, i::text FROM generate_series(1, 6) AS i;
         ANALYZE lines;
         PREPARE lookup(text[]) AS SELECT item_id FROM lines WHERE order_id = ANY($1);",
    )
    .await
    .expect("the table and the statement");
    for _ in 0..8 {
        conn.batch_execute("EXECUTE lookup('{1,2,3}')").await.expect("a run on the tiny table");
    }
    conn.batch_execute("INSERT INTO lines SELECT (i / 2)::text, i::text FROM generate_series(7, 50000) AS i")
        .await
        .expect("the rows");
    let plan: Vec<PlanLine> =
        diesel::sql_query("EXPLAIN EXECUTE lookup('{1,2,3}')").load(&mut *conn).await.expect("the plan");
    assert_uses_the_index(&plan);
}
