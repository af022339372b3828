//! The saga worker, driven as the coordinator drives it: commands on the payment queue, replies on the
//! coordinator's queue, and the effects checked through the REST API.

use std::collections::HashMap;

use reqwest::StatusCode;
use serde_json::json;
use shared_contracts::{Envelope, FailureReason, PaymentCommand, PaymentReply, SagaId};

use crate::helpers::{charge, spawn_app_with_broker, spawn_app_with_parallel_batches, PaymentReplies};

/// The most a user may hold in credit and in payments that may still be refunded, together, as documented.
const MAX_CREDIT: u64 = i64::MAX as u64;

#[tokio::test]
async fn a_charge_takes_the_credit_and_is_answered_charged() {
    let app = spawn_app_with_broker().await;
    app.given_user("0", 100).await;
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
    app.given_user("0", 100).await;
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
    app.given_user("0", 100).await;
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
    app.given_user("0", 100).await;
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
async fn a_saga_charge_leaves_room_for_its_refund() {
    let app = spawn_app_with_broker().await;
    app.given_user("0", 100).await;
    let mut coordinator = app.coordinator().await;
    let saga = SagaId::new();
    coordinator.send(&[(saga, charge("0", "order-1", 30))]).await;
    assert_eq!(coordinator.next_payment_reply().await, (saga, PaymentReply::Charged));

    let (status, body) = app.post(&format!("/payment/add_funds/0/{}", MAX_CREDIT - 70)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = app.post(&format!("/payment/add_funds/0/{}", MAX_CREDIT - 100)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    coordinator.send(&[(saga, PaymentCommand::Refund)]).await;
    assert_eq!(coordinator.next_payment_reply().await, (saga, PaymentReply::Refunded));
    assert_eq!(app.credit_of("0").await, MAX_CREDIT);
}

#[tokio::test]
async fn a_refund_that_cannot_apply_is_answered_so_and_dead_lettered_while_the_rest_of_its_batch_is_applied() {
    let app = spawn_app_with_broker().await;
    app.given_user("0", 100).await;
    let mut coordinator = app.coordinator().await;
    let (stuck, charged, early_refund) = (SagaId::new(), SagaId::new(), SagaId::new());
    coordinator.send(&[(stuck, charge("0", "order-1", 30))]).await;
    assert_eq!(coordinator.next_payment_reply().await, (stuck, PaymentReply::Charged));
    // Only an edit behind the service's back can fill a credit beyond the room its refunds need.
    app.execute(&format!("UPDATE users SET credit = {} WHERE id = '0'", MAX_CREDIT - 10)).await;

    coordinator
        .send(&[
            (stuck, PaymentCommand::Refund),
            (charged, charge("0", "order-2", 1)),
            (early_refund, PaymentCommand::Refund),
        ])
        .await;

    let problem = format!(
        "user 0 has credit {} and 30 that may be refunded, adding 30 would exceed the maximum of {MAX_CREDIT} for \
         the two together",
        MAX_CREDIT - 10
    );
    assert_eq!(coordinator.next_payment_reply().await, (stuck, PaymentReply::CannotApply { problem }));
    assert_eq!(coordinator.next_payment_reply().await, (charged, PaymentReply::Charged));
    assert_eq!(coordinator.next_payment_reply().await, (early_refund, PaymentReply::Refunded));
    let dead: Envelope<PaymentCommand> =
        Envelope::from_bytes(&coordinator.next_dead_letter().await).expect("the refund, as sent");
    assert_eq!((dead.saga_id, dead.body), (stuck, PaymentCommand::Refund));
    assert_eq!(app.credit_of("0").await, MAX_CREDIT - 11);
    assert!(app.is_paid("0", "order-1").await, "the refused refund left the charge in place");
}

#[tokio::test]
async fn a_refund_to_a_payer_who_is_gone_cannot_apply() {
    let app = spawn_app_with_broker().await;
    app.given_user("0", 100).await;
    let mut coordinator = app.coordinator().await;
    let saga = SagaId::new();
    coordinator.send(&[(saga, charge("0", "order-1", 30))]).await;
    assert_eq!(coordinator.next_payment_reply().await, (saga, PaymentReply::Charged));
    app.execute("DELETE FROM users WHERE id = '0'").await;

    coordinator.send(&[(saga, PaymentCommand::Refund)]).await;

    let problem = "user 0 of a charged payment no longer exists".to_owned();
    assert_eq!(coordinator.next_payment_reply().await, (saga, PaymentReply::CannotApply { problem }));
    let dead: Envelope<PaymentCommand> =
        Envelope::from_bytes(&coordinator.next_dead_letter().await).expect("a command");
    assert_eq!(dead.saga_id, saga);
}

#[tokio::test]
async fn a_refund_after_the_charge_restores_the_credit() {
    let app = spawn_app_with_broker().await;
    app.given_user("0", 100).await;
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
    app.given_user("0", 100).await;
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
    app.given_user("0", 100).await;
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
    app.given_user("0", 100).await;
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
    app.given_user("0", 100).await;
    let mut coordinator = app.coordinator().await;
    let saga = SagaId::new();

    coordinator.send_raw(b"{not a command").await;
    coordinator.send(&[(saga, charge("0", "order-1", 30))]).await;
    assert_eq!(coordinator.next_dead_letter().await, b"{not a command".to_vec());
    assert_eq!(coordinator.next_payment_reply().await, (saga, PaymentReply::Charged));
    assert_eq!(app.credit_of("0").await, 70);
}

#[tokio::test]
async fn a_rest_cancel_of_a_saga_charge_refunds_nothing_itself_and_is_unavailable_without_order_svc() {
    let app = spawn_app_with_broker().await;
    app.given_user("0", 100).await;
    let mut coordinator = app.coordinator().await;
    let saga = SagaId::new();

    coordinator.send(&[(saga, charge("0", "order-1", 30))]).await;
    assert_eq!(coordinator.next_payment_reply().await, (saga, PaymentReply::Charged));
    let (status, body) = app.post("/payment/cancel/0/order-1").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body["error"].as_str().expect("an error").contains("order service"), "{body}");
    assert_eq!(app.credit_of("0").await, 70);
    assert!(app.is_paid("0", "order-1").await);

    coordinator.send(&[(saga, PaymentCommand::Refund)]).await;
    assert_eq!(coordinator.next_payment_reply().await, (saga, PaymentReply::Refunded));
    assert_eq!(app.credit_of("0").await, 100);
    let (status, body) = app.post("/payment/cancel/0/order-1").await;
    assert_eq!((status, body), (StatusCode::OK, json!({"done": true, "refunded": 0})));
}
