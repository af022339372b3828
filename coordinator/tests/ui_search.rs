//! The operator pages end to end in headless Chromium: among sagas that completed, failed and are still under
//! way, an operator finds a stuck one by filtering the overview's list, opens it, sees its state diagram with
//! the current state marked, and retries it; the broker then sees the re-sent commands; once the saga fails, its
//! page draws the path it took. With `SCREENSHOTS=1` the test also saves the overview and that saga page into
//! `docs/img/` for the operator's guide.

mod support;

use futures::FutureExt;
use shared_contracts::{
    queues, CoordinatorMessage, Envelope, FailureReason, PaymentCommand, PaymentReply, SagaId, StockReply,
};
use support::{browser::Browser, request, start, Harness, WAIT};

/// Starts a saga for `order_id`, sends it `replies`, and waits until it is in `status`.
async fn saga(h: &Harness, order_id: &str, replies: &[CoordinatorMessage], status: &str) -> SagaId {
    let saga = SagaId::new();
    h.send(saga, CoordinatorMessage::StartCheckout(request(order_id))).await;
    for reply in replies {
        h.send(saga, reply.clone()).await;
    }
    h.get_until(&format!("/admin/sagas/{saga}"), |body| body["saga"]["status"] == status).await;
    saga
}

/// What the saga loop sent so far, dropped: the test then waits for what comes after.
async fn drain(h: &Harness) {
    while h.broker.get(queues::STOCK_COMMANDS).await.unwrap().is_some() {}
    while h.broker.get(queues::PAYMENT_COMMANDS).await.unwrap().is_some() {}
}

async fn operator_finds_and_retries_a_stuck_saga(h: &Harness, browser: &Browser) {
    let paid = [CoordinatorMessage::Stock(StockReply::Reserved), CoordinatorMessage::Payment(PaymentReply::Charged)];
    for n in 0..3 {
        saga(h, &format!("order-paid-{n}"), &paid, "completed").await;
    }
    let short = FailureReason::OutOfStock { item_id: "a".into() };
    let refused = [
        CoordinatorMessage::Stock(StockReply::Rejected { reason: short.clone() }),
        CoordinatorMessage::Payment(PaymentReply::Refunded),
    ];
    saga(h, "order-short", &refused, "failed").await;
    // Stock reserved, the payment never answered: stuck, executing.
    let stuck = saga(h, "order-stuck", &[CoordinatorMessage::Stock(StockReply::Reserved)], "executing").await;
    h.get_until(&format!("/admin/sagas/{stuck}"), |body| body["history"].as_array().is_some_and(|l| l.len() == 2))
        .await;
    drain(h).await;

    browser.resize(1280, 1400).await;
    browser.open(&format!("{}/admin/ui", h.admin)).await;
    browser.text_is("#range", "1–5 of 5").await;
    browser.text_is("#count-completed", "3").await;
    let chart = browser.find("#activity").await;
    assert!(!chart.is_empty());

    browser.click("select[name=status] option[value=executing]").await;
    browser.type_into("input[name=stuck_for]", "0").await;
    browser.click("#find").await;
    browser.text_is("#range", "1–1 of 1").await;
    let list = browser.text_when("#list", |text| text.contains(&stuck.to_string())).await;
    assert!(list.contains("order-stuck") && !list.contains("order-paid"), "{list}");
    assert!(browser.current_url().await.contains("status=executing&reason=&order_id=&user_id=&stuck_for=0"));
    if std::env::var_os("SCREENSHOTS").is_some() {
        browser.open(&format!("{}/admin/ui?stuck=0", h.admin)).await;
        browser.text_is("#range", "1–5 of 5").await;
        browser.screenshot("docs/img/console-overview.png").await;
        browser.open(&format!("{}/admin/ui?status=executing&stuck_for=0#sagas", h.admin)).await;
        browser.text_is("#range", "1–1 of 1").await;
    }
    browser.click(&format!("#list a[href='/admin/ui/sagas/{stuck}']")).await;

    browser.text_is("#status", "executing").await;
    browser.text_is("#reason", "none").await;
    browser.text_when("#attempts", |text| text.starts_with("0 retries")).await;
    // The diagram: the saga is still where it started, so executing is current and no change is bold.
    let current = browser.text_when("#diagram .current", |text| text.contains("executing")).await;
    assert!(current.contains("now"), "{current}");
    let taken = browser
        .session_call(
            reqwest::Method::POST,
            "/elements",
            serde_json::json!({"using": "css selector", "value": "#diagram .taken"}),
        )
        .await;
    assert_eq!(taken, serde_json::json!([]), "a saga that never changed status shows a path");
    browser.click("#retry").await;

    browser.text_is("#flash", "Retry done: the saga is now executing").await;
    browser.text_when("#attempts", |text| text.starts_with("1 retries")).await;
    // Only the payment was unanswered, so only the charge is sent again.
    let again: Envelope<PaymentCommand> = h.broker.next_envelope(queues::PAYMENT_COMMANDS, WAIT).await.unwrap();
    assert_eq!(again.saga_id, stuck);
    assert!(matches!(again.body, PaymentCommand::Charge { .. }), "{:?}", again.body);
    assert!(h.broker.get(queues::STOCK_COMMANDS).await.unwrap().is_none(), "the answered reservation was re-sent");

    // Once it fails, the diagram shows the path it took and where it ended.
    h.send(
        stuck,
        CoordinatorMessage::Payment(PaymentReply::Rejected {
            reason: FailureReason::InsufficientCredit { user_id: "user-1".into() },
        }),
    )
    .await;
    h.send(stuck, CoordinatorMessage::Stock(StockReply::Released)).await;
    h.get_until(&format!("/admin/sagas/{stuck}"), |body| body["saga"]["status"] == "failed").await;
    browser.open(&format!("{}/admin/ui/sagas/{stuck}", h.admin)).await;
    browser.text_when("#diagram .current", |text| text.contains("failed")).await;
    browser.text_is("#reason", "user user-1 does not have enough credit").await;
    for edge in ["#edge-executing-compensating.taken", "#edge-compensating-failed.taken"] {
        browser.find(edge).await;
    }
    browser.text_is("#no-actions", "None: the saga has ended.").await;
    if std::env::var_os("SCREENSHOTS").is_some() {
        browser.screenshot("docs/img/console-saga.png").await;
    }
}

#[tokio::test]
async fn an_operator_finds_a_stuck_saga_by_filter_and_retries_it_in_a_browser() {
    let h = start(None).await;
    let browser = Browser::launch().await;
    let outcome =
        std::panic::AssertUnwindSafe(operator_finds_and_retries_a_stuck_saga(&h, &browser)).catch_unwind().await;
    browser.quit().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
