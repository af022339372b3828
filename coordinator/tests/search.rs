//! Finding sagas through `GET /admin/sagas` and reading one through `GET /admin/sagas/{id}`, against a real
//! database and broker, with this test playing order-svc, stock-svc and payment-svc: each filter, the sort and
//! its direction, paging with the total, what the page of one saga adds, and every parameter refused when wrong.

mod support;

use serde_json::Value;
use shared_contracts::{CheckoutRequest, CoordinatorMessage, FailureReason, PaymentReply, SagaId, StockReply};
use support::{request, start, Harness};

/// Five sagas, created one after the other, each for its own order.
struct Sagas {
    /// Failed: out of stock (order o1, user u1).
    out_of_stock: Value,
    /// Failed: insufficient credit (o2, u1).
    no_credit: Value,
    /// Executing, nothing answered (o3, u2).
    waiting: Value,
    /// Completed (o4, u2).
    completed: Value,
    /// Needs attention after two aborts; its reason is `aborted` (o5, u3).
    aborted: Value,
}

fn checkout(order_id: &str, user_id: &str) -> CoordinatorMessage {
    CoordinatorMessage::StartCheckout(CheckoutRequest { user_id: user_id.into(), ..request(order_id) })
}

impl Harness {
    /// Starts a saga, sends it `replies` (and operator `actions`), and waits until it is in `status`.
    async fn saga(
        &self,
        order: &str,
        user: &str,
        replies: Vec<CoordinatorMessage>,
        actions: &[&str],
        status: &str,
    ) -> Value {
        let id = SagaId::new();
        self.send(id, checkout(order, user)).await;
        self.get_until(&format!("/admin/sagas/{id}"), |body| body["saga"]["status"] == "executing").await;
        for reply in replies {
            self.send(id, reply).await;
        }
        for action in actions {
            let (code, body) = self.post(&format!("/admin/sagas/{id}/{action}")).await;
            assert_eq!(code, 200, "{action}: {body}");
        }
        self.get_until(&format!("/admin/sagas/{id}"), |body| body["saga"]["status"] == status).await["saga"].clone()
    }

    async fn five_sagas(&self) -> Sagas {
        let stock_short = FailureReason::OutOfStock { item_id: "a".into() };
        let credit_short = FailureReason::InsufficientCredit { user_id: "u1".into() };
        Sagas {
            out_of_stock: self
                .saga(
                    "o1",
                    "u1",
                    vec![
                        CoordinatorMessage::Stock(StockReply::Rejected { reason: stock_short }),
                        CoordinatorMessage::Payment(PaymentReply::Rejected { reason: credit_short.clone() }),
                    ],
                    &[],
                    "failed",
                )
                .await,
            no_credit: self
                .saga(
                    "o2",
                    "u1",
                    vec![
                        CoordinatorMessage::Payment(PaymentReply::Rejected { reason: credit_short }),
                        CoordinatorMessage::Stock(StockReply::Released),
                    ],
                    &[],
                    "failed",
                )
                .await,
            waiting: self.saga("o3", "u2", vec![], &[], "executing").await,
            completed: self
                .saga(
                    "o4",
                    "u2",
                    vec![
                        CoordinatorMessage::Stock(StockReply::Reserved),
                        CoordinatorMessage::Payment(PaymentReply::Charged),
                    ],
                    &[],
                    "completed",
                )
                .await,
            aborted: self.saga("o5", "u3", vec![], &["abort", "abort"], "needs_attention").await,
        }
    }

    /// The IDs `GET /admin/sagas?query` lists, in its order, after checking that its total is `total`.
    async fn listed(&self, query: &str, total: u64) -> Vec<String> {
        let (code, body) = self.get(&format!("/admin/sagas?{query}")).await;
        assert_eq!(code, 200, "{query}: {body}");
        assert_eq!(body["total"], total, "total of {query}: {body}");
        body["sagas"].as_array().expect("a list").iter().map(|s| s["id"].as_str().expect("an ID").to_owned()).collect()
    }
}

fn ids(sagas: &[&Value]) -> Vec<String> {
    sagas.iter().map(|s| s["id"].as_str().expect("an ID").to_owned()).collect()
}

fn at(saga: &Value, field: &str) -> String {
    let text = saga[field].as_str().expect("a timestamp");
    // In a query string, the `+` of an offset would read as a space.
    text.replace('+', "%2B")
}

#[tokio::test]
async fn each_filter_finds_exactly_its_sagas() {
    let h = start(None).await;
    let s = h.five_sagas().await;
    let newest_first = |sagas: &[&Value]| ids(sagas);

    assert_eq!(h.listed("status=failed", 2).await, newest_first(&[&s.no_credit, &s.out_of_stock]));
    assert_eq!(
        h.listed("status=failed,needs_attention", 3).await,
        newest_first(&[&s.aborted, &s.no_credit, &s.out_of_stock])
    );
    assert_eq!(h.listed("reason=out_of_stock", 1).await, newest_first(&[&s.out_of_stock]));
    assert_eq!(h.listed("reason=insufficient_credit", 1).await, newest_first(&[&s.no_credit]));
    // A saga that needs attention keeps the reason its compensation was for.
    assert_eq!(h.listed("reason=aborted", 1).await, newest_first(&[&s.aborted]));
    assert_eq!(h.listed("reason=timed_out", 0).await, newest_first(&[]));
    assert_eq!(h.listed("order_id=o3", 1).await, newest_first(&[&s.waiting]));
    assert_eq!(h.listed("user_id=u2", 2).await, newest_first(&[&s.completed, &s.waiting]));
    assert_eq!(h.listed("user_id=u1&status=failed&reason=out_of_stock", 1).await, newest_first(&[&s.out_of_stock]));

    let middle = at(&s.waiting, "created_at");
    assert_eq!(
        h.listed(&format!("created_after={middle}"), 3).await,
        newest_first(&[&s.aborted, &s.completed, &s.waiting])
    );
    assert_eq!(h.listed(&format!("created_before={middle}"), 2).await, newest_first(&[&s.no_credit, &s.out_of_stock]));
    let completed_at = at(&s.completed, "updated_at");
    assert_eq!(h.listed(&format!("updated_after={completed_at}"), 2).await, newest_first(&[&s.aborted, &s.completed]));
    assert_eq!(
        h.listed(&format!("updated_before={completed_at}&created_after={middle}"), 1).await,
        newest_first(&[&s.waiting])
    );
    // Stuck: unfinished and unchanged for that long. The saga that needs attention is terminal.
    assert_eq!(h.listed("stuck_for=0", 1).await, newest_first(&[&s.waiting]));
    assert_eq!(h.listed("stuck_for=3600", 0).await, newest_first(&[]));
    assert_eq!(h.listed("stuck_for=100000000000", 0).await, newest_first(&[]));
}

#[tokio::test]
async fn lists_are_sorted_either_way_and_paged_with_the_total() {
    let h = start(None).await;
    let s = h.five_sagas().await;
    // The waiting saga changes last: its stock is reserved, its payment still awaited.
    h.send(s.waiting["id"].as_str().unwrap().parse().unwrap(), CoordinatorMessage::Stock(StockReply::Reserved)).await;
    let id = s.waiting["id"].as_str().unwrap();
    h.get_until(&format!("/admin/sagas/{id}"), |body| body["saga"]["state"]["stock"]["status"] == "done").await;

    let created = ids(&[&s.aborted, &s.completed, &s.waiting, &s.no_credit, &s.out_of_stock]);
    assert_eq!(h.listed("", 5).await, created);
    assert_eq!(h.listed("sort=created_at&order=desc", 5).await, created);
    let oldest_first: Vec<String> = created.iter().rev().cloned().collect();
    assert_eq!(h.listed("order=asc", 5).await, oldest_first);
    assert_eq!(
        h.listed("sort=updated_at", 5).await,
        ids(&[&s.waiting, &s.aborted, &s.completed, &s.no_credit, &s.out_of_stock])
    );
    assert_eq!(
        h.listed("sort=updated_at&order=asc", 5).await,
        ids(&[&s.out_of_stock, &s.no_credit, &s.completed, &s.aborted, &s.waiting])
    );

    assert_eq!(h.listed("limit=2", 5).await, created[..2]);
    assert_eq!(h.listed("limit=2&offset=2", 5).await, created[2..4]);
    assert_eq!(h.listed("limit=2&offset=4", 5).await, created[4..]);
    // Past the end: no rows, and still the total.
    assert_eq!(h.listed("limit=2&offset=9", 5).await, Vec::<String>::new());
    assert_eq!(h.listed("status=failed&limit=1&offset=1", 2).await, ids(&[&s.out_of_stock]));
    let (_, body) = h.get("/admin/sagas?limit=2&offset=2").await;
    assert_eq!((&body["limit"], &body["offset"]), (&Value::from(2), &Value::from(2)));
}

#[tokio::test]
async fn one_saga_shows_its_reason_attempts_trace_and_allowed_actions() {
    let h = start(None).await;
    let s = h.five_sagas().await;
    let show = async |saga: &Value| h.get(&format!("/admin/sagas/{}", saga["id"].as_str().unwrap())).await.1;

    let failed = show(&s.out_of_stock).await;
    assert_eq!(failed["reason"], serde_json::json!({"kind": "out_of_stock", "item_id": "a"}), "{failed}");
    assert_eq!(failed["saga"]["reason"], "out_of_stock");
    assert_eq!(failed["allowed_actions"], serde_json::json!([]));
    assert!(failed["problem"].is_null());

    let waiting = show(&s.waiting).await;
    assert!(waiting["reason"].is_null() && waiting["saga"]["reason"].is_null(), "{waiting}");
    assert_eq!(waiting["allowed_actions"], serde_json::json!(["retry", "abort"]));
    assert_eq!(waiting["attempts"], 0);
    let (code, _) = h.post(&format!("/admin/sagas/{}/retry", s.waiting["id"].as_str().unwrap())).await;
    assert_eq!(code, 200);
    assert_eq!(show(&s.waiting).await["attempts"], 1, "a retry is an attempt");

    let stuck = show(&s.aborted).await;
    assert_eq!(stuck["reason"], serde_json::json!({"kind": "aborted"}));
    assert_eq!(stuck["allowed_actions"], serde_json::json!(["retry"]));
    assert!(stuck["problem"].as_str().unwrap().contains("aborted"), "{stuck}");

    assert_eq!(show(&s.completed).await["allowed_actions"], serde_json::json!([]));
    for saga in [&failed, &waiting, &stuck] {
        match saga["saga"]["traceparent"].as_str() {
            Some(traceparent) => assert_eq!(saga["trace_id"], traceparent.split('-').nth(1).unwrap()),
            None => assert!(saga["trace_id"].is_null()),
        }
    }
}

#[tokio::test]
async fn every_bad_parameter_is_a_400_that_names_it() {
    let h = start(None).await;
    for (query, named) in [
        ("status=paid", "status"),
        ("status=failed,paid", "status"),
        ("status=", "status"),
        ("reason=", "reason"),
        ("order_id=", "order_id"),
        ("user_id=%07", "user_id"),
        ("created_after=yesterday", "created_after"),
        ("created_before=2026-13-01T00:00:00Z", "created_before"),
        ("updated_after=2026-12-01", "updated_after"),
        ("updated_before=99999-01-01T00:00:00Z", "updated_before"),
        ("stuck_for=abc", "stuck_for"),
        ("stuck_for=-1", "stuck_for"),
        ("stuck_for=100000000001", "stuck_for"),
        ("stuck_for=99999999999999", "stuck_for"),
        ("stuck_for=99999999999999999999999", "stuck_for"),
        ("sort=id", "sort"),
        ("order=up", "order"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=99999999999999999999", "limit"),
        ("offset=-1", "offset"),
        ("offset=99999999999999999999", "offset"),
    ] {
        let (code, body) = h.get(&format!("/admin/sagas?{query}")).await;
        assert_eq!(code, 400, "{query}: {body}");
        let message = body["error"].as_str().unwrap_or_else(|| panic!("{query}: no error message in {body}"));
        assert!(message.contains(named), "{query}: {message:?} does not name {named}");
    }
    // The largest values that are allowed are answered.
    let (code, body) = h.get("/admin/sagas?offset=9223372036854775807&stuck_for=100000000000&limit=1000").await;
    assert_eq!((code, &body["total"]), (200, &Value::from(0)), "{body}");
}
