//! Order management over REST: the course scenario, the rules for adding and removing, bad input, batch_init.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use shared_contracts::CheckoutOutcome;

use crate::helpers::{spawn_app, spawn_app_configured};

fn sorted(mut items: Vec<(&str, u64)>) -> Vec<(&str, u64)> {
    items.sort();
    items
}

fn items_json(items: &[(&str, u64)]) -> Value {
    Value::Array(items.iter().map(|(id, qty)| json!([id, qty])).collect())
}

fn assert_error(answer: &(StatusCode, Value), status: StatusCode, message: &str) {
    assert_eq!(answer.0, status, "{}", answer.1);
    assert_eq!(answer.1, json!({ "error": message }));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_course_scenario_builds_an_order_and_find_shows_it() {
    let app = spawn_app().await;
    let cheap = app.create_item(5, 10).await;
    let dear = app.create_item(7, 10).await;
    let user = app.create_user().await;
    let order_id = app.create_order(&user).await;
    assert_eq!(
        app.find(&order_id).await,
        json!({ "order_id": order_id, "paid": false, "items": [], "user_id": user, "total_cost": 0 })
    );

    let added = app.post(&format!("/orders/addItem/{order_id}/{cheap}/2")).await;
    assert_eq!(added.0, StatusCode::OK);
    assert_eq!(added.1, json!({ "order_id": order_id, "total_cost": 10, "items": [[cheap, 2]] }));

    let added = app.post(&format!("/orders/addItem/{order_id}/{dear}")).await;
    let items = sorted(vec![(cheap.as_str(), 2), (dear.as_str(), 1)]);
    assert_eq!(added, (StatusCode::OK, json!({ "order_id": order_id, "total_cost": 17, "items": items_json(&items) })));

    let added = app.post(&format!("/orders/addItem/{order_id}/{cheap}/1")).await;
    let items = sorted(vec![(cheap.as_str(), 3), (dear.as_str(), 1)]);
    assert_eq!(added, (StatusCode::OK, json!({ "order_id": order_id, "total_cost": 22, "items": items_json(&items) })));

    assert_eq!(
        app.find(&order_id).await,
        json!({ "order_id": order_id, "paid": false, "items": items_json(&items), "user_id": user, "total_cost": 22 })
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn adding_an_unknown_item_or_to_an_unknown_order_is_404_and_changes_nothing() {
    let app = spawn_app().await;
    let item = app.create_item(3, 1).await;
    let order_id = app.order_with(&app.create_user().await, &[(&item, 1)]).await;
    let before = app.find(&order_id).await;

    assert_error(
        &app.post(&format!("/orders/addItem/{order_id}/no-such-item/2")).await,
        StatusCode::NOT_FOUND,
        "item no-such-item does not exist",
    );
    assert_error(
        &app.post(&format!("/orders/addItem/no-such-order/{item}")).await,
        StatusCode::NOT_FOUND,
        "order no-such-order does not exist",
    );
    assert_eq!(app.find(&order_id).await, before);
    assert_eq!(app.count("SELECT count(*) AS n FROM orders").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_total_beyond_bigint_is_refused_and_changes_nothing() {
    let app = spawn_app().await;
    let priceless = app.create_item(i64::MAX as u64, 0).await;
    let order_id = app.order_with(&app.create_user().await, &[(&priceless, 1)]).await;
    let before = app.find(&order_id).await;
    assert_eq!(before["total_cost"], json!(i64::MAX));

    let refused = app.post(&format!("/orders/addItem/{order_id}/{priceless}")).await;
    assert_eq!(refused.0, StatusCode::BAD_REQUEST, "{}", refused.1);
    assert!(refused.1["error"].as_str().unwrap().contains("would exceed the maximum"), "{}", refused.1);
    assert_eq!(app.find(&order_id).await, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn removing_an_item_takes_off_its_whole_line_and_what_it_cost() {
    let app = spawn_app().await;
    let a = app.create_item(4, 0).await;
    let b = app.create_item(10, 0).await;
    let order_id = app.order_with(&app.create_user().await, &[(&a, 2), (&b, 1), (&a, 1)]).await;
    assert_eq!(app.find(&order_id).await["total_cost"], json!(22));

    let removed = app.delete(&format!("/orders/removeItem/{order_id}/{a}")).await;
    assert_eq!(removed, (StatusCode::OK, json!({ "order_id": order_id, "total_cost": 10, "items": [[b, 1]] })));

    assert_error(
        &app.delete(&format!("/orders/removeItem/{order_id}/{a}")).await,
        StatusCode::NOT_FOUND,
        &format!("item {a} is not in order {order_id}"),
    );
    assert_error(
        &app.delete(&format!("/orders/removeItem/nope/{b}")).await,
        StatusCode::NOT_FOUND,
        "order nope does not exist",
    );
    let removed = app.delete(&format!("/orders/removeItem/{order_id}/{b}")).await;
    assert_eq!(removed, (StatusCode::OK, json!({ "order_id": order_id, "total_cost": 0, "items": [] })));
}

#[tokio::test(flavor = "multi_thread")]
async fn removing_an_item_takes_off_what_it_cost_when_added_not_its_price_now() {
    let app = spawn_app().await;
    let item = app.create_item(10, 0).await;
    let other = app.create_item(1, 0).await;
    let order_id = app.order_with(&app.create_user().await, &[(&item, 2), (&other, 1)]).await;
    app.set_price(&item, 25).await;
    let added = app.post(&format!("/orders/addItem/{order_id}/{item}")).await;
    assert_eq!(added.1["total_cost"], json!(46));

    let removed = app.delete(&format!("/orders/removeItem/{order_id}/{item}")).await;
    assert_eq!(removed, (StatusCode::OK, json!({ "order_id": order_id, "total_cost": 1, "items": [[other, 1]] })));
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_additions_are_all_counted() {
    let app = spawn_app().await;
    let item = app.create_item(3, 0).await;
    let order_id = app.create_order(&app.create_user().await).await;
    let path = format!("/orders/addItem/{order_id}/{item}");
    let additions = (0..20).map(|_| app.post(&path));
    for (status, body) in futures::future::join_all(additions).await {
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let order = app.find(&order_id).await;
    assert_eq!((&order["items"], &order["total_cost"]), (&json!([[item, 20]]), &json!(60)));
}

#[tokio::test(flavor = "multi_thread")]
async fn without_stock_svc_adding_an_item_is_503_and_changes_nothing() {
    // Port 1 on the loopback: nothing listens there, so the connection is refused at once.
    let app = spawn_app_configured(|config| config.stock_url = "http://127.0.0.1:1".into()).await;
    let user = app.create_user().await;
    let order_id = app.create_order(&user).await;
    let (status, body) = app.post(&format!("/orders/addItem/{order_id}/42")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body["error"].as_str().is_some_and(|e| e.starts_with("service unavailable: stock service")), "{body}");
    assert_eq!(
        app.find(&order_id).await,
        json!({ "order_id": order_id, "paid": false, "items": [], "user_id": user, "total_cost": 0 })
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn removing_an_order_deletes_it_with_its_lines() {
    let app = spawn_app().await;
    let item = app.create_item(1, 0).await;
    let order_id = app.order_with(&app.create_user().await, &[(&item, 3)]).await;

    assert_eq!(app.delete(&format!("/orders/remove/{order_id}")).await, (StatusCode::OK, json!({ "done": true })));
    let message = format!("order {order_id} does not exist");
    assert_error(&app.get(&format!("/orders/find/{order_id}")).await, StatusCode::NOT_FOUND, &message);
    assert_error(&app.delete(&format!("/orders/remove/{order_id}")).await, StatusCode::NOT_FOUND, &message);
    assert_eq!(app.count("SELECT count(*) AS n FROM order_items").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_a_4xx_json_error_and_changes_nothing() {
    let app = spawn_app().await;
    let item = app.create_item(2, 0).await;
    let order_id = app.order_with(&app.create_user().await, &[(&item, 1)]).await;
    let before = app.find(&order_id).await;
    let long_id = "x".repeat(129);

    let cases: Vec<(Method, String, StatusCode)> = vec![
        (Method::POST, format!("/orders/addItem/{order_id}/{item}/abc"), StatusCode::BAD_REQUEST),
        (Method::POST, format!("/orders/addItem/{order_id}/{item}/-5"), StatusCode::BAD_REQUEST),
        (Method::POST, format!("/orders/addItem/{order_id}/{item}/99999999999999999999"), StatusCode::BAD_REQUEST),
        (Method::POST, format!("/orders/addItem/{order_id}/{item}/0"), StatusCode::BAD_REQUEST),
        (Method::POST, format!("/orders/addItem/{order_id}/{item}/1.5"), StatusCode::BAD_REQUEST),
        (Method::POST, format!("/orders/addItem/{order_id}/{long_id}"), StatusCode::BAD_REQUEST),
        (Method::POST, format!("/orders/addItem/{order_id}//1"), StatusCode::NOT_FOUND),
        (Method::POST, format!("/orders/addItem/{order_id}/"), StatusCode::NOT_FOUND),
        (Method::POST, format!("/orders/create/{long_id}"), StatusCode::BAD_REQUEST),
        (Method::POST, "/orders/create/".to_owned(), StatusCode::NOT_FOUND),
        (Method::GET, "/orders/find/".to_owned(), StatusCode::NOT_FOUND),
        (Method::GET, format!("/orders/find/{long_id}"), StatusCode::BAD_REQUEST),
        (Method::DELETE, format!("/orders/removeItem/{order_id}/"), StatusCode::NOT_FOUND),
        (Method::POST, "/orders/batch_init/abc/1/1/1".to_owned(), StatusCode::BAD_REQUEST),
        (Method::POST, "/orders/batch_init/-5/1/1/1".to_owned(), StatusCode::BAD_REQUEST),
        (Method::POST, "/orders/batch_init/0/1/1/1".to_owned(), StatusCode::BAD_REQUEST),
        (Method::POST, "/orders/batch_init/10000001/1/1/1".to_owned(), StatusCode::BAD_REQUEST),
        (Method::POST, "/orders/batch_init/1/0/1/1".to_owned(), StatusCode::BAD_REQUEST),
        (Method::POST, "/orders/batch_init/1/1/99999999999999999999/1".to_owned(), StatusCode::BAD_REQUEST),
        (Method::POST, "/orders/batch_init/1/1/1/-5".to_owned(), StatusCode::BAD_REQUEST),
        (Method::POST, "/orders/batch_init/1/1/1/9223372036854775807".to_owned(), StatusCode::BAD_REQUEST),
        (Method::POST, "/orders/batch_init/1/1//1".to_owned(), StatusCode::NOT_FOUND),
        (Method::GET, format!("/orders/checkout/{order_id}"), StatusCode::METHOD_NOT_ALLOWED),
        (Method::POST, format!("/orders/find/{order_id}"), StatusCode::METHOD_NOT_ALLOWED),
        (Method::GET, format!("/orders/remove/{order_id}"), StatusCode::METHOD_NOT_ALLOWED),
        (Method::POST, format!("/orders/removeItem/{order_id}/{item}"), StatusCode::METHOD_NOT_ALLOWED),
        (Method::DELETE, format!("/orders/addItem/{order_id}/{item}/1"), StatusCode::METHOD_NOT_ALLOWED),
        (Method::GET, "/orders/no_such_thing".to_owned(), StatusCode::NOT_FOUND),
        (Method::POST, format!("/orders/checkout/{order_id}/extra"), StatusCode::NOT_FOUND),
    ];
    for (method, path, status) in cases {
        let (got, body) = app.call(method.clone(), &path).await;
        assert_eq!(got, status, "{method} {path}: {body}");
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{method} {path}: {body}");
    }
    assert_eq!(app.find(&order_id).await, before);
    assert_eq!(app.count("SELECT count(*) AS n FROM orders").await, 1);
    assert_eq!(app.count("SELECT count(*) AS n FROM checkouts").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn batch_init_makes_a_hundred_thousand_orders_of_two_units() {
    let app = spawn_app().await;
    let (status, body) = app.post("/orders/batch_init/100000/1000/500/3").await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "msg": "Batch init for orders successful" })));

    let last = app.find("99999").await;
    assert_eq!(last["paid"], json!(false));
    assert_eq!(last["total_cost"], json!(6));
    assert_batch_order(&last, 1000, 500);
    assert_eq!(app.count("SELECT count(*) AS n FROM orders").await, 100_000);
    assert_eq!(app.count("SELECT sum(quantity)::bigint AS n FROM order_items").await, 200_000);
    assert_eq!(app.count("SELECT sum(unit_total)::bigint AS n FROM order_items").await, 600_000);
    let missing = app.get("/orders/find/100000").await;
    assert_eq!(missing.0, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread")]
async fn batch_init_overwrites_earlier_orders_of_the_same_ids() {
    let app = spawn_app().await;
    assert_eq!(app.post("/orders/batch_init/10/1/1/5").await.0, StatusCode::OK);
    // With one item to pick from, both picks are the same: one line of two units.
    assert_eq!(
        app.find("3").await,
        json!({ "order_id": "3", "paid": false, "items": [["0", 2]], "user_id": "0", "total_cost": 10 })
    );
    let item = app.create_item(100, 0).await;
    assert_eq!(app.post(&format!("/orders/addItem/2/{item}")).await.0, StatusCode::OK);
    let coordinator = app.coordinator().await;
    let checkout = tokio::spawn(app.checkout("3"));
    let (saga_id, _) = coordinator.next_checkout().await;
    coordinator.send_outcome(saga_id, CheckoutOutcome::Paid { order_id: "3".into() }).await;
    assert_eq!(checkout.await.expect("the request task finishes").0, StatusCode::OK);

    assert_eq!(app.post("/orders/batch_init/5/1/1/7").await.0, StatusCode::OK);
    for order_id in ["2", "3"] {
        assert_eq!(
            app.find(order_id).await,
            json!({ "order_id": order_id, "paid": false, "items": [["0", 2]], "user_id": "0", "total_cost": 14 })
        );
    }
    assert!(app.checkout_states("3").await.is_empty());
    assert_eq!(app.find("7").await["total_cost"], json!(10), "orders beyond the new n are left alone");
    assert_eq!(app.count("SELECT count(*) AS n FROM orders").await, 10);
}

/// An order of a batch: two units of items below `n_items`, a user below `n_users`.
fn assert_batch_order(order: &Value, n_items: u64, n_users: u64) {
    let items = order["items"].as_array().expect("items");
    assert!(items.len() == 1 || items.len() == 2, "{order}");
    let units: u64 = items.iter().map(|line| line[1].as_u64().expect("a quantity")).sum();
    assert_eq!(units, 2, "{order}");
    for line in items {
        let item: u64 = line[0].as_str().and_then(|id| id.parse().ok()).expect("a numeric item ID");
        assert!(item < n_items, "{order}");
    }
    let user: u64 = order["user_id"].as_str().and_then(|id| id.parse().ok()).expect("a numeric user ID");
    assert!(user < n_users, "{order}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_order_is_created_only_for_a_user_payment_svc_knows() {
    let app = spawn_app().await;
    assert_error(&app.post("/orders/create/ghost").await, StatusCode::NOT_FOUND, "user ghost does not exist");
    // The ID reaches payment-svc as one path segment, whatever it holds.
    assert_error(&app.post("/orders/create/a%20b").await, StatusCode::NOT_FOUND, "user a b does not exist");
    assert_eq!(app.count("SELECT count(*) AS n FROM orders").await, 0);

    let user = app.create_user().await;
    let order_id = app.create_order(&user).await;
    assert_eq!(app.find(&order_id).await["user_id"], json!(user));
}

#[tokio::test(flavor = "multi_thread")]
async fn without_payment_svc_creating_an_order_is_503_and_creates_nothing() {
    let app = spawn_app_configured(|config| config.payment_url = "http://127.0.0.1:1".into()).await;
    let (status, body) = app.post("/orders/create/someone").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body["error"].as_str().is_some_and(|e| e.starts_with("service unavailable: payment service")), "{body}");
    assert_eq!(app.count("SELECT count(*) AS n FROM orders").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn batch_init_is_refused_while_checkouts_or_cancellations_of_its_orders_are_unfinished() {
    let app = spawn_app().await;
    assert_eq!(app.post("/orders/batch_init/5/1/1/5").await.0, StatusCode::OK);
    let coordinator = app.coordinator().await;
    let checkout = tokio::spawn(app.checkout("1"));
    let (checkout_saga, _) = coordinator.next_checkout().await;
    let paid = tokio::spawn(app.checkout("3"));
    let (paid_saga, _) = coordinator.next_checkout().await;
    coordinator.send_outcome(paid_saga, CheckoutOutcome::Paid { order_id: "3".into() }).await;
    assert_eq!(paid.await.expect("the request task finishes").0, StatusCode::OK);
    let cancel = tokio::spawn(app.cancel("3"));
    assert_eq!(coordinator.next_cancel().await.0, paid_saga);
    let before: Vec<Value> = futures::future::join_all(["1", "2", "3"].map(|id| app.find(id))).await;

    let refused = app.post("/orders/batch_init/4/1/1/7").await;
    let message =
        "2 checkouts of these orders are unfinished; batch_init would change the orders under them; try again when they \
         have ended";
    assert_eq!(refused, (StatusCode::CONFLICT, json!({ "error": message, "unfinished": 2 })));
    assert_eq!(futures::future::join_all(["1", "2", "3"].map(|id| app.find(id))).await, before);
    assert_eq!(app.checkout_states("1").await, vec!["pending"]);
    assert_eq!(app.checkout_states("3").await, vec!["cancelling"]);
    // Orders beyond the unfinished ones are not the batch's business.
    assert_eq!(app.post("/orders/batch_init/1/1/1/7").await.0, StatusCode::OK);

    let reason = shared_contracts::FailureReason::Aborted;
    coordinator.send_outcome(checkout_saga, CheckoutOutcome::Failed { order_id: "1".into(), reason }).await;
    coordinator.send_outcome(paid_saga, CheckoutOutcome::Cancelled { order_id: "3".into() }).await;
    assert_eq!(checkout.await.expect("the request task finishes").0, StatusCode::BAD_REQUEST);
    assert_eq!(cancel.await.expect("the request task finishes").0, StatusCode::OK);
    assert_eq!(app.post("/orders/batch_init/4/1/1/7").await.0, StatusCode::OK);
    assert_eq!(app.find("3").await["total_cost"], json!(14));
    assert!(app.checkout_states("3").await.is_empty());
}
