//! `/payment/cancel` of an order paid by a checkout, inside the whole checkout backend: payment-svc refunds
//! nothing itself but has order-svc cancel the order, whose cancellation saga gives the money and the stock back.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::spawn_system;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_of_an_order_paid_by_a_checkout_cancels_the_order_and_gives_everything_back_once() {
    let system = spawn_system().await;
    let payment = &system.payment;
    let user = payment.user_with(100).await;
    let item = system.item_with(5, 10).await;
    let order = system.paid_order(&user, &item, 2).await;
    assert_eq!((payment.credit_of(&user).await, system.stock_of(&item).await), (80, 3));

    let (status, body) = payment.post(&format!("/payment/cancel/{user}/{order}")).await;

    assert_eq!((status, body), (StatusCode::OK, json!({"done": true, "refunded": 20})));
    assert_eq!((payment.credit_of(&user).await, system.stock_of(&item).await), (100, 5));
    assert!(!system.order_is_paid(&order).await);
    assert!(!payment.is_paid(&user, &order).await);

    let (status, body) = payment.post(&format!("/payment/cancel/{user}/{order}")).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"done": true, "refunded": 0})));
    assert_eq!((payment.credit_of(&user).await, system.stock_of(&item).await), (100, 5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_order_svc_refuses_is_relayed_and_nothing_is_refunded() {
    let system = spawn_system().await;
    let payment = &system.payment;
    let user = payment.user_with(100).await;
    // A checkout's payment for an order order-svc does not know, as only an edit behind its back can leave it.
    payment
        .execute(&format!(
            "INSERT INTO payments (key, user_id, order_id, amount, state) \
             VALUES ('saga:{}', '{user}', 'ghost', 30, 'charged')",
            uuid::Uuid::new_v4()
        ))
        .await;
    payment.execute(&format!("UPDATE users SET credit = 70 WHERE id = '{user}'")).await;

    let (status, body) = payment.post(&format!("/payment/cancel/{user}/ghost")).await;

    assert_eq!((status, body), (StatusCode::NOT_FOUND, json!({"error": "order ghost does not exist"})));
    assert_eq!(payment.credit_of(&user).await, 70);
    assert!(payment.is_paid(&user, "ghost").await);
}
