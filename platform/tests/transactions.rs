//! `platform::db::transaction`: its BEGIN travels with the body's first statements, yet every statement of the
//! body runs in the one transaction, which commits on `Ok`, rolls back on `Err`, and never reaches another user
//! of the pool half done.
#![cfg(feature = "testing")]

use std::time::Duration;

use diesel::{sql_types::Text, QueryableByName};
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use platform::{
    db::{pool, transaction, Pool},
    testing::fresh_database,
};

#[derive(QueryableByName)]
struct One {
    #[diesel(sql_type = Text)]
    v: String,
}

async fn one(mut conn: &AsyncPgConnection, sql: &str) -> Result<String, diesel::result::Error> {
    Ok(diesel::sql_query(sql).get_result::<One>(&mut conn).await?.v)
}

async fn fresh_pool(name: &str) -> Pool {
    let url = fresh_database(name).await.expect("a test database");
    let pool = pool(&url, 1).expect("a pool");
    let mut conn = pool.get().await.expect("a connection");
    conn.batch_execute("CREATE TABLE t (v TEXT PRIMARY KEY)").await.expect("the table");
    pool
}

async fn rows(pool: &Pool) -> String {
    let conn = pool.get().await.expect("a connection");
    one(&conn, "SELECT coalesce(string_agg(v, ',' ORDER BY v), '') AS v FROM t").await.expect("the rows")
}

#[tokio::test]
async fn the_first_statements_run_inside_the_transaction_and_it_commits_on_ok() {
    let pool = fresh_pool("tx_commit").await;
    let mut conn = pool.get().await.expect("a connection");
    let same = transaction(&mut conn, async |mut conn: &AsyncPgConnection| {
        // Sent at the first poll, as BEGIN is: only the order of the two decides where the insert runs.
        conn.batch_execute("INSERT INTO t VALUES ('a')").await?;
        one(
            conn,
            "SELECT ((SELECT xmin::text::bigint FROM t WHERE v = 'a')
                     = pg_current_xact_id()::text::bigint % 4294967296)::text AS v",
        )
        .await
    })
    .await
    .expect("the transaction");
    assert_eq!(same, "true", "the first statement ran in the transaction of the second");
    drop(conn);
    assert_eq!(rows(&pool).await, "a");
}

#[tokio::test]
async fn an_error_in_the_body_rolls_back_and_the_connection_serves_again() {
    let pool = fresh_pool("tx_rollback").await;
    let mut conn = pool.get().await.expect("a connection");
    let failed = transaction(&mut conn, async |mut conn: &AsyncPgConnection| {
        conn.batch_execute("INSERT INTO t VALUES ('a')").await?;
        conn.batch_execute("INSERT INTO t VALUES ('a')").await?;
        Ok::<_, diesel::result::Error>(())
    })
    .await;
    assert!(failed.is_err(), "the second insert breaks the key");
    let refused = transaction(&mut conn, async |mut conn: &AsyncPgConnection| {
        conn.batch_execute("INSERT INTO t VALUES ('b')").await?;
        Err::<(), _>(diesel::result::Error::RollbackTransaction)
    })
    .await;
    assert!(refused.is_err());
    transaction(&mut conn, async |mut conn: &AsyncPgConnection| {
        conn.batch_execute("INSERT INTO t VALUES ('c')").await?;
        Ok::<_, diesel::result::Error>(())
    })
    .await
    .expect("a transaction after the failed ones");
    drop(conn);
    assert_eq!(rows(&pool).await, "c");
}

#[tokio::test]
async fn a_transaction_dropped_half_done_leaves_nothing_and_its_connection_is_not_lent_again() {
    let pool = fresh_pool("tx_dropped").await;
    let mut conn = pool.get().await.expect("a connection");
    let pid = one(&conn, "SELECT pg_backend_pid()::text AS v").await.expect("the backend");
    let half_done = transaction(&mut conn, async |mut conn: &AsyncPgConnection| {
        conn.batch_execute("INSERT INTO t VALUES ('a')").await?;
        std::future::pending::<()>().await;
        Ok::<_, diesel::result::Error>(())
    });
    assert!(tokio::time::timeout(Duration::from_millis(300), half_done).await.is_err());
    drop(conn);
    let mut conn = pool.get().await.expect("a connection");
    let now = one(&conn, "SELECT pg_backend_pid()::text AS v").await.expect("the backend");
    assert_ne!(now, pid, "the connection left in the transaction was discarded");
    assert_eq!(one(&conn, "SELECT count(*)::text AS v FROM t").await.expect("the rows"), "0");
    // The key the half-done transaction wrote is free: its backend rolled back when its connection was closed.
    conn.batch_execute("SET lock_timeout = '10s'; INSERT INTO t VALUES ('a')").await.expect("the key");
    drop(conn);
    assert_eq!(rows(&pool).await, "a");
}
