//! Bulk actions, failures by reason and the audit log, through the admin API against a real database and
//! broker: a dry run changes nothing, a real run reports per saga and is audited once as a whole and once per
//! saga, the sagas' history names the operator, and bad input is a 400 that changes nothing.

mod support;

use serde_json::{json, Value};
use shared_contracts::{CoordinatorMessage, FailureReason, PaymentReply, SagaId, StockReply};
use support::{request, start, Harness};

/// Starts the checkout of `order_id`; it stays executing, as nobody answers its commands.
async fn executing(h: &Harness, order_id: &str) -> SagaId {
    let saga = SagaId::new();
    h.send(saga, CoordinatorMessage::StartCheckout(request(order_id))).await;
    h.get_until(&format!("/admin/sagas/{saga}"), |body| body["saga"]["status"] == "executing").await;
    saga
}

/// A checkout of `order_id` that failed because its stock was short.
async fn out_of_stock(h: &Harness, order_id: &str) -> SagaId {
    let saga = executing(h, order_id).await;
    let reason = FailureReason::OutOfStock { item_id: "a".into() };
    h.send(saga, CoordinatorMessage::Stock(StockReply::Rejected { reason })).await;
    let reason = FailureReason::InsufficientCredit { user_id: "user-1".into() };
    h.send(saga, CoordinatorMessage::Payment(PaymentReply::Rejected { reason })).await;
    h.get_until(&format!("/admin/sagas/{saga}"), |body| body["saga"]["status"] == "failed").await;
    saga
}

/// `POST path` with a JSON `body`, as operator alice.
async fn post_json(h: &Harness, path: &str, body: &Value) -> (u16, Value) {
    let response = h
        .http
        .post(format!("{}{path}", h.admin))
        .header("x-operator", "alice")
        .json(body)
        .send()
        .await
        .expect("the coordinator answers");
    (response.status().as_u16(), response.json().await.expect("a JSON body"))
}

async fn status_of(h: &Harness, saga: SagaId) -> Value {
    let (status, body) = h.get(&format!("/admin/sagas/{saga}")).await;
    assert_eq!(status, 200, "{body}");
    body["saga"]["status"].clone()
}

fn ids(list: &Value, field: &str) -> Vec<String> {
    let list = list.as_array().unwrap_or_else(|| panic!("not a list: {list}"));
    list.iter().map(|entry| entry[field].as_str().expect("an ID").to_owned()).collect()
}

#[tokio::test]
async fn a_dry_run_shows_how_many_and_which_and_changes_nothing() {
    let h = start(None).await;
    let sagas = [executing(&h, "order-1").await, executing(&h, "order-2").await, executing(&h, "order-3").await];

    let (status, body) = post_json(
        &h,
        "/admin/sagas/bulk/abort",
        &json!({"filter": {"status": "executing"}, "dry_run": true, "limit": 2}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["action"].clone(), body["dry_run"].clone(), body["matched"].clone()),
        (json!("bulk_abort"), json!(true), json!(3))
    );
    // Oldest first, at most the limit, each with its status.
    let expected: Vec<String> = sagas[..2].iter().map(SagaId::to_string).collect();
    assert_eq!(ids(&body["sagas"], "saga_id"), expected);
    assert!(body["sagas"].as_array().unwrap().iter().all(|saga| saga["status"] == "executing"), "{body}");
    assert_eq!(body["results"], json!([]));

    for saga in sagas {
        assert_eq!(status_of(&h, saga).await, "executing");
    }
    let (_, audit) = h.get("/admin/audit").await;
    assert_eq!(audit["total"], 0, "a dry run was audited: {audit}");
}

#[tokio::test]
async fn a_bulk_abort_reports_per_saga_and_is_audited_and_in_the_history() {
    let h = start(None).await;
    let stuck = [executing(&h, "order-1").await, executing(&h, "order-2").await];
    let failed = out_of_stock(&h, "order-3").await;

    // Stuck for zero seconds matches every unfinished saga, and only those.
    let (status, body) =
        post_json(&h, "/admin/sagas/bulk/abort", &json!({"filter": {"stuck_for": 0}, "dry_run": false})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["matched"], 2, "{body}");
    let expected: Vec<String> = stuck.iter().map(SagaId::to_string).collect();
    assert_eq!(ids(&body["results"], "saga_id"), expected);
    assert!(body["results"].as_array().unwrap().iter().all(|r| r["status"] == "compensating"), "{body}");
    for saga in stuck {
        assert_eq!(status_of(&h, saga).await, "compensating");
    }
    assert_eq!(status_of(&h, failed).await, "failed");

    // One row for the bulk action, listing its sagas, and one per saga.
    let (status, audit) = h.get("/admin/audit?action=bulk_abort").await;
    assert_eq!(status, 200, "{audit}");
    assert_eq!(audit["total"], 1, "{audit}");
    let row = &audit["entries"][0];
    assert_eq!((row["actor"].clone(), row["credential"].clone()), (json!("alice"), json!("loopback")));
    let mut listed: Vec<String> = serde_json::from_value(row["saga_ids"].clone()).unwrap();
    let mut expected = expected.clone();
    listed.sort();
    expected.sort();
    assert_eq!(listed, expected);
    assert_eq!(row["details"]["filter"], json!({"stuck_for": 0}));
    assert_eq!(row["result"]["done"], 2);
    let (_, per_saga) = h.get(&format!("/admin/audit?saga_id={}&action=abort", stuck[0])).await;
    assert_eq!(per_saga["total"], 1, "{per_saga}");
    assert_eq!(per_saga["entries"][0]["result"]["state"]["state"], "compensating");
    assert_eq!(per_saga["entries"][0]["details"], json!({"bulk": "bulk_abort"}));
    let (_, everything) = h.get("/admin/audit?actor=alice").await;
    assert_eq!(everything["total"], 3, "{everything}");
    assert_eq!(everything["entries"][0]["action"], "bulk_abort", "newest first: {everything}");

    // The saga's history tells the operator's abort from the rest.
    let (_, saga) = h.get(&format!("/admin/sagas/{}", stuck[0])).await;
    let actors: Vec<Value> = saga["history"].as_array().unwrap().iter().map(|line| line["actor"].clone()).collect();
    assert_eq!(actors, [Value::Null, json!({"name": "alice", "credential": "loopback"})], "{saga}");
}

#[tokio::test]
async fn a_single_action_is_audited_done_or_refused() {
    let h = start(None).await;
    let saga = executing(&h, "order-1").await;
    let (status, _) = post_json(&h, &format!("/admin/sagas/{saga}/retry"), &json!({})).await;
    assert_eq!(status, 200);
    let failed = out_of_stock(&h, "order-2").await;
    let (status, _) = post_json(&h, &format!("/admin/sagas/{failed}/abort"), &json!({})).await;
    assert_eq!(status, 409);

    let (_, audit) = h.get("/admin/audit").await;
    assert_eq!(audit["total"], 2, "{audit}");
    let [refused, retried] = [&audit["entries"][0], &audit["entries"][1]];
    assert_eq!((refused["action"].clone(), retried["action"].clone()), (json!("abort"), json!("retry")));
    assert_eq!(refused["saga_ids"], json!([failed.to_string()]));
    assert!(refused["result"]["refused"].as_str().is_some_and(|r| r.contains("already failed")), "{refused}");
    assert_eq!(retried["result"]["state"]["state"], "executing");

    // The retry is the operator's; the timer's retries stay no one's.
    let (_, body) = h.get(&format!("/admin/sagas/{saga}")).await;
    let last = body["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!((last["event"]["event"].clone(), last["actor"]["name"].clone()), (json!("retry_due"), json!("alice")));
}

#[tokio::test]
async fn a_bulk_retry_by_order_touches_only_that_order() {
    let h = start(None).await;
    let mine = executing(&h, "order-mine").await;
    let _other = executing(&h, "order-other").await;
    let (status, body) =
        post_json(&h, "/admin/sagas/bulk/retry", &json!({"filter": {"order_id": "order-mine"}, "dry_run": false}))
            .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["matched"], 1);
    assert_eq!(body["results"], json!([{"saga_id": mine.to_string(), "status": "executing"}]));
    let (_, audit) = h.get("/admin/audit?action=retry").await;
    assert_eq!(audit["total"], 1, "{audit}");
    assert_eq!(audit["entries"][0]["saga_ids"], json!([mine.to_string()]));
}

#[tokio::test]
async fn an_empty_filter_and_bad_input_are_refused_and_change_nothing() {
    let h = start(None).await;
    let saga = executing(&h, "order-1").await;
    let bad = [
        (json!({"filter": {}, "dry_run": false}), "the filter is empty"),
        (json!({"filter": {"stuck_for": 99_999_999_999_999_u64}, "dry_run": false}), "stuck_for"),
        (json!({"filter": {"stuck_for": -5}, "dry_run": false}), "stuck_for"),
        (json!({"filter": {"status": "sleeping"}, "dry_run": false}), "sleeping"),
        (json!({"filter": {"reason": "DROP TABLE"}, "dry_run": false}), "reason"),
        (json!({"filter": {"user_id": ""}, "dry_run": false}), "user_id"),
        (json!({"filter": {"created_after": "last week"}, "dry_run": false}), "created_after"),
        (json!({"filter": {"status": "executing"}, "dry_run": false, "limit": 0}), "limit"),
        (json!({"filter": {"status": "executing"}, "dry_run": false, "limit": 1001}), "limit"),
        (json!({"filter": {"status": "executing"}}), "dry_run"),
        (json!({"filter": {"status": "executing"}, "dry_run": false, "colour": "red"}), "colour"),
        (json!({"filter": {"colour": "red"}, "dry_run": false}), "colour"),
        (json!("abort everything"), "malformed request body"),
    ];
    for (body, named) in bad {
        for action in ["retry", "abort"] {
            let (status, answer) = post_json(&h, &format!("/admin/sagas/bulk/{action}"), &body).await;
            assert_eq!(status, 400, "{body} → {answer}");
            let error = answer["error"].as_str().unwrap_or_else(|| panic!("no error body: {answer}"));
            assert!(error.contains(named), "{body}: {error:?} does not name {named}");
        }
    }
    let response = h.http.post(format!("{}/admin/sagas/bulk/abort", h.admin)).body("{").send().await.unwrap();
    assert_eq!(response.status(), 400);

    assert_eq!(status_of(&h, saga).await, "executing");
    let (_, audit) = h.get("/admin/audit").await;
    assert_eq!(audit["total"], 0, "{audit}");

    for query in ["saga_id=nope", "limit=0", "limit=1001", "offset=-1", "limit=99999999999999999999", "actor="] {
        let (status, answer) = h.get(&format!("/admin/audit?{query}")).await;
        assert_eq!(status, 400, "{query} → {answer}");
        assert!(answer["error"].is_string(), "{answer}");
    }
    let (status, answer) = h.get("/admin/sagas/bulk/abort").await;
    assert_eq!(status, 405, "{answer}");
}

#[tokio::test]
async fn failures_are_grouped_by_status_and_reason_with_the_filter_that_shows_them() {
    let h = start(None).await;
    let first = out_of_stock(&h, "order-1").await;
    out_of_stock(&h, "order-2").await;
    let aborted = executing(&h, "order-3").await;
    let (status, _) = h.post(&format!("/admin/sagas/{aborted}/abort")).await;
    assert_eq!(status, 200);
    h.send(aborted, CoordinatorMessage::Stock(StockReply::Released)).await;
    h.send(aborted, CoordinatorMessage::Payment(PaymentReply::Refunded)).await;
    h.get_until(&format!("/admin/sagas/{aborted}"), |body| body["saga"]["status"] == "failed").await;
    executing(&h, "order-4").await;

    let (status, body) = h.get("/admin/failures").await;
    assert_eq!(status, 200, "{body}");
    let groups = body["failures"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{body}");
    let summary: Vec<(Value, Value, Value, Value)> = groups
        .iter()
        .map(|g| (g["status"].clone(), g["reason"].clone(), g["count"].clone(), g["sagas"].clone()))
        .collect();
    assert_eq!(
        summary,
        [
            (json!("failed"), json!("out_of_stock"), json!(2), json!("/admin/sagas?status=failed&reason=out_of_stock")),
            (json!("failed"), json!("aborted"), json!(1), json!("/admin/sagas?status=failed&reason=aborted")),
        ]
    );
    assert!(groups[0]["oldest"].as_str() <= groups[0]["newest"].as_str(), "{body}");

    // The group's filter is also a bulk filter.
    let (_, dry) = post_json(
        &h,
        "/admin/sagas/bulk/retry",
        &json!({"filter": {"status": "failed", "reason": "out_of_stock"}, "dry_run": true}),
    )
    .await;
    assert_eq!(dry["matched"], 2, "{dry}");
    assert_eq!(dry["sagas"][0]["saga_id"], first.to_string());
}

#[tokio::test]
async fn the_bulk_page_refuses_other_origins_and_bad_forms_and_changes_nothing() {
    let h = start(None).await;
    let saga = executing(&h, "order-1").await;
    let url = format!("{}/admin/ui/bulk/run", h.admin);
    let form = [("action", "abort"), ("stuck_for", "0"), ("confirm", "yes")];

    let response = h.http.post(&url).header("origin", "http://evil.example").form(&form).send().await.unwrap();
    assert_eq!(response.status(), 403);
    assert!(response.text().await.unwrap().contains("comes from another site"));

    for (form, named) in [
        (vec![("action", "abort"), ("confirm", "yes")], "the filter is empty"),
        (vec![("action", "abort"), ("stuck_for", "99999999999999"), ("confirm", "yes")], "stuck_for"),
        (vec![("stuck_for", "0"), ("confirm", "yes")], "choose retry or abort"),
        (vec![("action", "abort"), ("limit", "5000"), ("stuck_for", "0")], "limit"),
    ] {
        let response = h.http.post(&url).form(&form).send().await.unwrap();
        assert_eq!(response.status(), 400, "{form:?}");
        let page = response.text().await.unwrap();
        assert!(page.contains(named), "{form:?}: {page}");
    }
    let response = h.http.post(&url).header("content-type", "text/plain").body("x").send().await.unwrap();
    assert_eq!(response.status(), 400);

    assert_eq!(status_of(&h, saga).await, "executing");
    let (_, audit) = h.get("/admin/audit").await;
    assert_eq!(audit["total"], 0, "{audit}");

    // From the page itself, the same form does it.
    let same = h.admin.clone();
    let response = h.http.post(&url).header("origin", same).form(&form).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("1 done, 0 refused."));
    assert_eq!(status_of(&h, saga).await, "compensating");
}
