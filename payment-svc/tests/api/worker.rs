//! The saga worker, driven as the coordinator drives it: commands on the payment queue, replies on the
//! coordinator's queue, and the effects checked through the REST API.

use std::collections::HashMap;

use reqwest::StatusCode;
use serde_json::json;
use shared_contracts::{Envelope, FailureReason, PaymentCommand, PaymentReply, SagaId};

use crate::helpers::{charge, spawn_app_with_broker, spawn_app_with_parallel_batches, PaymentReplies};

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
async fn a_first_charge_and_its_duplicate_in_one_batch_charge_once() {
    let app = spawn_app_with_broker().await;
    app.post("/payment/batch_init/1/100").await;
    let mut coordinator = app.coordinator().await;
    let (saga, other) = (SagaId::new(), SagaId::new());

    coordinator
        .send(&[
            (saga, charge("0", "order-1", 30)),
            (other, charge("0", "order-2", 50)),
            (saga, charge("0", "order-1", 30)),
        ])
        .await;
    assert_eq!(coordinator.next_payment_reply().await, (saga, PaymentReply::Charged));
    assert_eq!(coordinator.next_payment_reply().await, (other, PaymentReply::Charged));
    assert_eq!(coordinator.next_payment_reply().await, (saga, PaymentReply::Charged));
    assert_eq!(app.credit_of("0").await, 20);
    assert_eq!(app.count("SELECT count(*) AS count FROM payments WHERE state = 'charged'").await, 2);
}

#[tokio::test]
async fn concurrent_batches_charging_one_user_take_no_more_than_the_credit() {
    let app = spawn_app_with_parallel_batches().await;
    app.post("/payment/batch_init/1/100").await;
    let mut coordinator = app.coordinator().await;
    let sagas: Vec<SagaId> = (0..20).map(|_| SagaId::new()).collect();

    // Each charge twice in a row: the broker hands the two consumers messages in turn, so the copies of a saga's
    // charge land in batches handled at the same time, and both batches charge user 0.
    let commands: Vec<_> = sagas
        .iter()
        .enumerate()
        .flat_map(|(n, &saga)| {
            [(saga, charge("0", &format!("order-{n}"), 10)), (saga, charge("0", &format!("order-{n}"), 10))]
        })
        .collect();
    coordinator.send(&commands).await;
    let mut replies: HashMap<SagaId, Vec<PaymentReply>> = HashMap::new();
    for _ in 0..commands.len() {
        let (saga, reply) = coordinator.next_payment_reply().await;
        replies.entry(saga).or_default().push(reply);
    }

    assert!(replies.values().all(|answers| answers.len() == 2 && answers[0] == answers[1]), "{replies:?}");
    let charged = replies.values().filter(|answers| answers[0] == PaymentReply::Charged).count();
    assert_eq!(charged, 10);
    assert_eq!(app.credit_of("0").await, 0);
    assert_eq!(app.count("SELECT count(*) AS count FROM payments WHERE state = 'charged'").await, 10);
}

#[tokio::test]
async fn a_refund_that_would_overflow_the_credit_is_dead_lettered_and_the_batch_goes_on() {
    let app = spawn_app_with_broker().await;
    app.post("/payment/batch_init/1/100").await;
    let mut coordinator = app.coordinator().await;
    let (refunded, charged) = (SagaId::new(), SagaId::new());

    coordinator.send(&[(refunded, charge("0", "order-1", 30))]).await;
    assert_eq!(coordinator.next_payment_reply().await, (refunded, PaymentReply::Charged));
    let max_credit = i64::MAX as u64;
    let (status, _) = app.post(&format!("/payment/add_funds/0/{}", max_credit - 70)).await;
    assert_eq!(status, StatusCode::OK);
    coordinator.send(&[(refunded, PaymentCommand::Refund), (charged, charge("0", "order-2", 1))]).await;

    let dead: Envelope<PaymentCommand> =
        Envelope::from_bytes(&coordinator.next_dead_letter().await).expect("the refund, as sent");
    assert_eq!((dead.saga_id, dead.body), (refunded, PaymentCommand::Refund));
    assert_eq!(coordinator.next_payment_reply().await, (charged, PaymentReply::Charged));
    assert_eq!(app.credit_of("0").await, max_credit - 1);
    assert!(app.is_paid("0", "order-1").await, "the refused refund left the charge in place");
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
