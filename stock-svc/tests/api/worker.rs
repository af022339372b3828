//! The saga worker, driven over RabbitMQ as the coordinator drives it.

use shared_contracts::{CoordinatorMessage, Envelope, FailureReason, LineItem, SagaId, StockCommand, StockReply};

use crate::helpers::spawn_app;

fn reserve(lines: &[(&str, u64)]) -> StockCommand {
    StockCommand::Reserve {
        items: lines
            .iter()
            .map(|(item_id, quantity)| LineItem { item_id: (*item_id).into(), quantity: *quantity })
            .collect(),
    }
}

/// Asserts that `reply` answers `saga` with `expected`.
fn assert_reply(reply: &Envelope<CoordinatorMessage>, saga: SagaId, expected: StockReply) {
    assert_eq!(reply.saga_id, saga);
    assert_eq!(reply.body, CoordinatorMessage::Stock(expected));
}

#[tokio::test]
async fn a_reserve_takes_every_line() {
    let app = spawn_app().await;
    let mut coordinator = app.coordinator().await;
    let (a, b) = (app.item_with(10, 1).await, app.item_with(5, 1).await);
    let saga = SagaId::new();

    coordinator.send(&[(saga, reserve(&[(&a, 3), (&b, 5)]))]).await;

    assert_reply(&coordinator.next_reply().await, saga, StockReply::Reserved);
    assert_eq!((app.stock_of(&a).await, app.stock_of(&b).await), (7, 0));
}

#[tokio::test]
async fn a_duplicate_reserve_gets_the_same_reply_and_takes_once() {
    let app = spawn_app().await;
    let mut coordinator = app.coordinator().await;
    let item = app.item_with(10, 1).await;
    let saga = SagaId::new();

    coordinator.send(&[(saga, reserve(&[(&item, 4)]))]).await;
    assert_reply(&coordinator.next_reply().await, saga, StockReply::Reserved);
    coordinator.send(&[(saga, reserve(&[(&item, 4)]))]).await;
    assert_reply(&coordinator.next_reply().await, saga, StockReply::Reserved);

    assert_eq!(app.stock_of(&item).await, 6);
}

#[tokio::test]
async fn a_duplicate_rejected_reserve_repeats_its_reason() {
    let app = spawn_app().await;
    let mut coordinator = app.coordinator().await;
    let item = app.item_with(1, 1).await;
    let saga = SagaId::new();
    let short = StockReply::Rejected { reason: FailureReason::OutOfStock { item_id: item.clone() } };

    coordinator.send(&[(saga, reserve(&[(&item, 2)]))]).await;
    assert_reply(&coordinator.next_reply().await, saga, short.clone());
    assert_eq!(app.post(&format!("/stock/add/{item}/10")).await.0, reqwest::StatusCode::OK);
    coordinator.send(&[(saga, reserve(&[(&item, 2)]))]).await;
    assert_reply(&coordinator.next_reply().await, saga, short);

    assert_eq!(app.stock_of(&item).await, 11);
}

#[tokio::test]
async fn a_release_after_a_reserve_gives_the_stock_back_once() {
    let app = spawn_app().await;
    let mut coordinator = app.coordinator().await;
    let (a, b) = (app.item_with(10, 1).await, app.item_with(10, 1).await);
    let saga = SagaId::new();

    coordinator.send(&[(saga, reserve(&[(&a, 3), (&b, 2)]))]).await;
    assert_reply(&coordinator.next_reply().await, saga, StockReply::Reserved);
    assert_eq!((app.stock_of(&a).await, app.stock_of(&b).await), (7, 8));

    coordinator.send(&[(saga, StockCommand::Release)]).await;
    assert_reply(&coordinator.next_reply().await, saga, StockReply::Released);
    coordinator.send(&[(saga, StockCommand::Release)]).await;
    assert_reply(&coordinator.next_reply().await, saga, StockReply::Released);

    assert_eq!((app.stock_of(&a).await, app.stock_of(&b).await), (10, 10));
}

#[tokio::test]
async fn a_release_before_its_reserve_blocks_the_reserve() {
    let app = spawn_app().await;
    let mut coordinator = app.coordinator().await;
    let item = app.item_with(10, 1).await;
    let saga = SagaId::new();

    coordinator.send(&[(saga, StockCommand::Release)]).await;
    assert_reply(&coordinator.next_reply().await, saga, StockReply::Released);
    coordinator.send(&[(saga, reserve(&[(&item, 1)]))]).await;
    assert_reply(&coordinator.next_reply().await, saga, StockReply::Rejected { reason: FailureReason::Cancelled });

    assert_eq!(app.stock_of(&item).await, 10);
}

#[tokio::test]
async fn a_reserve_with_one_short_line_takes_nothing() {
    let app = spawn_app().await;
    let mut coordinator = app.coordinator().await;
    let (plenty, scarce) = (app.item_with(10, 1).await, app.item_with(1, 1).await);
    let saga = SagaId::new();

    coordinator.send(&[(saga, reserve(&[(&plenty, 3), (&scarce, 2)]))]).await;

    let reason = FailureReason::OutOfStock { item_id: scarce.clone() };
    assert_reply(&coordinator.next_reply().await, saga, StockReply::Rejected { reason });
    assert_eq!((app.stock_of(&plenty).await, app.stock_of(&scarce).await), (10, 1));
}

#[tokio::test]
async fn a_reserve_with_an_unknown_item_takes_nothing() {
    let app = spawn_app().await;
    let mut coordinator = app.coordinator().await;
    let item = app.item_with(10, 1).await;
    let saga = SagaId::new();

    coordinator.send(&[(saga, reserve(&[(&item, 3), ("~missing", 1)]))]).await;

    let reason = FailureReason::UnknownItem { item_id: "~missing".into() };
    assert_reply(&coordinator.next_reply().await, saga, StockReply::Rejected { reason });
    assert_eq!(app.stock_of(&item).await, 10);
}

#[tokio::test]
async fn commands_for_one_saga_sent_together_are_applied_in_order() {
    let app = spawn_app().await;
    let mut coordinator = app.coordinator().await;
    let item = app.item_with(10, 1).await;
    let (saga, other) = (SagaId::new(), SagaId::new());

    coordinator
        .send(&[
            (saga, reserve(&[(&item, 4)])),
            (other, reserve(&[(&item, 20)])),
            (saga, StockCommand::Release),
            (saga, reserve(&[(&item, 4)])),
        ])
        .await;

    assert_reply(&coordinator.next_reply().await, saga, StockReply::Reserved);
    let short = FailureReason::OutOfStock { item_id: item.clone() };
    assert_reply(&coordinator.next_reply().await, other, StockReply::Rejected { reason: short });
    assert_reply(&coordinator.next_reply().await, saga, StockReply::Released);
    assert_reply(&coordinator.next_reply().await, saga, StockReply::Rejected { reason: FailureReason::Cancelled });
    assert_eq!(app.stock_of(&item).await, 10);
}

#[tokio::test]
async fn an_unreadable_message_is_dead_lettered_and_the_queue_moves_on() {
    let app = spawn_app().await;
    let mut coordinator = app.coordinator().await;
    let item = app.item_with(10, 1).await;
    let saga = SagaId::new();

    coordinator.send_raw(b"{not a command").await;
    coordinator.send(&[(saga, reserve(&[(&item, 1)]))]).await;

    assert_eq!(coordinator.next_dead_letter().await, b"{not a command");
    assert_reply(&coordinator.next_reply().await, saga, StockReply::Reserved);
    assert_eq!(app.stock_of(&item).await, 9);
}

#[tokio::test]
async fn a_release_that_cannot_apply_is_answered_so_and_dead_lettered_while_the_rest_of_its_batch_is_applied() {
    let app = spawn_app().await;
    let mut coordinator = app.coordinator().await;
    let (full, other) = (app.item_with(10, 1).await, app.item_with(10, 1).await);
    let (stuck, reserving, early_release) = (SagaId::new(), SagaId::new(), SagaId::new());
    coordinator.send(&[(stuck, reserve(&[(&full, 3)]))]).await;
    assert_reply(&coordinator.next_reply().await, stuck, StockReply::Reserved);
    // Only an edit behind the service's back can fill an item beyond the room its reservations need.
    app.execute(&format!("UPDATE items SET stock = {} WHERE item_id = '{full}'", i64::MAX)).await;

    coordinator
        .send(&[
            (stuck, StockCommand::Release),
            (reserving, reserve(&[(&other, 2)])),
            (early_release, StockCommand::Release),
        ])
        .await;

    let problem =
        format!("item {full} has {} in stock, giving back 3 would exceed the maximum of {}", i64::MAX, i64::MAX);
    assert_reply(&coordinator.next_reply().await, stuck, StockReply::CannotApply { problem });
    assert_reply(&coordinator.next_reply().await, reserving, StockReply::Reserved);
    assert_reply(&coordinator.next_reply().await, early_release, StockReply::Released);
    let dead: Envelope<StockCommand> =
        Envelope::from_bytes(&coordinator.next_dead_letter().await).expect("the release, as sent");
    assert_eq!((dead.saga_id, dead.body), (stuck, StockCommand::Release));
    assert_eq!((app.stock_of(&full).await, app.stock_of(&other).await), (i64::MAX, 8));

    // Nothing was recorded for the refused release: once the stock is repaired, the release gives the 3 back.
    app.execute(&format!("UPDATE items SET stock = 7 WHERE item_id = '{full}'")).await;
    coordinator.send(&[(stuck, StockCommand::Release)]).await;
    assert_reply(&coordinator.next_reply().await, stuck, StockReply::Released);
    assert_eq!(app.stock_of(&full).await, 10);
}

#[tokio::test]
async fn a_release_of_an_item_that_is_gone_cannot_apply_and_gives_nothing_back() {
    let app = spawn_app().await;
    let mut coordinator = app.coordinator().await;
    let (kept, gone) = (app.item_with(10, 1).await, app.item_with(10, 1).await);
    let saga = SagaId::new();
    coordinator.send(&[(saga, reserve(&[(&kept, 2), (&gone, 1)]))]).await;
    assert_reply(&coordinator.next_reply().await, saga, StockReply::Reserved);
    app.execute(&format!("DELETE FROM items WHERE item_id = '{gone}'")).await;

    coordinator.send(&[(saga, StockCommand::Release)]).await;

    let problem = format!("item {gone} of the reservation no longer exists");
    assert_reply(&coordinator.next_reply().await, saga, StockReply::CannotApply { problem });
    let dead: Envelope<StockCommand> = Envelope::from_bytes(&coordinator.next_dead_letter().await).expect("a command");
    assert_eq!(dead.saga_id, saga);
    assert_eq!(app.stock_of(&kept).await, 8, "none of the reservation came back");
}

/// The worker applies a whole batch in one transaction; these drive that transaction directly, so that the
/// commands are certain to share it.
mod one_transaction {
    use participant::apply_batch;
    use shared_contracts::{FailureReason, SagaId, StockCommand, StockReply};
    use stock_svc::{
        messaging::{command, reply_of},
        store::saga_steps::SagaSteps,
    };

    use super::reserve;
    use crate::helpers::spawn_app;

    async fn apply_in_one_transaction(
        app: &crate::helpers::TestApp,
        commands: &[(SagaId, StockCommand)],
    ) -> Vec<StockReply> {
        let commands: Vec<_> = commands.iter().map(|(saga_id, wire)| (*saga_id, command(wire.clone()))).collect();
        let commands: Vec<_> = commands.iter().map(|(saga_id, command)| (*saga_id, command)).collect();
        let mut conn = app.connection().await;
        apply_batch::<SagaSteps>(&mut conn, &commands)
            .await
            .expect("the transaction commits")
            .into_iter()
            .map(|outcome| reply_of(outcome.expect("every command applies")))
            .collect()
    }

    #[tokio::test]
    async fn commands_for_one_saga_see_each_other() {
        let app = spawn_app().await;
        let item = app.item_with(10, 1).await;
        let saga = SagaId::new();

        let replies = apply_in_one_transaction(
            &app,
            &[
                (saga, reserve(&[(&item, 4)])),
                (saga, reserve(&[(&item, 4)])),
                (saga, StockCommand::Release),
                (saga, reserve(&[(&item, 4)])),
            ],
        )
        .await;

        let cancelled = StockReply::Rejected { reason: FailureReason::Cancelled };
        assert_eq!(replies, [StockReply::Reserved, StockReply::Reserved, StockReply::Released, cancelled]);
        assert_eq!(app.stock_of(&item).await, 10);
    }

    #[tokio::test]
    async fn a_refused_reservation_takes_nothing_and_later_ones_see_what_earlier_ones_took() {
        let app = spawn_app().await;
        let (shared, scarce) = (app.item_with(10, 1).await, app.item_with(1, 1).await);
        let (first, second, third, fourth) = (SagaId::new(), SagaId::new(), SagaId::new(), SagaId::new());

        let replies = apply_in_one_transaction(
            &app,
            &[
                (first, reserve(&[(&shared, 3)])),
                (second, reserve(&[(&shared, 2), (&scarce, 5)])),
                (third, reserve(&[(&shared, 7), (&scarce, 1)])),
                (fourth, reserve(&[(&shared, 1)])),
            ],
        )
        .await;

        let short = |item: &str| StockReply::Rejected { reason: FailureReason::OutOfStock { item_id: item.into() } };
        assert_eq!(replies, [StockReply::Reserved, short(&scarce), StockReply::Reserved, short(&shared)]);
        assert_eq!((app.stock_of(&shared).await, app.stock_of(&scarce).await), (0, 0));
    }

    #[tokio::test]
    async fn a_release_in_a_later_batch_gives_back_what_an_earlier_batch_took() {
        let app = spawn_app().await;
        let (a, b) = (app.item_with(5, 1).await, app.item_with(5, 1).await);
        let (kept, released) = (SagaId::new(), SagaId::new());

        apply_in_one_transaction(&app, &[(kept, reserve(&[(&a, 1)])), (released, reserve(&[(&a, 2), (&b, 3)]))]).await;
        let replies = apply_in_one_transaction(
            &app,
            &[(released, StockCommand::Release), (released, StockCommand::Release), (kept, reserve(&[(&a, 1)]))],
        )
        .await;

        assert_eq!(replies, [StockReply::Released, StockReply::Released, StockReply::Reserved]);
        assert_eq!((app.stock_of(&a).await, app.stock_of(&b).await), (4, 5));
    }
}
