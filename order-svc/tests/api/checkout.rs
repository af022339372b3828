//! Checkout as far as order-svc alone guarantees it; the test plays the coordinator over RabbitMQ.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use shared_contracts::{CheckoutOutcome, CheckoutRequest, FailureReason, LineItem};

use platform::testing::eventually;

use crate::helpers::{spawn_app, spawn_app_configured, spawn_app_with_checkout_timeout, PATIENCE};

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_or_unknown_order_cannot_be_checked_out() {
    let app = spawn_app().await;
    let order_id = app.create_order(&app.create_user().await).await;

    let empty = app.post(&format!("/orders/checkout/{order_id}")).await;
    assert_eq!(empty, (StatusCode::BAD_REQUEST, json!({ "error": "order has no items" })));
    let unknown = app.post("/orders/checkout/nope").await;
    assert_eq!(unknown, (StatusCode::NOT_FOUND, json!({ "error": "order nope does not exist" })));

    assert_eq!(app.count("SELECT count(*) AS n FROM checkouts").await, 0);
    let coordinator = app.coordinator().await;
    let strays = app.messages_before_marker(&coordinator).await;
    assert!(strays.is_empty(), "{strays:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_checkouts_of_one_order_run_one_saga_and_both_see_it_paid() {
    let app = spawn_app().await;
    let a = app.create_item(3, 5).await;
    let b = app.create_item(4, 5).await;
    let buyer = app.create_user().await;
    let order_id = app.order_with(&buyer, &[(&b, 1), (&a, 2), (&b, 1)]).await;
    let coordinator = app.coordinator().await;

    let first = tokio::spawn(app.checkout(&order_id));
    let second = tokio::spawn(app.checkout(&order_id));
    let (saga_id, request) = coordinator.next_checkout().await;
    let mut items = vec![LineItem { item_id: a.clone(), quantity: 2 }, LineItem { item_id: b.clone(), quantity: 2 }];
    items.sort_by(|x, y| x.item_id.cmp(&y.item_id));
    assert_eq!(request, CheckoutRequest { order_id: order_id.clone(), user_id: buyer, items, total: 14 });

    coordinator.send_outcome(saga_id, CheckoutOutcome::Paid { order_id: order_id.clone() }).await;
    let paid = (StatusCode::OK, json!({ "order_id": order_id, "paid": true }));
    assert_eq!(first.await.expect("the request task finishes"), paid);
    assert_eq!(second.await.expect("the request task finishes"), paid);

    assert_eq!(app.find(&order_id).await["paid"], json!(true));
    assert_eq!(app.checkout_states(&order_id).await, vec!["paid"]);
    let strays = app.messages_before_marker(&coordinator).await;
    assert!(strays.is_empty(), "a second StartCheckout was sent");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paid_order_is_final_and_checking_it_out_again_sends_nothing() {
    let app = spawn_app().await;
    let item = app.create_item(2, 5).await;
    let order_id = app.order_with(&app.create_user().await, &[(&item, 1)]).await;
    let coordinator = app.coordinator().await;
    let checkout = tokio::spawn(app.checkout(&order_id));
    let (saga_id, _) = coordinator.next_checkout().await;
    coordinator.send_outcome(saga_id, CheckoutOutcome::Paid { order_id: order_id.clone() }).await;
    assert_eq!(checkout.await.expect("the request task finishes").0, StatusCode::OK);

    let again = app.post(&format!("/orders/checkout/{order_id}")).await;
    assert_eq!(again, (StatusCode::OK, json!({ "order_id": order_id, "paid": true })));
    let strays = app.messages_before_marker(&coordinator).await;
    assert!(strays.is_empty(), "checking out a paid order sent a message");
    assert_eq!(app.checkout_states(&order_id).await, vec!["paid"]);

    let paid = json!({ "error": "order is already paid" });
    assert_eq!(app.post(&format!("/orders/addItem/{order_id}/{item}")).await, (StatusCode::BAD_REQUEST, paid.clone()));
    assert_eq!(
        app.delete(&format!("/orders/removeItem/{order_id}/{item}")).await,
        (StatusCode::BAD_REQUEST, paid.clone())
    );
    assert_eq!(app.delete(&format!("/orders/remove/{order_id}")).await, (StatusCode::BAD_REQUEST, paid));
    let order = app.find(&order_id).await;
    assert_eq!((&order["paid"], &order["total_cost"], &order["items"]), (&json!(true), &json!(2), &json!([[item, 1]])));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_saga_answers_400_with_its_reason_and_leaves_the_order_open() {
    let app = spawn_app().await;
    let item = app.create_item(50, 5).await;
    let poor = app.create_user().await;
    let order_id = app.order_with(&poor, &[(&item, 1)]).await;
    let coordinator = app.coordinator().await;

    let checkout = tokio::spawn(app.checkout(&order_id));
    let (saga_id, _) = coordinator.next_checkout().await;
    let reason = FailureReason::InsufficientCredit { user_id: poor.clone() };
    coordinator.send_outcome(saga_id, CheckoutOutcome::Failed { order_id: order_id.clone(), reason }).await;

    assert_eq!(
        checkout.await.expect("the request task finishes"),
        (
            StatusCode::BAD_REQUEST,
            json!({
                "error": format!("user {poor} does not have enough credit"),
                "reason": { "kind": "insufficient_credit", "user_id": poor },
            })
        )
    );
    assert_eq!(app.find(&order_id).await["paid"], json!(false));
    assert_eq!(app.checkout_states(&order_id).await, vec!["failed"]);
    // The order is open again: it can change, and a new checkout starts a new saga.
    assert_eq!(app.post(&format!("/orders/addItem/{order_id}/{item}")).await.0, StatusCode::OK);
    let retry = tokio::spawn(app.checkout(&order_id));
    let (second_saga, request) = coordinator.next_checkout().await;
    assert_ne!(second_saga, saga_id);
    assert_eq!(request.total, 100);
    coordinator.send_outcome(second_saga, CheckoutOutcome::Paid { order_id: order_id.clone() }).await;
    assert_eq!(retry.await.expect("the request task finishes").0, StatusCode::OK);
    assert_eq!(app.checkout_states(&order_id).await, vec!["failed", "paid"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_checkout_without_outcome_times_out_with_504_and_stays_pending() {
    let app = spawn_app_with_checkout_timeout(Duration::from_secs(1)).await;
    let item = app.create_item(1, 5).await;
    let order_id = app.order_with(&app.create_user().await, &[(&item, 3)]).await;
    let coordinator = app.coordinator().await;

    let timed_out = app.post(&format!("/orders/checkout/{order_id}")).await;
    let message =
        format!("checkout of order {order_id} is still in progress; GET /orders/find/{order_id} shows its outcome");
    assert_eq!(timed_out, (StatusCode::GATEWAY_TIMEOUT, json!({ "error": message })));
    assert_eq!(app.checkout_states(&order_id).await, vec!["pending"]);
    assert_eq!(app.find(&order_id).await["paid"], json!(false));

    let in_progress = json!({ "error": "a checkout of this order is in progress" });
    assert_eq!(
        app.post(&format!("/orders/addItem/{order_id}/{item}")).await,
        (StatusCode::CONFLICT, in_progress.clone())
    );
    assert_eq!(
        app.delete(&format!("/orders/removeItem/{order_id}/{item}")).await,
        (StatusCode::CONFLICT, in_progress.clone())
    );
    assert_eq!(app.delete(&format!("/orders/remove/{order_id}")).await, (StatusCode::CONFLICT, in_progress));

    // The saga goes on and its outcome is recorded when it comes.
    let (saga_id, request) = coordinator.next_checkout().await;
    assert_eq!(request.items, vec![LineItem { item_id: item.clone(), quantity: 3 }]);
    coordinator.send_outcome(saga_id, CheckoutOutcome::Paid { order_id: order_id.clone() }).await;
    eventually("the late outcome to be recorded", PATIENCE, async || {
        (app.find(&order_id).await["paid"] == json!(true)).then_some(())
    })
    .await;
    assert!(coordinator.try_next().await.is_none(), "the timed-out checkout was sent twice");
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_outcomes_change_nothing_and_garbage_is_dead_lettered() {
    let app = spawn_app().await;
    let item = app.create_item(9, 5).await;
    let order_id = app.order_with(&app.create_user().await, &[(&item, 1)]).await;
    let coordinator = app.coordinator().await;
    let checkout = tokio::spawn(app.checkout(&order_id));
    let (saga_id, _) = coordinator.next_checkout().await;
    coordinator.send_outcome(saga_id, CheckoutOutcome::Paid { order_id: order_id.clone() }).await;
    assert_eq!(checkout.await.expect("the request task finishes").0, StatusCode::OK);

    let late = CheckoutOutcome::Failed { order_id: order_id.clone(), reason: FailureReason::Aborted };
    coordinator.send_outcome(saga_id, late).await;
    coordinator.send_outcome(saga_id, CheckoutOutcome::Paid { order_id: order_id.clone() }).await;
    coordinator.send_raw(b"{not an outcome".to_vec()).await;
    // Outcomes are handled in queue order, so once the garbage is dead-lettered the two before it are handled.
    eventually("the garbage to be dead-lettered", PATIENCE, async || {
        (coordinator.dead_letters().await == 1).then_some(())
    })
    .await;

    assert_eq!(app.checkout_states(&order_id).await, vec!["paid"]);
    assert_eq!(app.find(&order_id).await["paid"], json!(true));
    assert_eq!(app.count("SELECT count(*) AS n FROM checkouts WHERE reason IS NOT NULL").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_checkouts_mixing_good_unknown_empty_and_repeated_orders_answers_each_rightly() {
    let app = spawn_app().await;
    let item = app.create_item(1, 100).await;
    let mut good = Vec::new();
    for _ in 0..10 {
        good.push(app.order_with(&app.create_user().await, &[(&item, 1)]).await);
    }
    let empty = app.create_order(&app.create_user().await).await;
    let coordinator = app.coordinator().await;

    let mut requests = Vec::new();
    for order_id in good.iter().chain(good.iter()) {
        requests.push((order_id.clone(), tokio::spawn(app.checkout(order_id))));
    }
    let mut refused = Vec::new();
    for order_id in ["ghost-1", "ghost-2", "ghost-3", empty.as_str()] {
        refused.push((order_id.to_owned(), tokio::spawn(app.checkout(order_id))));
    }

    let mut started = std::collections::HashMap::new();
    for _ in 0..good.len() {
        let (saga_id, request) = coordinator.next_checkout().await;
        assert!(started.insert(request.order_id.clone(), saga_id).is_none(), "two sagas for {}", request.order_id);
    }
    for (order_id, saga_id) in &started {
        coordinator.send_outcome(*saga_id, CheckoutOutcome::Paid { order_id: order_id.clone() }).await;
    }
    for (order_id, request) in requests {
        let answer = request.await.expect("the request task finishes");
        assert_eq!(answer, (StatusCode::OK, json!({ "order_id": order_id, "paid": true })));
    }
    for (order_id, request) in refused {
        let (status, _) = request.await.expect("the request task finishes");
        let expected = if order_id == empty { StatusCode::BAD_REQUEST } else { StatusCode::NOT_FOUND };
        assert_eq!(status, expected, "{order_id}");
    }
    let strays = app.messages_before_marker(&coordinator).await;
    assert!(strays.is_empty(), "more StartCheckouts than orders");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_checkout_without_an_outcome_sends_its_start_again_until_one_comes() {
    let app = spawn_app_configured(|config| {
        config.resend_after = Duration::from_millis(300);
        config.resend_max = Duration::from_millis(600);
    })
    .await;
    let item = app.create_item(2, 5).await;
    let buyer = app.create_user().await;
    let order_id = app.order_with(&buyer, &[(&item, 3)]).await;
    let coordinator = app.coordinator().await;
    let checkout = tokio::spawn(app.checkout(&order_id));

    // The first start, then the same start again (lost, as far as order-svc can tell), and again.
    let first = coordinator.next_checkout().await;
    let second = coordinator.next_checkout().await;
    let third = coordinator.next_checkout().await;
    assert_eq!(second, first);
    assert_eq!(third, first);
    let (saga_id, request) = first;
    assert_eq!(request.items, vec![LineItem { item_id: item.clone(), quantity: 3 }]);
    assert_eq!((request.user_id.as_str(), request.total), (buyer.as_str(), 6));
    let resends = app.count("SELECT resends::bigint AS n FROM checkouts").await;
    assert!(resends >= 2, "{resends} resends recorded");

    // Once the outcome is in, nothing more is sent.
    coordinator.send_outcome(saga_id, CheckoutOutcome::Paid { order_id: order_id.clone() }).await;
    assert_eq!(checkout.await.expect("the request task finishes").0, StatusCode::OK);
    while coordinator.try_next().await.is_some() {}
    // A marker due now is sent in the next pass and again at most 600 ms later; by then the settled checkout, had
    // it still been due, would be due as well, and sent no later than the marker's second time.
    let marker = app.pending_marker().await;
    let (sent_again, _) = coordinator.messages_before(|envelope| envelope.saga_id == marker, 2).await;
    assert!(sent_again.is_empty(), "a settled checkout was sent again");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pending_checkout_whose_start_never_left_is_sent_after_a_restart() {
    let app = spawn_app_configured(|config| config.resend_after = Duration::from_millis(300)).await;
    let item = app.create_item(2, 5).await;
    let order_id = app.order_with(&app.create_user().await, &[(&item, 1)]).await;
    // What an order-svc killed between its commit and its publish leaves behind: a pending checkout, due.
    let saga_id = shared_contracts::SagaId::new();
    app.execute(&format!(
        "INSERT INTO checkouts (saga_id, order_id, state, resend_at) VALUES ('{saga_id}', '{order_id}', 'pending', now())"
    ))
    .await;
    let coordinator = app.coordinator().await;
    let (sent_for, request) = coordinator.next_checkout().await;
    assert_eq!(sent_for, saga_id);
    assert_eq!(request.items, vec![LineItem { item_id: item, quantity: 1 }]);

    coordinator.send_outcome(saga_id, CheckoutOutcome::Paid { order_id: order_id.clone() }).await;
    eventually("the outcome to be recorded", PATIENCE, async || {
        (app.find(&order_id).await["paid"] == json!(true)).then_some(())
    })
    .await;
    assert_eq!(app.checkout_states(&order_id).await, vec!["paid"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_checkout_that_can_neither_complete_nor_be_undone_answers_500_and_leaves_the_order_unpaid() {
    let app = spawn_app().await;
    let item = app.create_item(2, 5).await;
    let order_id = app.order_with(&app.create_user().await, &[(&item, 1)]).await;
    let coordinator = app.coordinator().await;
    let checkout = tokio::spawn(app.checkout(&order_id));
    let (saga_id, _) = coordinator.next_checkout().await;

    let problem = "stock-svc cannot release the reservation: item is gone".to_owned();
    coordinator.send_outcome(saga_id, CheckoutOutcome::NeedsAttention { order_id: order_id.clone(), problem }).await;
    let message = format!(
        "checkout {saga_id} could neither complete nor be fully undone: stock-svc cannot release the reservation: \
         item is gone; an operator must repair it"
    );
    assert_eq!(
        checkout.await.expect("the request task finishes"),
        (StatusCode::INTERNAL_SERVER_ERROR, json!({ "error": message }))
    );
    assert_eq!(app.checkout_states(&order_id).await, vec!["needs_attention"]);
    assert_eq!(app.find(&order_id).await["paid"], json!(false));
    let stored =
        app.count("SELECT count(*) AS n FROM checkouts WHERE reason->>'problem' LIKE 'stock-svc cannot%'").await;
    assert_eq!(stored, 1, "the problem is kept for operators");
    // A late outcome of the saga changes nothing any more.
    coordinator.send_outcome(saga_id, CheckoutOutcome::Paid { order_id: order_id.clone() }).await;
    coordinator.send_raw(b"{not an outcome".to_vec()).await;
    eventually("the garbage to be dead-lettered", PATIENCE, async || {
        (coordinator.dead_letters().await == 1).then_some(())
    })
    .await;
    assert_eq!(app.checkout_states(&order_id).await, vec!["needs_attention"]);
    assert_eq!(app.find(&order_id).await["paid"], json!(false));
}

#[tokio::test(flavor = "multi_thread")]
async fn by_default_a_long_lost_start_is_sent_again_within_five_seconds() {
    let defaults = order_svc::config::Config::from_env().expect("the default settings");
    let app = spawn_app_configured(|config| {
        config.resend_after = defaults.resend_after;
        config.resend_max = defaults.resend_max;
    })
    .await;
    let item = app.create_item(2, 5).await;
    let order_id = app.order_with(&app.create_user().await, &[(&item, 1)]).await;
    // A checkout that has been sent many times already, through an outage: its pause is at the maximum.
    let saga_id = shared_contracts::SagaId::new();
    app.execute(&format!(
        "INSERT INTO checkouts (saga_id, order_id, state, resend_at, resends)
         VALUES ('{saga_id}', '{order_id}', 'pending', now(), 30)"
    ))
    .await;
    let coordinator = app.coordinator().await;
    assert_eq!(coordinator.next_checkout().await.0, saga_id);
    let sent_first = std::time::Instant::now();
    assert_eq!(coordinator.next_checkout().await.0, saga_id);
    // The pause, plus one tick of the resend loop and some slack for a loaded machine.
    let pause = sent_first.elapsed();
    assert!(pause < Duration::from_millis(6500), "sent again only after {pause:?}");
}
