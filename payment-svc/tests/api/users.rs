//! Users and their credit over REST: create, look up, add funds, pay, bulk-create, and the course scenario.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{spawn_app, spawn_app_with_coordinator};

/// The most a user may hold in credit and in payments a cancel may still refund, together, as documented.
const MAX_CREDIT: u64 = i64::MAX as u64;

#[tokio::test]
async fn a_new_user_has_no_credit() {
    let app = spawn_app().await;
    let (status, body) = app.post("/payment/create_user").await;
    assert_eq!(status, StatusCode::OK);
    let user_id = body["user_id"].as_str().expect("a user_id");
    assert!(uuid::Uuid::parse_str(user_id).is_ok(), "{user_id} is not a UUID");

    let (status, body) = app.get(&format!("/payment/find_user/{user_id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"user_id": user_id, "credit": 0}));
}

#[tokio::test]
async fn an_unknown_user_is_not_found() {
    let app = spawn_app().await;
    for (method, path) in [
        ("GET", "/payment/find_user/nobody"),
        ("POST", "/payment/add_funds/nobody/5"),
        ("POST", "/payment/pay/nobody/5"),
        ("POST", "/payment/pay/nobody/order/5"),
        ("POST", "/payment/cancel/nobody/order"),
        ("GET", "/payment/status/nobody/order"),
    ] {
        let (status, body) = app.call(method.parse().expect("a method"), path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
        assert_eq!(body["error"], "user nobody not found", "{method} {path}");
    }
    assert_eq!(app.count("SELECT count(*) AS count FROM payments").await, 0);
}

#[tokio::test]
async fn add_funds_answers_with_the_new_credit() {
    let app = spawn_app().await;
    let user_id = app.user_with(0).await;
    let (status, body) = app.post(&format!("/payment/add_funds/{user_id}/30")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"done": true, "user_id": user_id, "credit": 30}));
    let (status, body) = app.post(&format!("/payment/add_funds/{user_id}/0")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["credit"], 30);
}

#[tokio::test]
async fn add_funds_past_the_largest_bigint_is_refused() {
    let app = spawn_app().await;
    let user_id = app.user_with(i64::MAX as u64 - 1).await;
    let (status, body) = app.post(&format!("/payment/add_funds/{user_id}/2")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().expect("an error").contains("would exceed"), "{body}");
    assert_eq!(app.credit_of(&user_id).await, i64::MAX as u64 - 1);

    let (status, body) = app.post(&format!("/payment/add_funds/{user_id}/1")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["credit"], i64::MAX);
}

#[tokio::test]
async fn the_course_scenario_pays_and_refuses_an_over_payment() {
    let app = spawn_app().await;
    let (_, body) = app.post("/payment/create_user").await;
    let user_id = body["user_id"].as_str().expect("a user_id").to_owned();
    let (status, _) = app.post(&format!("/payment/add_funds/{user_id}/15")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.credit_of(&user_id).await, 15);

    let (status, body) = app.post(&format!("/payment/pay/{user_id}/10")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"done": true, "user_id": user_id, "credit": 5}));

    let (status, body) = app.post(&format!("/payment/pay/{user_id}/6")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, json!({"error": format!("user {user_id} has credit 5, cannot pay 6")}));
    assert_eq!(app.credit_of(&user_id).await, 5);

    let (status, body) = app.post(&format!("/payment/pay/{user_id}/5")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["credit"], 0);
    let (status, body) = app.post(&format!("/payment/pay/{user_id}/0")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["credit"], 0);
}

#[tokio::test]
async fn batch_init_creates_numbered_users_and_overwrites_their_credit() {
    let app = spawn_app_with_coordinator().await;
    let (status, body) = app.post("/payment/batch_init/3/100").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"msg": "Batch init for users successful"}));
    for user_id in ["0", "1", "2"] {
        assert_eq!(app.credit_of(user_id).await, 100);
    }
    let (status, _) = app.get("/payment/find_user/3").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    app.post("/payment/pay/1/40").await;
    let (status, _) = app.post("/payment/batch_init/2/7").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.credit_of("0").await, 7);
    assert_eq!(app.credit_of("1").await, 7);
    assert_eq!(app.credit_of("2").await, 100);
    assert_eq!(app.count("SELECT count(*) AS count FROM users").await, 3);
}

#[tokio::test]
async fn batch_init_makes_a_hundred_thousand_users() {
    let app = spawn_app_with_coordinator().await;
    let (status, body) = app.post("/payment/batch_init/100000/1000000").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app.count("SELECT count(*) AS count FROM users").await, 100_000);
    let (status, body) = app.get("/payment/find_user/99999").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"user_id": "99999", "credit": 1_000_000}));
}

#[tokio::test]
async fn batch_init_refuses_counts_out_of_range() {
    let app = spawn_app().await;
    for path in ["/payment/batch_init/0/10", "/payment/batch_init/10000001/10"] {
        let (status, body) = app.post(path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
        assert!(body["error"].as_str().expect("an error").starts_with("n must be"), "{body}");
    }
    assert_eq!(app.count("SELECT count(*) AS count FROM users").await, 0);
}

#[tokio::test]
async fn add_funds_leaves_room_for_what_a_cancel_may_refund() {
    let app = spawn_app().await;
    let user_id = app.user_with(100).await;
    app.post(&format!("/payment/pay/{user_id}/order-1/30")).await;

    let (status, body) = app.post(&format!("/payment/add_funds/{user_id}/{}", MAX_CREDIT - 70)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let error = format!(
        "user {user_id} has credit 70 and 30 that may be refunded, adding {} would exceed the maximum of \
         {MAX_CREDIT} for the two together",
        MAX_CREDIT - 70
    );
    assert_eq!(body, json!({ "error": error }));
    assert_eq!(app.credit_of(&user_id).await, 70);

    let (status, body) = app.post(&format!("/payment/add_funds/{user_id}/{}", MAX_CREDIT - 100)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app.post(&format!("/payment/cancel/{user_id}/order-1")).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"done": true, "refunded": 30})));
    assert_eq!(app.credit_of(&user_id).await, MAX_CREDIT);
}

#[tokio::test]
async fn a_payment_without_an_order_cannot_be_refunded_and_needs_no_room() {
    let app = spawn_app().await;
    let user_id = app.user_with(100).await;
    app.post(&format!("/payment/pay/{user_id}/30")).await;

    let (status, body) = app.post(&format!("/payment/add_funds/{user_id}/{}", MAX_CREDIT - 70)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app.credit_of(&user_id).await, MAX_CREDIT);
}

#[tokio::test]
async fn batch_init_leaves_room_for_what_a_cancel_may_refund() {
    let app = spawn_app_with_coordinator().await;
    assert_eq!(app.post("/payment/batch_init/2/100").await.0, StatusCode::OK);
    app.post("/payment/pay/1/order-1/30").await;

    let (status, body) = app.post(&format!("/payment/batch_init/2/{MAX_CREDIT}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let error = format!(
        "user 1 has 30 that may be refunded, a credit of {MAX_CREDIT} would exceed the maximum of {MAX_CREDIT} for \
         the two together"
    );
    assert_eq!(body, json!({ "error": error }));
    assert_eq!((app.credit_of("0").await, app.credit_of("1").await), (100, 70));

    let (status, body) = app.post(&format!("/payment/batch_init/2/{}", MAX_CREDIT - 30)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app.credit_of("1").await, MAX_CREDIT - 30);
}

#[tokio::test]
async fn batch_init_is_refused_while_checkout_sagas_are_unfinished() {
    let app = spawn_app_with_coordinator().await;
    assert_eq!(app.post("/payment/batch_init/1/100").await.0, StatusCode::OK);
    app.start_an_unfinished_saga().await;

    let (status, body) = app.post("/payment/batch_init/2/5").await;

    assert_eq!(status, StatusCode::CONFLICT);
    let error = "1 checkout sagas are unfinished; batch_init would change credit under them; try again when they \
                 have ended";
    assert_eq!(body, json!({"error": error, "unfinished": 1}));
    assert_eq!(app.credit_of("0").await, 100);
    assert_eq!(app.count("SELECT count(*) AS count FROM users").await, 1);
}

#[tokio::test]
async fn batch_init_is_unavailable_while_the_coordinator_cannot_be_asked() {
    let app = spawn_app().await;

    let (status, body) = app.post("/payment/batch_init/2/5").await;

    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let error = body["error"].as_str().expect("an error");
    assert!(error.contains("coordinator"), "{error}");
    assert_eq!(app.count("SELECT count(*) AS count FROM users").await, 0);
}
