//! A graceful shutdown of order-svc: a checkout in flight still gets its saga's outcome, because the outcome
//! consumer runs until the requests are answered, and only then stops.

use std::time::Duration;

use platform::{amqp::Broker, testing::eventually};
use reqwest::StatusCode;
use serde_json::json;
use shared_contracts::{queues, CheckoutOutcome, SagaId};

use crate::helpers::{spawn_app, PATIENCE};

#[tokio::test(flavor = "multi_thread")]
async fn a_checkout_in_flight_at_shutdown_is_answered_with_its_outcome() {
    let app = spawn_app().await;
    let item = app.create_item(2, 5).await;
    let order_id = app.order_with(&app.create_user().await, &[(&item, 1)]).await;
    let coordinator = app.coordinator().await;
    let checkout = tokio::spawn(app.checkout(&order_id));
    let (saga_id, _) = coordinator.next_checkout().await;

    app.shut_down();
    eventually("order-svc to refuse new connections", PATIENCE, async || app.refuses_connections().await.then_some(()))
        .await;
    coordinator.send_outcome(saga_id, CheckoutOutcome::Paid { order_id: order_id.clone() }).await;
    let answer = checkout.await.expect("the request task finishes");
    assert_eq!(answer, (StatusCode::OK, json!({ "order_id": order_id, "paid": true })));
    let amqp_url = app.amqp_url.clone();
    app.stopped(Duration::from_secs(10)).await;

    // Stopped, the outcome consumer leaves what comes later to the other replicas.
    coordinator.send_outcome(SagaId::new(), CheckoutOutcome::Paid { order_id }).await;
    let broker = Broker::new(&amqp_url, "test", &[queues::ORDER_OUTCOMES]).expect("a valid AMQP URL");
    let waiting = eventually("the later outcome on its queue", PATIENCE, async || {
        broker.queue_depth(queues::ORDER_OUTCOMES).await.ok().filter(|depth| *depth > 0)
    })
    .await;
    assert_eq!(waiting, 1);
}
