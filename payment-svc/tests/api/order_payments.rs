//! Payments against an order over REST: paying once, cancelling once, and the paid status.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn paying_for_an_order_twice_charges_once() {
    let app = spawn_app().await;
    let user_id = app.user_with(100).await;

    let (status, body) = app.post(&format!("/payment/pay/{user_id}/order-1/30")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"done": true, "user_id": user_id, "credit": 70, "already_paid": false}));

    let (status, body) = app.post(&format!("/payment/pay/{user_id}/order-1/30")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"done": true, "user_id": user_id, "credit": 70, "already_paid": true}));
    assert_eq!(app.credit_of(&user_id).await, 70);

    let (status, body) = app.post(&format!("/payment/pay/{user_id}/order-2/30")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["credit"], 40);
    assert_eq!(app.count("SELECT count(*) AS count FROM payments WHERE state = 'charged'").await, 2);
}

#[tokio::test]
async fn an_order_payment_beyond_the_credit_is_refused_and_not_recorded() {
    let app = spawn_app().await;
    let user_id = app.user_with(10).await;
    let (status, body) = app.post(&format!("/payment/pay/{user_id}/order-1/11")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, json!({"error": format!("user {user_id} has credit 10, cannot pay 11")}));
    assert_eq!(app.credit_of(&user_id).await, 10);
    assert!(!app.is_paid(&user_id, "order-1").await);
    assert_eq!(app.count("SELECT count(*) AS count FROM payments").await, 0);

    let (status, body) = app.post(&format!("/payment/pay/{user_id}/order-1/10")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["already_paid"], false);
    assert_eq!(app.credit_of(&user_id).await, 0);
}

#[tokio::test]
async fn cancel_refunds_once() {
    let app = spawn_app().await;
    let user_id = app.user_with(100).await;
    app.post(&format!("/payment/pay/{user_id}/order-1/30")).await;

    let (status, body) = app.post(&format!("/payment/cancel/{user_id}/order-1")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"done": true, "refunded": 30}));
    assert_eq!(app.credit_of(&user_id).await, 100);

    let (status, body) = app.post(&format!("/payment/cancel/{user_id}/order-1")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"done": true, "refunded": 0}));
    assert_eq!(app.credit_of(&user_id).await, 100);
}

#[tokio::test]
async fn an_order_can_be_paid_again_after_its_cancellation() {
    let app = spawn_app().await;
    let user_id = app.user_with(100).await;
    app.post(&format!("/payment/pay/{user_id}/order-1/30")).await;
    app.post(&format!("/payment/cancel/{user_id}/order-1")).await;

    let (status, body) = app.post(&format!("/payment/pay/{user_id}/order-1/20")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["already_paid"], false);
    assert_eq!(body["credit"], 80);
    assert!(app.is_paid(&user_id, "order-1").await);
}

#[tokio::test]
async fn cancelling_an_order_never_paid_is_not_found() {
    let app = spawn_app().await;
    let user_id = app.user_with(100).await;
    let (status, body) = app.post(&format!("/payment/cancel/{user_id}/order-1")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, json!({"error": format!("user {user_id} has no payment for order order-1")}));
    assert_eq!(app.credit_of(&user_id).await, 100);
}

#[tokio::test]
async fn status_follows_payment_and_cancellation() {
    let app = spawn_app().await;
    let user_id = app.user_with(100).await;
    assert!(!app.is_paid(&user_id, "order-1").await);

    app.post(&format!("/payment/pay/{user_id}/order-1/30")).await;
    assert!(app.is_paid(&user_id, "order-1").await);
    let (status, body) = app.post(&format!("/payment/status/{user_id}/order-1")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"paid": true}));
    assert!(!app.is_paid(&user_id, "order-2").await);

    app.post(&format!("/payment/cancel/{user_id}/order-1")).await;
    assert!(!app.is_paid(&user_id, "order-1").await);
}
