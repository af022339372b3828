//! Cancelling a paid order as far as order-svc alone guarantees it; the test plays the coordinator over RabbitMQ.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use shared_contracts::{CheckoutOutcome, FailureReason};

use platform::testing::eventually;

use crate::helpers::{spawn_app, spawn_app_configured, PATIENCE};

fn cancelled(order_id: &str) -> (StatusCode, serde_json::Value) {
    (StatusCode::OK, json!({ "order_id": order_id, "paid": false, "cancelled": true }))
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_a_paid_order_undoes_its_checkout_and_opens_the_order_again() {
    let app = spawn_app().await;
    let item = app.create_item(4, 10).await;
    let coordinator = app.coordinator().await;
    let (order_id, paid_saga) = app.paid_order(&coordinator, &[(&item, 2)]).await;

    let cancel = tokio::spawn(app.cancel(&order_id));
    assert_eq!(coordinator.next_cancel().await, (paid_saga, order_id.clone()));
    assert_eq!(app.checkout_states(&order_id).await, vec!["cancelling"]);

    // Until the coordinator has undone it, the order is still paid and frozen.
    assert_eq!(app.find(&order_id).await["paid"], json!(true));
    let frozen = (StatusCode::CONFLICT, json!({ "error": "a cancellation of this order is in progress" }));
    assert_eq!(app.post(&format!("/orders/addItem/{order_id}/{item}")).await, frozen);
    assert_eq!(app.delete(&format!("/orders/removeItem/{order_id}/{item}")).await, frozen);
    assert_eq!(app.delete(&format!("/orders/remove/{order_id}")).await, frozen);
    assert_eq!(app.post(&format!("/orders/checkout/{order_id}")).await, frozen);

    coordinator.send_outcome(paid_saga, CheckoutOutcome::Cancelled { order_id: order_id.clone() }).await;
    assert_eq!(cancel.await.expect("the request task finishes"), cancelled(&order_id));
    assert_eq!(app.find(&order_id).await["paid"], json!(false));
    assert_eq!(app.checkout_states(&order_id).await, vec!["cancelled"]);

    // A second cancel answers the same and sends nothing.
    assert_eq!(app.post(&format!("/orders/cancel/{order_id}")).await, cancelled(&order_id));
    let strays = app.messages_before_marker(&coordinator).await;
    assert!(strays.is_empty(), "a cancelled order was cancelled again");

    // The order is open again: it can change, and a new checkout is a new saga.
    assert_eq!(app.post(&format!("/orders/addItem/{order_id}/{item}")).await.0, StatusCode::OK);
    let checkout = tokio::spawn(app.checkout(&order_id));
    let (second_saga, request) = coordinator.next_checkout().await;
    assert_ne!(second_saga, paid_saga);
    assert_eq!(request.total, 12);
    coordinator.send_outcome(second_saga, CheckoutOutcome::Paid { order_id: order_id.clone() }).await;
    assert_eq!(checkout.await.expect("the request task finishes").0, StatusCode::OK);
    assert_eq!(app.checkout_states(&order_id).await, vec!["cancelled", "paid"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_cancels_of_one_order_run_one_cancellation_and_all_see_it_done() {
    let app = spawn_app().await;
    let item = app.create_item(1, 10).await;
    let coordinator = app.coordinator().await;
    let (order_id, paid_saga) = app.paid_order(&coordinator, &[(&item, 1)]).await;

    let cancels: Vec<_> = (0..4).map(|_| tokio::spawn(app.cancel(&order_id))).collect();
    assert_eq!(coordinator.next_cancel().await, (paid_saga, order_id.clone()));
    coordinator.send_outcome(paid_saga, CheckoutOutcome::Cancelled { order_id: order_id.clone() }).await;
    for cancel in cancels {
        assert_eq!(cancel.await.expect("the request task finishes"), cancelled(&order_id));
    }
    let strays = app.messages_before_marker(&coordinator).await;
    assert!(strays.is_empty(), "a second CancelCheckout was sent");
    assert_eq!(app.checkout_states(&order_id).await, vec!["cancelled"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn only_a_paid_order_can_be_cancelled() {
    let app = spawn_app().await;
    let item = app.create_item(50, 10).await;
    let coordinator = app.coordinator().await;

    let unknown = app.post("/orders/cancel/nope").await;
    assert_eq!(unknown, (StatusCode::NOT_FOUND, json!({ "error": "order nope does not exist" })));
    let malformed = app.post(&format!("/orders/cancel/{}", "x".repeat(129))).await;
    assert_eq!(malformed.0, StatusCode::BAD_REQUEST, "{}", malformed.1);

    let order_id = app.order_with(&app.create_user().await, &[(&item, 1)]).await;
    let not_paid = (StatusCode::CONFLICT, json!({ "error": "order is not paid" }));
    assert_eq!(app.post(&format!("/orders/cancel/{order_id}")).await, not_paid);

    // Refused, not waited for, while a checkout runs.
    let checkout = tokio::spawn(app.checkout(&order_id));
    let (saga_id, _) = coordinator.next_checkout().await;
    assert_eq!(
        app.post(&format!("/orders/cancel/{order_id}")).await,
        (
            StatusCode::CONFLICT,
            json!({ "error": "a checkout of this order is in progress; cancel it once it has finished" })
        )
    );
    let reason = FailureReason::OutOfStock { item_id: item.clone() };
    coordinator.send_outcome(saga_id, CheckoutOutcome::Failed { order_id: order_id.clone(), reason }).await;
    assert_eq!(checkout.await.expect("the request task finishes").0, StatusCode::BAD_REQUEST);

    // A failed checkout took nothing, so there is nothing to cancel.
    assert_eq!(app.post(&format!("/orders/cancel/{order_id}")).await, not_paid);
    assert_eq!(app.checkout_states(&order_id).await, vec!["failed"]);
    let strays = app.messages_before_marker(&coordinator).await;
    assert!(strays.is_empty(), "a refused cancel sent a message");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancellation_that_cannot_be_carried_out_answers_500_and_leaves_the_order_paid() {
    let app = spawn_app().await;
    let item = app.create_item(3, 10).await;
    let coordinator = app.coordinator().await;
    let (order_id, paid_saga) = app.paid_order(&coordinator, &[(&item, 1)]).await;

    let cancel = tokio::spawn(app.cancel(&order_id));
    coordinator.next_cancel().await;
    let problem = "the refund would exceed the user's maximum credit".to_owned();
    coordinator.send_outcome(paid_saga, CheckoutOutcome::NeedsAttention { order_id: order_id.clone(), problem }).await;
    let message = format!(
        "checkout {paid_saga} could neither complete nor be fully undone: the refund would exceed the user's maximum \
         credit; an operator must repair it"
    );
    assert_eq!(
        cancel.await.expect("the request task finishes"),
        (StatusCode::INTERNAL_SERVER_ERROR, json!({ "error": message }))
    );
    assert_eq!(app.checkout_states(&order_id).await, vec!["paid"]);
    assert_eq!(app.find(&order_id).await["paid"], json!(true));

    // The order is paid as before, so it can be cancelled again: the same saga is asked once more.
    let again = tokio::spawn(app.cancel(&order_id));
    assert_eq!(coordinator.next_cancel().await, (paid_saga, order_id.clone()));
    coordinator.send_outcome(paid_saga, CheckoutOutcome::Cancelled { order_id: order_id.clone() }).await;
    assert_eq!(again.await.expect("the request task finishes"), cancelled(&order_id));
    assert_eq!(app.find(&order_id).await["paid"], json!(false));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancellation_started_elsewhere_unpays_the_order_when_its_outcome_comes() {
    let app = spawn_app().await;
    let item = app.create_item(3, 10).await;
    let coordinator = app.coordinator().await;
    let (order_id, paid_saga) = app.paid_order(&coordinator, &[(&item, 1)]).await;

    coordinator.send_outcome(paid_saga, CheckoutOutcome::Cancelled { order_id: order_id.clone() }).await;
    eventually("the cancellation to be recorded", PATIENCE, async || {
        (app.find(&order_id).await["paid"] == json!(false)).then_some(())
    })
    .await;
    assert_eq!(app.checkout_states(&order_id).await, vec!["cancelled"]);
    assert_eq!(app.post(&format!("/orders/cancel/{order_id}")).await, cancelled(&order_id));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancellation_without_an_outcome_sends_its_cancel_again_until_one_comes() {
    let app = spawn_app_configured(|config| {
        config.resend_after = Duration::from_millis(300);
        config.resend_max = Duration::from_millis(600);
    })
    .await;
    let item = app.create_item(2, 5).await;
    let (order_id, paid_saga) = app.order_paid_before(&[(&item, 1)]).await;
    let coordinator = app.coordinator().await;

    let cancel = tokio::spawn(app.cancel(&order_id));
    let first = coordinator.next_cancel().await;
    let second = coordinator.next_cancel().await;
    let third = coordinator.next_cancel().await;
    assert_eq!(first, (paid_saga, order_id.clone()));
    assert_eq!((second, third), (first.clone(), first));

    coordinator.send_outcome(paid_saga, CheckoutOutcome::Cancelled { order_id: order_id.clone() }).await;
    assert_eq!(cancel.await.expect("the request task finishes"), cancelled(&order_id));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancellation_without_an_outcome_times_out_with_504_and_the_order_stays_frozen() {
    let app = spawn_app_configured(|config| config.checkout_timeout_ms = 1000).await;
    let item = app.create_item(2, 5).await;
    let (order_id, paid_saga) = app.order_paid_before(&[(&item, 1)]).await;
    let coordinator = app.coordinator().await;

    let timed_out = app.post(&format!("/orders/cancel/{order_id}")).await;
    let message =
        format!("cancellation of order {order_id} is still in progress; GET /orders/find/{order_id} shows its outcome");
    assert_eq!(timed_out, (StatusCode::GATEWAY_TIMEOUT, json!({ "error": message })));
    assert_eq!(app.checkout_states(&order_id).await, vec!["cancelling"]);
    let frozen = (StatusCode::CONFLICT, json!({ "error": "a cancellation of this order is in progress" }));
    assert_eq!(app.post(&format!("/orders/checkout/{order_id}")).await, frozen);

    assert_eq!(coordinator.next_cancel().await, (paid_saga, order_id.clone()));
    coordinator.send_outcome(paid_saga, CheckoutOutcome::Cancelled { order_id: order_id.clone() }).await;
    eventually("the late outcome to be recorded", PATIENCE, async || {
        (app.find(&order_id).await["paid"] == json!(false)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelling_checkout_whose_cancel_never_left_is_sent_after_a_restart() {
    let app = spawn_app_configured(|config| config.resend_after = Duration::from_millis(300)).await;
    let item = app.create_item(2, 5).await;
    let (order_id, paid_saga) = app.order_paid_before(&[(&item, 1)]).await;
    let coordinator = app.coordinator().await;
    // What an order-svc killed between its commit and its publish leaves behind: a cancelling checkout, due.
    app.execute(&format!("UPDATE checkouts SET state = 'cancelling', resend_at = now() WHERE saga_id = '{paid_saga}'"))
        .await;
    assert_eq!(coordinator.next_cancel().await, (paid_saga, order_id.clone()));
    coordinator.send_outcome(paid_saga, CheckoutOutcome::Cancelled { order_id: order_id.clone() }).await;
    eventually("the outcome to be recorded", PATIENCE, async || {
        (app.find(&order_id).await["paid"] == json!(false)).then_some(())
    })
    .await;
    assert_eq!(app.checkout_states(&order_id).await, vec!["cancelled"]);
}
