//! The bulk action, failures and audit pages, end to end in a real headless Chromium: an operator aborts a batch
//! of stuck sagas through a dry run and a confirmation, and finds it in the audit log. With `SCREENSHOTS=1` the
//! preview and the audit log are saved into `docs/img` for the operator's guide.

mod support;

use futures::FutureExt;
use serde_json::json;
use shared_contracts::{CoordinatorMessage, FailureReason, PaymentReply, SagaId, StockReply};
use support::{browser::Browser, request, start, Harness};

async fn executing(h: &Harness, order_id: &str) -> SagaId {
    let saga = SagaId::new();
    h.send(saga, CoordinatorMessage::StartCheckout(request(order_id))).await;
    h.get_until(&format!("/admin/sagas/{saga}"), |body| body["saga"]["status"] == "executing").await;
    saga
}

async fn screenshot(browser: &Browser, name: &str) {
    if std::env::var("SCREENSHOTS").as_deref() == Ok("1") {
        browser.session_call(reqwest::Method::POST, "/window/rect", json!({"width": 1280, "height": 900})).await;
        browser.screenshot(&format!("docs/img/{name}")).await;
    }
}

async fn operator_aborts_a_batch_of_stuck_sagas(h: &Harness, browser: &Browser) {
    let stuck = [executing(h, "order-1").await, executing(h, "order-2").await, executing(h, "order-3").await];
    let failed = executing(h, "order-4").await;
    let reason = FailureReason::OutOfStock { item_id: "a".into() };
    h.send(failed, CoordinatorMessage::Stock(StockReply::Rejected { reason })).await;
    let reason = FailureReason::InsufficientCredit { user_id: "user-1".into() };
    h.send(failed, CoordinatorMessage::Payment(PaymentReply::Rejected { reason })).await;
    h.get_until(&format!("/admin/sagas/{failed}"), |body| body["saga"]["status"] == "failed").await;

    browser.open(&format!("{}/admin/ui", h.admin)).await;
    browser.click("nav a[href='/admin/ui/failures']").await;
    let failures = browser.text_when("#failures", |text| text.contains("out_of_stock")).await;
    assert!(failures.contains("failed"), "{failures}");
    browser.click("#failures a[href='/admin/ui?status=failed&reason=out_of_stock']").await;
    assert!(browser.current_url().await.ends_with("/admin/ui?status=failed&reason=out_of_stock"));

    browser.open(&format!("{}/admin/ui/bulk", h.admin)).await;
    browser.click("#action-abort").await;
    browser.click("#preview").await;
    browser.text_when("#flash", |text| text.contains("the filter is empty")).await;

    browser.click("#action-abort").await;
    browser.type_into("#f-stuck_for", "0").await;
    browser.click("#preview").await;
    browser.text_is("#matched", "3 sagas match; 3 would be touched (oldest first).").await;
    let preview = browser.text_when("#preview-sagas", |text| text.contains(&stuck[2].to_string())).await;
    assert!(stuck.iter().all(|saga| preview.contains(&saga.to_string())), "{preview}");
    assert!(!preview.contains(&failed.to_string()), "a finished saga is in the preview: {preview}");
    screenshot(browser, "console-bulk.png").await;
    for saga in stuck {
        let (_, body) = h.get(&format!("/admin/sagas/{saga}")).await;
        assert_eq!(body["saga"]["status"], "executing", "the dry run changed {saga}");
    }

    browser.click("#confirm").await;
    browser.text_is("#flash", "3 done, 0 refused.").await;
    let results = browser.text_when("#results", |text| text.contains(&stuck[0].to_string())).await;
    assert_eq!(results.matches("now compensating").count(), 3, "{results}");
    for saga in stuck {
        let (_, body) = h.get(&format!("/admin/sagas/{saga}")).await;
        assert_eq!(body["saga"]["status"], "compensating");
    }

    browser.click("a[href='/admin/ui/audit']").await;
    let audit = browser.text_when("#audit", |text| text.contains("bulk_abort")).await;
    assert!(audit.contains("loopback") && audit.contains("3 done, 0 refused"), "{audit}");
    assert_eq!(audit.matches("now compensating").count(), 3, "{audit}");
    for saga in stuck {
        browser.find(&format!("#audit a[href='/admin/ui/sagas/{saga}']")).await;
    }
    browser.text_is("#total", "4 actions; showing 4 from 1.").await;
    screenshot(browser, "console-audit.png").await;
}

#[tokio::test]
async fn an_operator_aborts_a_batch_of_stuck_sagas_in_a_browser() {
    let h = start(None).await;
    let browser = Browser::launch().await;
    let outcome =
        std::panic::AssertUnwindSafe(operator_aborts_a_batch_of_stuck_sagas(&h, &browser)).catch_unwind().await;
    browser.quit().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
