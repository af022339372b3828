//! Concurrent payments never take the credit below zero.

use futures::future::join_all;
use reqwest::StatusCode;

use crate::helpers::spawn_app;

#[tokio::test]
async fn two_hundred_payments_of_one_on_a_credit_of_a_hundred() {
    let app = spawn_app().await;
    let user = app.user_with(100).await;
    let path = format!("/payment/pay/{user}/1");
    let answers = join_all((0..200).map(|_| app.post(&path))).await;

    let succeeded = answers.iter().filter(|(status, _)| *status == StatusCode::OK).count();
    let refused = answers.iter().filter(|(status, _)| *status == StatusCode::BAD_REQUEST).count();
    assert_eq!((succeeded, refused), (100, 100));
    assert_eq!(app.credit_of(&user).await, 0);
}

#[tokio::test]
async fn concurrent_payments_for_one_order_charge_once() {
    let app = spawn_app().await;
    let user = app.user_with(100).await;
    let path = format!("/payment/pay/{user}/order-1/10");
    let answers = join_all((0..20).map(|_| app.post(&path))).await;

    assert!(answers.iter().all(|(status, _)| *status == StatusCode::OK), "{answers:?}");
    let first_payments = answers.iter().filter(|(_, body)| body["already_paid"] == false).count();
    assert_eq!(first_payments, 1);
    assert_eq!(app.credit_of(&user).await, 90);
}
