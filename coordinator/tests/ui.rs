//! The operator pages, end to end: a real headless Chromium, driven over WebDriver by chromedriver, reads the
//! overview, searches, opens a saga and presses Abort; the broker then sees the compensation. Without Chromium
//! the test fails and says how to get it.

mod support;

use futures::FutureExt;
use serde_json::json;
use shared_contracts::{
    queues, CoordinatorMessage, Envelope, PaymentCommand, PaymentReply, SagaId, StockCommand, StockReply,
};
use support::{browser::Browser, request, start, Harness, WAIT};

/// A saga with its stock reserved and its payment still unanswered.
async fn saga_half_way(h: &Harness, order_id: &str) -> SagaId {
    let saga = SagaId::new();
    h.send(saga, CoordinatorMessage::StartCheckout(request(order_id))).await;
    let _: Envelope<StockCommand> = h.broker.next_envelope(queues::STOCK_COMMANDS, WAIT).await.unwrap();
    let _: Envelope<PaymentCommand> = h.broker.next_envelope(queues::PAYMENT_COMMANDS, WAIT).await.unwrap();
    h.send(saga, CoordinatorMessage::Stock(StockReply::Reserved)).await;
    h.get_until(&format!("/admin/sagas/{saga}"), |body| body["history"].as_array().is_some_and(|l| l.len() == 2)).await;
    saga
}

async fn operator_aborts_a_saga_from_its_page(h: &Harness, browser: &Browser) {
    let saga = saga_half_way(h, "order-ui").await;

    browser.open(&format!("{}/admin/ui?stuck=0", h.admin)).await;
    browser.text_is("#count-executing", "1").await;
    browser.text_is("#count-failed", "0").await;
    browser.text_when("#stuck", |text| text.contains(&saga.to_string())).await;

    browser.type_into("input[name=q]", "order-ui").await;
    browser.click("#search").await;
    let results = browser.text_when("#results", |text| text.contains(&saga.to_string())).await;
    assert!(results.contains("order-ui") && results.contains("executing"), "{results}");
    browser.click(&format!("#results a[href='/admin/ui/sagas/{saga}']")).await;

    browser.text_is("#status", "executing").await;
    let timeline = browser.text_when("#timeline", |text| text.contains("start")).await;
    assert!(timeline.contains("start") && timeline.contains("reserve_stock, charge_payment"), "{timeline}");
    browser.click("#abort").await;

    browser.text_is("#status", "compensating").await;
    browser.text_is("#flash", "Abort done: the saga is now compensating").await;
    // The timeline says who aborted it: the page's operator, let in from loopback, not the saga itself.
    let timeline = browser.text_when("#timeline", |text| text.contains("abort")).await;
    let abort_line = timeline.lines().find(|line| line.contains("abort")).expect("an abort line");
    assert!(abort_line.contains("operator anonymous (loopback)"), "{timeline}");
    assert!(timeline.lines().find(|line| line.contains("start")).is_some_and(|l| l.contains("system")), "{timeline}");
    assert!(browser.current_url().await.starts_with(&format!("{}/admin/ui/sagas/{saga}?flash=", h.admin)));
    let release: Envelope<StockCommand> = h.broker.next_envelope(queues::STOCK_COMMANDS, WAIT).await.unwrap();
    assert_eq!((release.saga_id, release.body), (saga, StockCommand::Release));
    let refund: Envelope<PaymentCommand> = h.broker.next_envelope(queues::PAYMENT_COMMANDS, WAIT).await.unwrap();
    assert_eq!(refund.body, PaymentCommand::Refund);

    // Once the saga is over, a stale page's Abort is a message on the page, not an error page.
    h.send(saga, CoordinatorMessage::Stock(StockReply::Released)).await;
    h.send(saga, CoordinatorMessage::Payment(PaymentReply::Refunded)).await;
    h.get_until(&format!("/admin/sagas/{saga}"), |body| body["saga"]["status"] == "failed").await;
    browser.click("#abort").await;
    browser
        .text_is("#flash", &format!("Abort refused: saga {saga} is already failed, so there is nothing to abort"))
        .await;
    browser.text_is("#status", "failed").await;
    let buttons = browser
        .session_call(reqwest::Method::POST, "/elements", json!({"using": "css selector", "value": "#abort"}))
        .await;
    assert_eq!(buttons, json!([]), "a finished saga still offers Abort");
}

#[tokio::test]
async fn an_operator_finds_a_saga_and_aborts_it_in_a_browser() {
    let h = start(None).await;
    let browser = Browser::launch().await;
    let outcome = std::panic::AssertUnwindSafe(operator_aborts_a_saga_from_its_page(&h, &browser)).catch_unwind().await;
    browser.quit().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

#[tokio::test]
async fn pages_escape_what_clients_wrote() {
    let h = start(None).await;
    let saga = SagaId::new();
    h.send(saga, CoordinatorMessage::StartCheckout(request("<b>order</b>&co"))).await;
    h.get_until(&format!("/admin/sagas/{saga}"), |_| true).await;
    for path in [format!("/admin/ui/sagas/{saga}"), "/admin/ui?q=%3Cb%3Eorder%3C%2Fb%3E%26co&stuck=0".to_owned()] {
        let html = h.http.get(format!("{}{path}", h.admin)).send().await.unwrap().text().await.unwrap();
        assert!(html.contains("&lt;b&gt;order&lt;/b&gt;&amp;co"), "{path}: {html}");
        assert!(!html.contains("<b>order"), "{path} shows raw HTML");
    }
}

#[tokio::test]
async fn pages_answer_bad_input_with_an_error_page() {
    let h = start(None).await;
    for (path, status) in [
        ("/admin/ui/sagas/not-a-uuid", 400),
        ("/admin/ui/sagas/6f1c1d1e-8a40-4c43-9d8e-5f3f2b7d9a10", 404),
        ("/admin/ui?stuck=-1", 400),
    ] {
        let response = h.http.get(format!("{}{path}", h.admin)).send().await.unwrap();
        assert_eq!(response.status(), status, "{path}");
        assert!(response.text().await.unwrap().contains(&format!("<h1>{status} ")), "{path}");
    }
    let saga = saga_half_way(&h, "order-x").await;
    let forged = h
        .http
        .post(format!("{}/admin/ui/sagas/{saga}/abort", h.admin))
        .header("Origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let (_, shown) = h.get(&format!("/admin/sagas/{saga}")).await;
    assert_eq!(shown["saga"]["status"], "executing", "a cross-site form aborted the saga");
    let retried = h.http.post(format!("{}/admin/ui/sagas/{saga}/retry", h.admin)).send().await.unwrap();
    assert_eq!(retried.status(), 303);
    let location = retried.headers()["location"].to_str().unwrap();
    assert_eq!(
        location,
        format!("/admin/ui/sagas/{saga}?flash=Retry%20done%3A%20the%20saga%20is%20now%20executing&kind=ok")
    );
}

#[tokio::test]
async fn with_a_token_the_pages_take_it_from_the_login_cookie() {
    let h = start(Some("s3cret")).await;
    let overview = format!("{}/admin/ui", h.admin);
    let login = format!("{}/admin/ui/login", h.admin);
    assert_eq!(h.http.get(&overview).send().await.unwrap().status(), 401);
    let wrong = h.http.post(&login).form(&[("token", "nope")]).send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());

    let login = h.http.post(&login).form(&[("token", "s3cret")]).send().await.unwrap();
    assert_eq!(login.status(), 303);
    assert_eq!(login.headers()["location"], "/admin/ui");
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert_eq!(cookie, "admin_token=s3cret; Path=/admin; HttpOnly; SameSite=Strict");
    let page = h.http.get(&overview).header("Cookie", "admin_token=s3cret").send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("<h1>Checkout sagas</h1>"));
    let bearer = h.http.get(&overview).bearer_auth("s3cret").send().await.unwrap();
    assert_eq!(bearer.status(), 200);
    // The cookie opens the pages only, not the JSON API.
    let api = h.http.get(format!("{}/admin/stats", h.admin)).header("Cookie", "admin_token=s3cret").send().await;
    assert_eq!(api.unwrap().status(), 401);
}
