//! How sagas end besides completing or failing, against a real database and broker, with this test playing
//! order-svc, stock-svc and payment-svc: a paid checkout cancelled, a compensation that can never be applied, a
//! participant that never answers, and the count of unfinished sagas the participants ask for.

mod support;

use std::time::Duration;

use shared_contracts::{
    queues, CheckoutOutcome, CoordinatorMessage, Envelope, FailureReason, PaymentCommand, PaymentReply, SagaId,
    StockCommand, StockReply,
};
use support::{request, start, start_with, Harness, WAIT};

impl Harness {
    /// The next stock command that is `wanted`, skipping re-sent copies of others.
    async fn stock_command(&self, wanted: impl Fn(&StockCommand) -> bool) -> Envelope<StockCommand> {
        loop {
            let command: Envelope<StockCommand> =
                self.broker.next_envelope(queues::STOCK_COMMANDS, WAIT).await.expect("a stock command");
            if wanted(&command.body) {
                return command;
            }
        }
    }

    /// The next payment command that is `wanted`, skipping re-sent copies of others.
    async fn payment_command(&self, wanted: impl Fn(&PaymentCommand) -> bool) -> Envelope<PaymentCommand> {
        loop {
            let command: Envelope<PaymentCommand> =
                self.broker.next_envelope(queues::PAYMENT_COMMANDS, WAIT).await.expect("a payment command");
            if wanted(&command.body) {
                return command;
            }
        }
    }

    async fn outcome(&self) -> Envelope<CheckoutOutcome> {
        self.broker.next_envelope(queues::ORDER_OUTCOMES, WAIT).await.expect("an outcome")
    }

    async fn status_becomes(&self, saga: SagaId, status: &str) {
        self.get_until(&format!("/admin/sagas/{saga}"), |body| body["saga"]["status"] == status).await;
    }

    async fn unfinished(&self) -> i64 {
        let (status, body) = self.get("/internal/sagas/unfinished").await;
        assert_eq!(status, 200, "{body}");
        body["unfinished"].as_i64().expect("a count")
    }

    /// Starts a saga and answers both forward steps, until order-svc is told the order is paid.
    async fn paid_checkout(&self, order_id: &str) -> SagaId {
        let saga = SagaId::new();
        self.send(saga, CoordinatorMessage::StartCheckout(request(order_id))).await;
        self.send(saga, CoordinatorMessage::Stock(StockReply::Reserved)).await;
        self.send(saga, CoordinatorMessage::Payment(PaymentReply::Charged)).await;
        assert_eq!(self.outcome().await.body, CheckoutOutcome::Paid { order_id: order_id.into() });
        saga
    }
}

fn is_release(command: &StockCommand) -> bool {
    *command == StockCommand::Release
}

fn is_refund(command: &PaymentCommand) -> bool {
    *command == PaymentCommand::Refund
}

#[tokio::test]
async fn a_cancelled_checkout_gives_stock_and_payment_back_once_and_reports_cancelled() {
    let h = start(None).await;
    let saga = h.paid_checkout("order-7").await;
    assert_eq!(h.unfinished().await, 0);

    let cancel = CoordinatorMessage::CancelCheckout { order_id: "order-7".into() };
    h.send(saga, cancel.clone()).await;
    h.send(saga, cancel.clone()).await;
    assert_eq!(h.stock_command(is_release).await.saga_id, saga);
    assert_eq!(h.payment_command(is_refund).await.saga_id, saga);
    h.status_becomes(saga, "cancelling").await;
    assert_eq!(h.unfinished().await, 1);

    h.send(saga, CoordinatorMessage::Stock(StockReply::Released)).await;
    h.send(saga, CoordinatorMessage::Payment(PaymentReply::Refunded)).await;
    assert_eq!(h.outcome().await.body, CheckoutOutcome::Cancelled { order_id: "order-7".into() });
    h.status_becomes(saga, "cancelled").await;
    assert_eq!(h.unfinished().await, 0);

    // order-svc asking again (it did not hear) is told again; no second release or refund is sent.
    h.send(saga, cancel).await;
    assert_eq!(h.outcome().await.body, CheckoutOutcome::Cancelled { order_id: "order-7".into() });
    assert!(h.broker.get(queues::STOCK_COMMANDS).await.unwrap().is_none());
    assert!(h.broker.get(queues::PAYMENT_COMMANDS).await.unwrap().is_none());
}

#[tokio::test]
async fn a_refund_that_can_never_apply_needs_attention_until_an_operator_retries_it() {
    let h = start(None).await;
    let saga = SagaId::new();
    h.send(saga, CoordinatorMessage::StartCheckout(request("order-8"))).await;
    h.send(saga, CoordinatorMessage::Payment(PaymentReply::Charged)).await;
    let short = FailureReason::OutOfStock { item_id: "a".into() };
    h.send(saga, CoordinatorMessage::Stock(StockReply::Rejected { reason: short.clone() })).await;
    h.payment_command(is_refund).await;

    let problem = "credit would exceed its maximum".to_owned();
    h.send(saga, CoordinatorMessage::Payment(PaymentReply::CannotApply { problem: problem.clone() })).await;
    let CheckoutOutcome::NeedsAttention { order_id, problem: told } = h.outcome().await.body else {
        panic!("order-svc was not told the saga needs attention")
    };
    assert_eq!(order_id, "order-8");
    assert!(told.contains(&problem), "{told}");
    h.status_becomes(saga, "needs_attention").await;
    let (_, listed) = h.get("/admin/sagas?status=needs_attention").await;
    assert_eq!(listed["sagas"][0]["id"], saga.to_string());
    assert_eq!(h.unfinished().await, 0);
    let (status, _) = h.post(&format!("/admin/sagas/{saga}/abort")).await;
    assert_eq!(status, 409, "a saga that needs attention has nothing left to abort");

    let (status, body) = h.post(&format!("/admin/sagas/{saga}/retry")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"]["state"], "compensating");
    h.payment_command(is_refund).await;
    h.send(saga, CoordinatorMessage::Payment(PaymentReply::Refunded)).await;
    assert_eq!(h.outcome().await.body, CheckoutOutcome::Failed { order_id: "order-8".into(), reason: short });
    h.status_becomes(saga, "failed").await;
}

#[tokio::test]
async fn a_checkout_no_participant_answers_is_compensated_after_its_deadline_then_needs_attention() {
    let h = start_with(|config| {
        config.retry_after = Duration::from_millis(200);
        config.retry_max = Duration::from_millis(400);
        config.saga_deadline = Duration::from_secs(1);
        config.compensation_deadline = Duration::from_secs(1);
    })
    .await;
    let saga = SagaId::new();
    h.send(saga, CoordinatorMessage::StartCheckout(request("order-9"))).await;
    h.get_until("/internal/sagas/unfinished", |body| body["unfinished"] == 1).await;

    // Nobody answers: after re-sending the reservation, the saga gives up and compensates both steps.
    h.stock_command(is_release).await;
    h.payment_command(is_refund).await;

    // Nobody answers the compensation either: it needs attention, and order-svc hears so.
    let CheckoutOutcome::NeedsAttention { problem, .. } = h.outcome().await.body else {
        panic!("order-svc was not told the saga needs attention")
    };
    assert!(problem.contains("deadline"), "{problem}");
    h.status_becomes(saga, "needs_attention").await;
    assert_eq!(h.unfinished().await, 0);
    let (_, shown) = h.get(&format!("/admin/sagas/{saga}")).await;
    let deadlines: Vec<(&str, &str)> = shown["history"]
        .as_array()
        .expect("a history")
        .iter()
        .filter(|line| line["event"]["event"] == "deadline_passed")
        .map(|line| (line["from_status"].as_str().unwrap_or("?"), line["to_status"].as_str().unwrap_or("?")))
        .collect();
    assert_eq!(deadlines, [("executing", "compensating"), ("compensating", "needs_attention")]);
    assert_eq!(shown["saga"]["state"]["goal"]["reason"]["kind"], "timed_out");

    // A late confirmation of both undos still settles it as failed.
    h.send(saga, CoordinatorMessage::Stock(StockReply::Released)).await;
    h.send(saga, CoordinatorMessage::Payment(PaymentReply::Refunded)).await;
    assert_eq!(
        h.outcome().await.body,
        CheckoutOutcome::Failed { order_id: "order-9".into(), reason: FailureReason::TimedOut }
    );
    h.status_becomes(saga, "failed").await;
}
