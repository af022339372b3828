//! The gauges operators alert on, as `/metrics` shows them: unfinished, stuck and needs-attention sagas, and the
//! depth of the dead-letter queue.

mod support;

use std::time::Duration;

use diesel::sql_types::{Integer, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use shared_contracts::queues;
use support::{start_with, WAIT};

/// Inserts a saga in `status` last changed `secs_ago` seconds ago.
async fn insert(conn: &mut AsyncPgConnection, status: &str, secs_ago: i32) {
    diesel::sql_query(
        "INSERT INTO sagas (id, order_id, user_id, request, status, state, updated_at)
         VALUES (gen_random_uuid(), 'o', 'u', '{}', $1, '{}', now() - make_interval(secs => $2))",
    )
    .bind::<Text, _>(status)
    .bind::<Integer, _>(secs_ago)
    .execute(conn)
    .await
    .unwrap();
}

/// The value of the unlabelled metric `name` in a Prometheus text exposition.
fn value(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn the_gauges_count_unfinished_stuck_and_needs_attention_sagas_and_dead_letters() {
    let h = start_with(|config| {
        config.stuck_after = Duration::from_secs(600);
        config.gauge_interval = Duration::from_millis(50);
    })
    .await;
    let mut conn = AsyncPgConnection::establish(&h.database_url).await.unwrap();
    insert(&mut conn, "executing", 3600).await;
    insert(&mut conn, "compensating", 700).await;
    insert(&mut conn, "cancelling", 10).await;
    insert(&mut conn, "executing", 0).await;
    insert(&mut conn, "needs_attention", 3600).await;
    insert(&mut conn, "completed", 3600).await;
    insert(&mut conn, "failed", 3600).await;
    for garbage in ["{}", "[]"] {
        h.broker.publish(queues::COORDINATOR, garbage.as_bytes().to_vec()).await.unwrap();
    }

    let expected = [
        ("coordinator_saga_unfinished", 4.0),
        ("coordinator_saga_stuck", 2.0),
        ("coordinator_saga_needs_attention", 1.0),
        ("coordinator_dead_letter_depth", 2.0),
    ];
    let mut last = String::new();
    let seen = platform::testing::eventually_ok("the gauges to show the sagas and dead letters", WAIT, async || {
        last = h.http.get(format!("{}/metrics", h.admin)).send().await?.text().await?;
        let now = expected.map(|(name, _)| (name, value(&last, name).unwrap_or(-1.0)));
        Ok((now == expected).then_some(()))
    })
    .await;
    assert!(seen.is_ok(), "{seen:?}\n{last}");
}
