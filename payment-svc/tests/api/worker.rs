//! The saga worker, driven as the coordinator drives it: commands on the payment queue, replies on the
//! coordinator's queue, and the effects checked through the REST API.

use reqwest::StatusCode;
use serde_json::json;
use shared_contracts::{FailureReason, PaymentCommand, PaymentReply, SagaId};

use crate::helpers::{charge, spawn_app_with_broker, PaymentReplies};

#[tokio::test]
async fn a_charge_takes_the_credit_and_is_answered_charged() {
    let app = spawn_app_with_broker().await;
    app.post("/payment/batch_init/1/100").await;
    let mut coordinator = app.coordinator().await;
    let saga = SagaId::new();

    coordinator.send(&[(saga, charge("0", "order-1", 30))]).await;
    assert_eq!(coordinator.next_payment_reply().await, (saga, PaymentReply::Charged));
    assert_eq!(app.credit_of("0").await, 70);
    assert!(app.is_paid("0", "order-1").await);
}

#[tokio::test]
async fn a_repeated_charge_is_answered_the_same_and_charged_once() {
    let app = spawn_app_with_broker().await;
    app.post("/payment/batch_init/1/100").await;
    let mut coordinator = app.coordinator().await;
    let saga = SagaId::new();

    coordinator.send(&[(saga, charge("0", "order-1", 30))]).await;
    assert_eq!(coordinator.next_payment_reply().await, (saga, PaymentReply::Charged));
    coordinator.send(&[(saga, charge("0", "order-1", 30)), (saga, charge("0", "order-1", 30))]).await;
    assert_eq!(coordinator.next_payment_reply().await, (saga, PaymentReply::Charged));
    assert_eq!(coordinator.next_payment_reply().await, (saga, PaymentReply::Charged));
    assert_eq!(app.credit_of("0").await, 70);
}

#[tokio::test]
async fn a_refund_after_the_charge_restores_the_credit() {
    let app = spawn_app_with_broker().await;
    app.post("/payment/batch_init/1/100").await;
    let mut coordinator = app.coordinator().await;
    let saga = SagaId::new();

    coordinator.send(&[(saga, charge("0", "order-1", 30))]).await;
    assert_eq!(coordinator.next_payment_reply().await, (saga, PaymentReply::Charged));
    coordinator.send(&[(saga, PaymentCommand::Refund)]).await;
    assert_eq!(coordinator.next_payment_reply().await, (saga, PaymentReply::Refunded));
    assert_eq!(app.credit_of("0").await, 100);
    assert!(!app.is_paid("0", "order-1").await);

    coordinator.send(&[(saga, PaymentCommand::Refund)]).await;
    assert_eq!(coordinator.next_payment_reply().await, (saga, PaymentReply::Refunded));
    assert_eq!(app.credit_of("0").await, 100);
}

#[tokio::test]
async fn a_charge_and_its_refund_in_one_batch_both_apply() {
    let app = spawn_app_with_broker().await;
    app.post("/payment/batch_init/1/100").await;
    let mut coordinator = app.coordinator().await;
    let saga = SagaId::new();

    coordinator.send(&[(saga, charge("0", "order-1", 30)), (saga, PaymentCommand::Refund)]).await;
    assert_eq!(coordinator.next_payment_reply().await, (saga, PaymentReply::Charged));
    assert_eq!(coordinator.next_payment_reply().await, (saga, PaymentReply::Refunded));
    assert_eq!(app.credit_of("0").await, 100);
}

#[tokio::test]
async fn a_refund_before_the_charge_blocks_it() {
    let app = spawn_app_with_broker().await;
    app.post("/payment/batch_init/1/100").await;
    let mut coordinator = app.coordinator().await;
    let saga = SagaId::new();

    coordinator.send(&[(saga, PaymentCommand::Refund)]).await;
    assert_eq!(coordinator.next_payment_reply().await, (saga, PaymentReply::Refunded));
    coordinator.send(&[(saga, charge("0", "order-1", 30))]).await;
    assert_eq!(
        coordinator.next_payment_reply().await,
        (saga, PaymentReply::Rejected { reason: FailureReason::Cancelled })
    );
    assert_eq!(app.credit_of("0").await, 100);
    assert!(!app.is_paid("0", "order-1").await);
}

#[tokio::test]
async fn a_charge_beyond_the_credit_or_for_nobody_is_rejected() {
    let app = spawn_app_with_broker().await;
    app.post("/payment/batch_init/1/100").await;
    let mut coordinator = app.coordinator().await;
    let (short, unknown, huge) = (SagaId::new(), SagaId::new(), SagaId::new());

    coordinator
        .send(&[
            (short, charge("0", "order-1", 101)),
            (unknown, charge("nobody", "order-2", 1)),
            (huge, charge("0", "order-3", u64::MAX)),
        ])
        .await;
    let insufficient = FailureReason::InsufficientCredit { user_id: "0".into() };
    assert_eq!(
        coordinator.next_payment_reply().await,
        (short, PaymentReply::Rejected { reason: insufficient.clone() })
    );
    let no_user = FailureReason::UnknownUser { user_id: "nobody".into() };
    assert_eq!(coordinator.next_payment_reply().await, (unknown, PaymentReply::Rejected { reason: no_user }));
    assert_eq!(coordinator.next_payment_reply().await, (huge, PaymentReply::Rejected { reason: insufficient.clone() }));
    assert_eq!(app.credit_of("0").await, 100);

    // The rejection is recorded: a redelivery is rejected the same way even though the credit now suffices.
    app.post("/payment/add_funds/0/1").await;
    coordinator.send(&[(short, charge("0", "order-1", 101))]).await;
    assert_eq!(coordinator.next_payment_reply().await, (short, PaymentReply::Rejected { reason: insufficient }));
    assert_eq!(app.credit_of("0").await, 101);
}

#[tokio::test]
async fn an_undecodable_command_is_dead_lettered_and_the_queue_moves_on() {
    let app = spawn_app_with_broker().await;
    app.post("/payment/batch_init/1/100").await;
    let mut coordinator = app.coordinator().await;
    let saga = SagaId::new();

    coordinator.send_raw(b"{not a command").await;
    coordinator.send(&[(saga, charge("0", "order-1", 30))]).await;
    assert_eq!(coordinator.next_dead_letter().await, b"{not a command".to_vec());
    assert_eq!(coordinator.next_payment_reply().await, (saga, PaymentReply::Charged));
    assert_eq!(app.credit_of("0").await, 70);
}

#[tokio::test]
async fn a_rest_cancel_refunds_a_saga_charge_once() {
    let app = spawn_app_with_broker().await;
    app.post("/payment/batch_init/1/100").await;
    let mut coordinator = app.coordinator().await;
    let saga = SagaId::new();

    coordinator.send(&[(saga, charge("0", "order-1", 30))]).await;
    assert_eq!(coordinator.next_payment_reply().await, (saga, PaymentReply::Charged));
    let (status, body) = app.post("/payment/cancel/0/order-1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"done": true, "refunded": 30}));

    coordinator.send(&[(saga, PaymentCommand::Refund)]).await;
    assert_eq!(coordinator.next_payment_reply().await, (saga, PaymentReply::Refunded));
    assert_eq!(app.credit_of("0").await, 100);
}
