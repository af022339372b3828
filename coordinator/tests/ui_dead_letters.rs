//! The dead-letter page in a real browser: an operator sees the waiting messages decoded, replays one (it is
//! back in the queue it died in, the others stay) and discards another. With `SCREENSHOTS=1` the page is saved
//! to docs/img/console-dead-letters.png.

mod support;

use futures::FutureExt as _;
use serde_json::json;
use shared_contracts::{queues, CheckoutOutcome, Envelope, SagaId, StockCommand};
use support::{browser::Browser, request, start, Harness, WAIT};

async fn operator_replays_and_discards_dead_letters(h: &Harness, browser: &Browser) {
    let stock_saga = SagaId::new();
    let reserve = Envelope::new(stock_saga, StockCommand::Reserve { items: request("order-3").items }).to_bytes();
    h.plant_dead_letter(reserve.clone(), Some(queues::STOCK_COMMANDS), Some("m-reserve")).await;
    let outcome = Envelope::new(SagaId::new(), CheckoutOutcome::Paid { order_id: "order-4".into() }).to_bytes();
    h.plant_dead_letter(outcome, Some(queues::ORDER_OUTCOMES), Some("m-outcome")).await;
    h.plant_dead_letter(b"not json".to_vec(), None, Some("m-garbage")).await;

    browser.open(&format!("{}/admin/ui/dead-letters", h.admin)).await;
    browser.text_is("tr[data-id='m-reserve'] td:nth-child(2)", "reserve").await;
    browser.text_is("tr[data-id='m-reserve'] td:nth-child(3)", &stock_saga.to_string()).await;
    browser.text_is("tr[data-id='m-reserve'] td:nth-child(4)", queues::STOCK_COMMANDS).await;
    browser.text_is("tr[data-id='m-reserve'] td:nth-child(5)", "rejected").await;
    if std::env::var("SCREENSHOTS").is_ok_and(|v| v == "1") {
        browser.resize(1280, 900).await;
        browser.screenshot("docs/img/console-dead-letters.png").await;
    }

    browser.click("tr[data-id='m-reserve'] button.replay").await;
    browser.text_when("#flash", |text| text.starts_with("Replayed m-reserve")).await;
    assert_eq!(h.broker.next(queues::STOCK_COMMANDS, WAIT).await.unwrap(), reserve, "back in its queue");
    let left = browser
        .session_call(reqwest::Method::POST, "/elements", json!({"using": "css selector", "value": "tr.dead-letter"}))
        .await;
    assert_eq!(left.as_array().map(Vec::len), Some(2), "the others stay");

    browser.click("tr[data-id='m-garbage'] button.replay").await;
    browser.text_when("#flash", |text| text.contains("names no work queue")).await;
    browser.click("tr[data-id='m-garbage'] button.discard").await;
    browser.text_when("#flash", |text| text == "Discarded m-garbage").await;
    let listed = h.get("/admin/dead-letters").await.1;
    let ids: Vec<&str> = listed["messages"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["m-outcome"]);
}

#[tokio::test]
async fn an_operator_replays_and_discards_dead_letters_in_a_browser() {
    let h = start(None).await;
    let browser = Browser::launch().await;
    let outcome =
        std::panic::AssertUnwindSafe(operator_replays_and_discards_dead_letters(&h, &browser)).catch_unwind().await;
    browser.quit().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

#[tokio::test]
async fn the_buttons_refuse_forms_from_another_site_and_change_nothing() {
    let h = start(None).await;
    h.plant_dead_letter(b"kept".to_vec(), Some(queues::STOCK_COMMANDS), Some("m-kept")).await;
    for path in [
        "/admin/ui/dead-letters/m-kept/discard",
        "/admin/ui/dead-letters/m-kept/replay",
        "/admin/ui/dead-letters/replay",
    ] {
        let response =
            h.http.post(format!("{}{path}", h.admin)).header("Origin", "http://evil.example").send().await.unwrap();
        assert_eq!(response.status(), 403, "{path}");
    }
    let response = h.http.get(format!("{}/admin/ui/dead-letters?limit=0", h.admin)).send().await.unwrap();
    assert_eq!(response.status(), 400);
    let listed =
        h.get_until("/admin/dead-letters", |body| body["messages"].as_array().is_some_and(|m| m.len() == 1)).await;
    assert_eq!(listed["messages"][0]["id"], "m-kept");
}
