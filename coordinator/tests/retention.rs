//! Retention against a real database: sagas that ended long ago go with their history, young ones, unfinished
//! ones and those that need attention stay, one run prunes at most its batch, and the coordinator prunes on its
//! own. An ignored test measures the saga tables before and after pruning a large backlog (see
//! docs/operations.md, "Retention").

mod support;

use std::time::Duration;

use coordinator::retention;
use diesel::{
    sql_types::{BigInt, Integer, Text},
    QueryableByName,
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use platform::{
    db::Pool,
    testing::{eventually, fresh_database},
};
use support::{start_with, WAIT};

const DAY: Duration = Duration::from_secs(24 * 3600);

async fn pool() -> Pool {
    let url = fresh_database("retention").await.expect("a test database");
    platform::db::prepare(&url, coordinator::store::MIGRATIONS, 4).await.expect("a migrated database")
}

/// Inserts `count` sagas in `status` last changed `hours_ago`, each with `history` transitions, shaped like
/// the coordinator's own rows.
async fn insert(conn: &mut AsyncPgConnection, count: i64, status: &str, hours_ago: i32, history: i32) {
    diesel::sql_query(
        r#"WITH made AS (
               INSERT INTO sagas (id, order_id, user_id, request, status, state, created_at, updated_at)
               SELECT gen_random_uuid(), 'order-' || n, 'user-' || (n % 1000),
                      jsonb_build_object('order_id', 'order-' || n, 'user_id', 'user-' || (n % 1000),
                          'items', '[{"item_id": "a", "quantity": 2}, {"item_id": "b", "quantity": 1}]'::jsonb,
                          'total', 30),
                      $2, jsonb_build_object('state', $2, 'reserved', true, 'paid', true, 'total', 30),
                      now() - make_interval(hours => $3) - interval '1 minute',
                      now() - make_interval(hours => $3) + make_interval(secs => n / 1000.0)
               FROM generate_series(1, $1) AS n
               RETURNING id, status, state)
           INSERT INTO saga_transitions (saga_id, event, from_status, to_status, state, commands)
           SELECT id, '{"type": "stock_reserved", "reply": {"type": "reserved"}}'::jsonb, 'executing', status, state,
                  '[{"queue": "checkout.payment.commands", "command": {"type": "charge", "amount": 30}}]'::jsonb
           FROM made, generate_series(1, $4)"#,
    )
    .bind::<BigInt, _>(count)
    .bind::<Text, _>(status)
    .bind::<Integer, _>(hours_ago)
    .bind::<Integer, _>(history)
    .execute(conn)
    .await
    .expect("inserting sagas");
}

#[derive(QueryableByName, Debug, PartialEq, Eq)]
struct Count {
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = BigInt)]
    sagas: i64,
    #[diesel(sql_type = BigInt)]
    transitions: i64,
}

/// Per status: how many sagas are left, and how many history rows they have.
async fn left(conn: &mut AsyncPgConnection) -> Vec<(String, i64, i64)> {
    let counts: Vec<Count> = diesel::sql_query(
        "SELECT s.status, count(DISTINCT s.id) AS sagas, count(t.id) AS transitions
         FROM sagas s LEFT JOIN saga_transitions t ON t.saga_id = s.id GROUP BY s.status ORDER BY s.status",
    )
    .load(conn)
    .await
    .unwrap();
    counts.into_iter().map(|c| (c.status, c.sagas, c.transitions)).collect()
}

async fn orphaned_history(conn: &mut AsyncPgConnection) -> i64 {
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let n: N = diesel::sql_query(
        "SELECT count(*) AS n FROM saga_transitions t WHERE NOT EXISTS (SELECT 1 FROM sagas s WHERE s.id = t.saga_id)",
    )
    .get_result(conn)
    .await
    .unwrap();
    n.n
}

#[tokio::test]
async fn sagas_that_ended_long_ago_go_and_the_others_stay() {
    let pool = pool().await;
    let mut conn = pool.get().await.unwrap();
    for status in ["completed", "failed", "cancelled", "needs_attention", "executing", "compensating", "cancelling"] {
        insert(&mut conn, 2, status, 48, 3).await;
    }
    insert(&mut conn, 2, "completed", 1, 3).await;

    assert_eq!(retention::prune(&pool, DAY, 1000).await.unwrap(), 6);

    let expected: Vec<(String, i64, i64)> = [
        ("cancelling", 2, 6),
        ("compensating", 2, 6),
        ("completed", 2, 6),
        ("executing", 2, 6),
        ("needs_attention", 2, 6),
    ]
    .map(|(status, sagas, transitions)| (status.to_owned(), sagas, transitions))
    .into();
    assert_eq!(left(&mut conn).await, expected);
    assert_eq!(orphaned_history(&mut conn).await, 0, "the history of pruned sagas goes with them");
    assert_eq!(retention::prune(&pool, DAY, 1000).await.unwrap(), 0);
}

#[tokio::test]
async fn one_run_prunes_at_most_its_batch_oldest_first() {
    let pool = pool().await;
    let mut conn = pool.get().await.unwrap();
    insert(&mut conn, 15, "completed", 72, 2).await;
    insert(&mut conn, 10, "failed", 48, 2).await;

    assert_eq!(retention::prune(&pool, DAY, 10).await.unwrap(), 10);
    assert_eq!(left(&mut conn).await, [("completed".to_owned(), 5, 10), ("failed".to_owned(), 10, 20)]);
    assert_eq!(retention::prune(&pool, DAY, 10).await.unwrap(), 10);
    assert_eq!(left(&mut conn).await, [("failed".to_owned(), 5, 10)]);
    assert_eq!(retention::prune(&pool, DAY, 10).await.unwrap(), 5);
    assert_eq!(retention::prune(&pool, DAY, 10).await.unwrap(), 0);
    assert_eq!(orphaned_history(&mut conn).await, 0);
}

#[tokio::test]
async fn the_coordinator_prunes_on_its_own_and_counts_it() {
    let h = start_with(|config| {
        config.saga_retention = Some(DAY);
        config.retention_interval = Duration::from_millis(50);
        config.retention_batch = 2;
    })
    .await;
    let pool = platform::db::prepare(&h.database_url, coordinator::store::MIGRATIONS, 2).await.unwrap();
    let mut conn = pool.get().await.unwrap();
    insert(&mut conn, 5, "completed", 48, 2).await;
    insert(&mut conn, 1, "needs_attention", 48, 2).await;

    eventually("the old sagas to be pruned", WAIT, async || {
        (left(&mut conn).await == [("needs_attention".to_owned(), 1, 2)]).then_some(())
    })
    .await;
    let metrics = h.http.get(format!("{}/metrics", h.admin)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|line| line == "coordinator_saga_pruned_total 5"), "{metrics}");
}

#[derive(QueryableByName, Debug)]
struct Sizes {
    #[diesel(sql_type = BigInt)]
    sagas: i64,
    #[diesel(sql_type = BigInt)]
    transitions: i64,
    #[diesel(sql_type = BigInt)]
    saga_rows: i64,
    #[diesel(sql_type = BigInt)]
    transition_rows: i64,
}

async fn sizes(conn: &mut AsyncPgConnection, when: &str) {
    let s: Sizes = diesel::sql_query(
        "SELECT pg_total_relation_size('sagas') AS sagas, pg_total_relation_size('saga_transitions') AS transitions,
                (SELECT count(*) FROM sagas) AS saga_rows, (SELECT count(*) FROM saga_transitions) AS transition_rows",
    )
    .get_result(conn)
    .await
    .unwrap();
    let mib = |bytes: i64| bytes as f64 / (1024.0 * 1024.0);
    println!(
        "{when:<28} sagas {:>8} rows {:>8.1} MiB | saga_transitions {:>8} rows {:>8.1} MiB",
        s.saga_rows,
        mib(s.sagas),
        s.transition_rows,
        mib(s.transitions)
    );
}

/// `RETENTION_MEASURE_SAGAS=100000 cargo nextest run -p coordinator -E 'test(growth)' --run-ignored only
/// --no-capture`: inserts that many ended sagas with 5 history rows each (and a tenth as many young ones),
/// prunes to the end in runs of 1000, and prints the tables' sizes before, after, and after VACUUM.
#[tokio::test]
#[ignore = "a measurement, not a check; run it by hand"]
async fn growth_of_the_saga_tables_before_and_after_pruning() {
    let n: i64 = std::env::var("RETENTION_MEASURE_SAGAS").ok().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let pool = pool().await;
    let mut conn = pool.get().await.unwrap();
    sizes(&mut conn, "empty").await;
    insert(&mut conn, n, "completed", 200, 5).await;
    insert(&mut conn, n / 10, "completed", 1, 5).await;
    diesel::sql_query("ANALYZE sagas, saga_transitions").execute(&mut conn).await.unwrap();
    sizes(&mut conn, "before pruning").await;
    let started = std::time::Instant::now();
    let mut runs = 0;
    while retention::prune(&pool, Duration::from_secs(168 * 3600), 1000).await.unwrap() > 0 {
        runs += 1;
    }
    println!("pruned in {runs} runs of at most 1000, {:.1} s", started.elapsed().as_secs_f64());
    sizes(&mut conn, "after pruning").await;
    diesel::sql_query("VACUUM sagas, saga_transitions").execute(&mut conn).await.unwrap();
    sizes(&mut conn, "after VACUUM").await;
    diesel::sql_query("VACUUM FULL sagas, saga_transitions").execute(&mut conn).await.unwrap();
    sizes(&mut conn, "after VACUUM FULL").await;
}
