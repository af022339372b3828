//! The coordinator on its own, against a real database and broker: this test plays order-svc, stock-svc and
//! payment-svc by publishing their messages and reading the coordinator's from the queues.

use std::time::Duration;

use coordinator::{config::Config, startup::Application};
use platform::testing::{eventually, fresh_database, fresh_vhost, TestBroker};
use serde_json::Value;
use shared_contracts::{
    queues, CheckoutOutcome, CheckoutRequest, CoordinatorMessage, Envelope, FailureReason, LineItem, PaymentCommand,
    PaymentReply, SagaId, StockCommand, StockReply,
};

const WAIT: Duration = Duration::from_secs(10);

struct Harness {
    broker: TestBroker,
    admin: String,
    http: reqwest::Client,
}

async fn start(retry_after: Duration) -> Harness {
    start_with(retry_after, None).await
}

async fn start_with(retry_after: Duration, admin_token: Option<&str>) -> Harness {
    platform::telemetry::init();
    let mut config = Config::from_env().unwrap();
    config.admin_token = admin_token.map(str::to_owned);
    config.service.http_addr = "127.0.0.1:0".into();
    config.service.database_url = fresh_database("coordinator").await.unwrap();
    config.service.amqp_url = fresh_vhost().await.unwrap();
    config.retry_after = retry_after;
    let broker = TestBroker::connect(&config.service.amqp_url).await.unwrap();
    let app = Application::build(config).await.unwrap();
    let admin = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    Harness { broker, admin, http: reqwest::Client::new() }
}

fn request() -> CheckoutRequest {
    CheckoutRequest {
        order_id: "order-1".into(),
        user_id: "user-1".into(),
        items: vec![LineItem { item_id: "a".into(), quantity: 2 }, LineItem { item_id: "b".into(), quantity: 1 }],
        total: 30,
    }
}

impl Harness {
    async fn send(&self, saga_id: SagaId, message: CoordinatorMessage) {
        self.broker.publish(queues::COORDINATOR, Envelope::new(saga_id, message).to_bytes()).await.unwrap();
    }

    async fn stock_command(&self) -> Envelope<StockCommand> {
        self.broker.next_envelope(queues::STOCK_COMMANDS, WAIT).await.unwrap()
    }

    async fn payment_command(&self) -> Envelope<PaymentCommand> {
        self.broker.next_envelope(queues::PAYMENT_COMMANDS, WAIT).await.unwrap()
    }

    async fn outcome(&self) -> Envelope<CheckoutOutcome> {
        self.broker.next_envelope(queues::ORDER_OUTCOMES, WAIT).await.unwrap()
    }

    async fn act(&self, id: SagaId, action: &str) -> (u16, Value) {
        let response = self.http.post(format!("{}/admin/sagas/{id}/{action}", self.admin)).send().await.unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    async fn saga(&self, id: SagaId) -> Value {
        let response = self.http.get(format!("{}/admin/sagas/{id}", self.admin)).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// Waits until the admin API shows the saga in `status` (the outcome is published after the commit, so
    /// this normally holds at once).
    async fn saga_in(&self, id: SagaId, status: &str) -> Value {
        eventually(&format!("saga {id} to reach {status}"), WAIT, async || {
            let saga = self.saga(id).await;
            (saga["saga"]["status"] == status).then_some(saga)
        })
        .await
    }
}

#[tokio::test]
async fn a_checkout_reserves_and_charges_then_reports_paid_once() {
    let h = start(Duration::from_secs(30)).await;
    let saga = SagaId::new();
    h.send(saga, CoordinatorMessage::StartCheckout(request())).await;

    let reserve = h.stock_command().await;
    assert_eq!(reserve.saga_id, saga);
    assert_eq!(reserve.body, StockCommand::Reserve { items: request().items });
    let charge = h.payment_command().await;
    assert_eq!(
        charge.body,
        PaymentCommand::Charge { user_id: "user-1".into(), order_id: "order-1".into(), amount: 30 }
    );

    h.send(saga, CoordinatorMessage::Stock(StockReply::Reserved)).await;
    h.send(saga, CoordinatorMessage::Stock(StockReply::Reserved)).await;
    h.send(saga, CoordinatorMessage::Payment(PaymentReply::Charged)).await;
    let outcome = h.outcome().await;
    assert_eq!(outcome.saga_id, saga);
    assert_eq!(outcome.body, CheckoutOutcome::Paid { order_id: "order-1".into() });

    let shown = h.saga_in(saga, "completed").await;
    let events: Vec<&str> =
        shown["history"].as_array().unwrap().iter().map(|line| line["event"]["event"].as_str().unwrap()).collect();
    // The duplicate reservation left no trace.
    assert_eq!(events, ["start", "stock", "payment"]);
    // A redelivered reply after the end changes nothing and sends nothing.
    h.send(saga, CoordinatorMessage::Payment(PaymentReply::Charged)).await;
    let marker = SagaId::new();
    h.send(marker, CoordinatorMessage::StartCheckout(request())).await;
    assert_eq!(h.stock_command().await.saga_id, marker, "the late reply sent a command");
    assert!(h.broker.get(queues::ORDER_OUTCOMES).await.unwrap().is_none());
    assert_eq!(h.saga(saga).await["history"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn a_repeated_start_of_a_finished_saga_reports_its_outcome_again() {
    let h = start(Duration::from_secs(30)).await;
    let (paid, failed) = (SagaId::new(), SagaId::new());
    let reason = FailureReason::InsufficientCredit { user_id: "user-1".into() };
    for saga in [paid, failed] {
        h.send(saga, CoordinatorMessage::StartCheckout(request())).await;
        h.stock_command().await;
        h.payment_command().await;
    }
    h.send(paid, CoordinatorMessage::Stock(StockReply::Reserved)).await;
    h.send(paid, CoordinatorMessage::Payment(PaymentReply::Charged)).await;
    h.send(failed, CoordinatorMessage::Payment(PaymentReply::Rejected { reason: reason.clone() })).await;
    assert_eq!(h.stock_command().await.body, StockCommand::Release);
    h.send(failed, CoordinatorMessage::Stock(StockReply::Released)).await;
    h.saga_in(paid, "completed").await;
    h.saga_in(failed, "failed").await;
    while h.broker.get(queues::ORDER_OUTCOMES).await.unwrap().is_some() {}

    // order-svc did not hear the outcomes and asks again: each saga reports its own once more, and sends no
    // command.
    h.send(paid, CoordinatorMessage::StartCheckout(request())).await;
    h.send(failed, CoordinatorMessage::StartCheckout(request())).await;
    let mut outcomes = [h.outcome().await, h.outcome().await];
    outcomes.sort_by_key(|outcome| outcome.saga_id != paid);
    assert_eq!((outcomes[0].saga_id, &outcomes[0].body), (paid, &CheckoutOutcome::Paid { order_id: "order-1".into() }));
    assert_eq!(
        (outcomes[1].saga_id, &outcomes[1].body),
        (failed, &CheckoutOutcome::Failed { order_id: "order-1".into(), reason })
    );
    let marker = SagaId::new();
    h.send(marker, CoordinatorMessage::StartCheckout(request())).await;
    assert_eq!(h.stock_command().await.saga_id, marker, "a repeated start of a finished saga sent a command");
    assert!(h.broker.get(queues::ORDER_OUTCOMES).await.unwrap().is_none(), "an outcome was reported twice more");

    let shown = h.saga(paid).await;
    assert_eq!(shown["saga"]["status"], "completed");
    let last = shown["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["event"]["event"], "start_repeated");
    assert_eq!(last["commands"], serde_json::json!([{ "command": "report_paid" }]));
}

#[tokio::test]
async fn a_refused_reservation_refunds_the_payment_and_reports_the_reason() {
    let h = start(Duration::from_secs(30)).await;
    let saga = SagaId::new();
    h.send(saga, CoordinatorMessage::StartCheckout(request())).await;
    h.stock_command().await;
    h.payment_command().await;

    h.send(saga, CoordinatorMessage::Payment(PaymentReply::Charged)).await;
    let reason = FailureReason::OutOfStock { item_id: "a".into() };
    h.send(saga, CoordinatorMessage::Stock(StockReply::Rejected { reason: reason.clone() })).await;
    assert_eq!(h.payment_command().await.body, PaymentCommand::Refund);
    h.saga_in(saga, "compensating").await;
    assert!(h.broker.get(queues::ORDER_OUTCOMES).await.unwrap().is_none(), "reported before the refund");

    h.send(saga, CoordinatorMessage::Payment(PaymentReply::Refunded)).await;
    let outcome = h.outcome().await;
    assert_eq!(outcome.body, CheckoutOutcome::Failed { order_id: "order-1".into(), reason });
    h.saga_in(saga, "failed").await;
}

#[tokio::test]
async fn a_redelivered_start_runs_one_saga() {
    let h = start(Duration::from_secs(30)).await;
    let saga = SagaId::new();
    h.send(saga, CoordinatorMessage::StartCheckout(request())).await;
    h.send(saga, CoordinatorMessage::StartCheckout(request())).await;
    h.stock_command().await;
    h.payment_command().await;
    let marker = SagaId::new();
    h.send(marker, CoordinatorMessage::StartCheckout(request())).await;
    assert_eq!(h.stock_command().await.saga_id, marker, "the duplicate start sent a second reservation");
    let listed: Value = h
        .http
        .get(format!("{}/admin/sagas?order_id=order-1&status=executing", h.admin))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["sagas"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn unanswered_commands_are_sent_again_until_answered() {
    let h = start(Duration::from_millis(200)).await;
    let saga = SagaId::new();
    h.send(saga, CoordinatorMessage::StartCheckout(request())).await;
    h.stock_command().await;
    h.payment_command().await;
    h.send(saga, CoordinatorMessage::Payment(PaymentReply::Charged)).await;
    // The charge was answered, the reservation was not: only the reservation comes again.
    let again = h.stock_command().await;
    assert_eq!((again.saga_id, again.body), (saga, StockCommand::Reserve { items: request().items }));
    assert!(h.broker.get(queues::PAYMENT_COMMANDS).await.unwrap().is_none());
    h.send(saga, CoordinatorMessage::Stock(StockReply::Reserved)).await;
    assert_eq!(h.outcome().await.body, CheckoutOutcome::Paid { order_id: "order-1".into() });
    let shown = h.saga_in(saga, "completed").await;
    assert!(shown["saga"]["next_retry_at"].is_null());
}

#[tokio::test]
async fn an_unreadable_message_is_dead_lettered_and_the_queue_moves_on() {
    let h = start(Duration::from_secs(30)).await;
    h.broker.publish(queues::COORDINATOR, b"{\"not\": \"an envelope\"}".to_vec()).await.unwrap();
    let saga = SagaId::new();
    h.send(saga, CoordinatorMessage::StartCheckout(request())).await;
    assert_eq!(h.stock_command().await.saga_id, saga);
    let dead = h.broker.next(queues::DEAD_LETTERS, WAIT).await.unwrap();
    assert_eq!(dead, b"{\"not\": \"an envelope\"}");
}

#[tokio::test]
async fn the_admin_api_refuses_bad_input_with_json_errors() {
    let h = start(Duration::from_secs(30)).await;
    for (path, status) in [
        ("/admin/sagas/not-a-uuid", 400),
        ("/admin/sagas/6f1c1d1e-8a40-4c43-9d8e-5f3f2b7d9a10", 404),
        ("/admin/sagas?status=paid", 400),
        ("/admin/sagas?limit=0", 400),
        ("/admin/sagas?limit=-1", 400),
        ("/admin/sagas?stuck_for=abc", 400),
        ("/admin/nothing", 404),
    ] {
        let response = h.http.get(format!("{}{path}", h.admin)).send().await.unwrap();
        assert_eq!(response.status(), status, "{path}");
        let body: Value = response.json().await.unwrap();
        assert!(body["error"].is_string(), "{path}: {body}");
    }
    let wrong_method = h.http.delete(format!("{}/admin/stats", h.admin)).send().await.unwrap();
    assert_eq!(wrong_method.status(), 405);
    let stats: Value = h.http.get(format!("{}/admin/stats", h.admin)).send().await.unwrap().json().await.unwrap();
    assert_eq!(stats["sagas"]["executing"], 0);
}

#[tokio::test]
async fn abort_compensates_then_fails_and_is_refused_once_terminal() {
    let h = start(Duration::from_secs(30)).await;
    let saga = SagaId::new();
    h.send(saga, CoordinatorMessage::StartCheckout(request())).await;
    h.stock_command().await;
    h.payment_command().await;
    h.send(saga, CoordinatorMessage::Stock(StockReply::Reserved)).await;
    h.saga_in(saga, "executing").await;

    let (status, body) = h.act(saga, "abort").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"]["state"], "compensating");
    assert_eq!(h.stock_command().await.body, StockCommand::Release);
    assert_eq!(h.payment_command().await.body, PaymentCommand::Refund);
    // A second abort stops waiting for the compensation: the saga needs attention, order-svc hears so, and
    // nothing is sent again.
    let (status, body) = h.act(saga, "abort").await;
    assert_eq!((status, &body["state"]["state"]), (200, &Value::from("needs_attention")), "{body}");
    assert!(matches!(h.outcome().await.body, CheckoutOutcome::NeedsAttention { .. }));
    // The late confirmations still settle it.
    h.send(saga, CoordinatorMessage::Stock(StockReply::Released)).await;
    h.send(saga, CoordinatorMessage::Payment(PaymentReply::Refunded)).await;
    assert_eq!(
        h.outcome().await.body,
        CheckoutOutcome::Failed { order_id: "order-1".into(), reason: FailureReason::Aborted }
    );
    h.saga_in(saga, "failed").await;
    assert!(h.broker.get(queues::STOCK_COMMANDS).await.unwrap().is_none(), "the second abort re-sent a release");

    for action in ["abort", "retry"] {
        let (status, body) = h.act(saga, action).await;
        assert_eq!(status, 409, "{action}: {body}");
        assert!(body["error"].as_str().unwrap().contains("failed"), "{body}");
    }
    assert_eq!(h.act(SagaId::new(), "retry").await.0, 404);
    let bad = h.http.post(format!("{}/admin/sagas/nope/abort", h.admin)).send().await.unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn retry_resends_the_unanswered_commands_at_once() {
    let h = start(Duration::from_secs(30)).await;
    let saga = SagaId::new();
    h.send(saga, CoordinatorMessage::StartCheckout(request())).await;
    h.stock_command().await;
    h.payment_command().await;
    let before = h.saga(saga).await["saga"]["updated_at"].clone();
    let (status, body) = h.act(saga, "retry").await;
    assert_eq!(status, 200, "{body}");
    // A retry is no progress: the saga still counts as unchanged since before it.
    assert_eq!(h.saga(saga).await["saga"]["updated_at"], before);
    assert_eq!(h.stock_command().await.body, StockCommand::Reserve { items: request().items });
    assert!(matches!(h.payment_command().await.body, PaymentCommand::Charge { amount: 30, .. }));
    assert_eq!(h.saga(saga).await["saga"]["retries"], 1);
}

#[tokio::test]
async fn abort_racing_the_last_reply_ends_one_way_or_the_other_never_both() {
    let h = start(Duration::from_secs(30)).await;
    for _ in 0..10 {
        let saga = SagaId::new();
        h.send(saga, CoordinatorMessage::StartCheckout(request())).await;
        h.stock_command().await;
        h.payment_command().await;
        h.send(saga, CoordinatorMessage::Stock(StockReply::Reserved)).await;
        let (_, (status, _)) =
            tokio::join!(h.send(saga, CoordinatorMessage::Payment(PaymentReply::Charged)), h.act(saga, "abort"));
        match status {
            // The abort won: both steps are undone, then the checkout fails.
            200 => {
                assert_eq!(h.stock_command().await.body, StockCommand::Release);
                assert_eq!(h.payment_command().await.body, PaymentCommand::Refund);
                h.send(saga, CoordinatorMessage::Stock(StockReply::Released)).await;
                h.send(saga, CoordinatorMessage::Payment(PaymentReply::Refunded)).await;
                let outcome = h.outcome().await;
                assert!(matches!(outcome.body, CheckoutOutcome::Failed { reason: FailureReason::Aborted, .. }));
            }
            // The reply won: the saga completed and the abort was refused.
            409 => assert_eq!(h.outcome().await.body, CheckoutOutcome::Paid { order_id: "order-1".into() }),
            other => panic!("abort answered {other}"),
        }
        assert!(h.broker.get(queues::ORDER_OUTCOMES).await.unwrap().is_none(), "two outcomes for one saga");
    }
}

#[tokio::test]
async fn with_a_token_configured_the_admin_api_demands_it() {
    let h = start_with(Duration::from_secs(30), Some("s3cret")).await;
    let url = format!("{}/admin/stats", h.admin);
    assert_eq!(h.http.get(&url).send().await.unwrap().status(), 401);
    assert_eq!(h.http.get(&url).bearer_auth("wrong").send().await.unwrap().status(), 401);
    assert_eq!(h.http.get(&url).bearer_auth("s3cret").send().await.unwrap().status(), 200);
    // Health and metrics stay open for probes and scrapers.
    assert_eq!(h.http.get(format!("{}/health", h.admin)).send().await.unwrap().status(), 200);
}
