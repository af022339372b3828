//! Every endpoint doing what the API promises, with exact answers.

use reqwest::StatusCode;
use serde_json::json;
use shared_contracts::{CoordinatorMessage, LineItem, SagaId, StockCommand, StockReply};

use crate::helpers::{spawn_app, spawn_app_with_coordinator, TestApp};

/// The most an item may hold in stock and reserved by checkouts together, as documented.
const MAX_STOCK: i64 = i64::MAX;

/// Reserves `quantity` of `item_id` for a new saga through the saga worker and returns the saga.
async fn reserve(app: &TestApp, item_id: &str, quantity: u64) -> SagaId {
    let mut coordinator = app.coordinator().await;
    let saga = SagaId::new();
    let items = vec![LineItem { item_id: item_id.into(), quantity }];
    coordinator.send(&[(saga, StockCommand::Reserve { items })]).await;
    assert_eq!(coordinator.next_reply().await.body, CoordinatorMessage::Stock(StockReply::Reserved));
    saga
}

/// Releases what `saga` reserved through the saga worker.
async fn release(app: &TestApp, saga: SagaId) {
    let mut coordinator = app.coordinator().await;
    coordinator.send(&[(saga, StockCommand::Release)]).await;
    assert_eq!(coordinator.next_reply().await.body, CoordinatorMessage::Stock(StockReply::Released));
}

#[tokio::test]
async fn a_created_item_has_no_stock_and_its_price() {
    let app = spawn_app().await;

    let (status, body) = app.post("/stock/item/create/25").await;
    assert_eq!(status, StatusCode::OK);
    let item_id = body["item_id"].as_str().expect("an item_id");
    assert!(uuid::Uuid::parse_str(item_id).is_ok(), "{item_id} is not a UUID");

    assert_eq!(app.get(&format!("/stock/find/{item_id}")).await, (StatusCode::OK, json!({"stock": 0, "price": 25})));
}

#[tokio::test]
async fn an_item_may_be_free() {
    let app = spawn_app().await;
    let (_, body) = app.post("/stock/item/create/0").await;
    let item_id = body["item_id"].as_str().expect("an item_id");
    assert_eq!(app.get(&format!("/stock/find/{item_id}")).await, (StatusCode::OK, json!({"stock": 0, "price": 0})));
}

#[tokio::test]
async fn an_unknown_item_is_not_found() {
    let app = spawn_app().await;
    let (status, body) = app.get("/stock/find/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, json!({"error": "item nope does not exist"}));
}

#[tokio::test]
async fn batch_init_creates_numbered_items_and_overwrites_earlier_ones() {
    let app = spawn_app_with_coordinator().await;

    let (status, body) = app.post("/stock/batch_init/3/5/2").await;
    assert_eq!((status, body), (StatusCode::OK, json!({"msg": "Batch init for stock successful"})));
    assert_eq!(app.post("/stock/subtract/1/1").await.0, StatusCode::OK);
    assert_eq!(app.post("/stock/subtract/2/1").await.0, StatusCode::OK);

    assert_eq!(app.post("/stock/batch_init/2/7/3").await.0, StatusCode::OK);

    assert_eq!(app.get("/stock/find/0").await, (StatusCode::OK, json!({"stock": 7, "price": 3})));
    assert_eq!(app.get("/stock/find/1").await, (StatusCode::OK, json!({"stock": 7, "price": 3})));
    assert_eq!(app.get("/stock/find/2").await, (StatusCode::OK, json!({"stock": 4, "price": 2})));
    assert_eq!(app.get("/stock/find/3").await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.item_count().await, 3);
}

#[tokio::test]
async fn add_returns_the_new_state() {
    let app = spawn_app().await;
    let item = app.item_with(10, 4).await;

    let (status, body) = app.post(&format!("/stock/add/{item}/5")).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"item_id": item, "stock": 15, "price": 4})));

    let (status, body) = app.post(&format!("/stock/add/{item}/0")).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"item_id": item, "stock": 15, "price": 4})));
}

#[tokio::test]
async fn add_up_to_the_maximum_is_allowed_and_beyond_it_refused() {
    let app = spawn_app().await;
    let item = app.item_with(10, 1).await;

    let (status, body) = app.post(&format!("/stock/add/{item}/{}", i64::MAX)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["error"],
        format!(
            "item {item} has 10 in stock and 0 reserved by checkouts, adding {} would exceed the maximum of {} \
             for the two together",
            i64::MAX,
            i64::MAX
        )
    );
    assert_eq!(app.stock_of(&item).await, 10);

    let (status, body) = app.post(&format!("/stock/add/{item}/{}", i64::MAX - 10)).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"item_id": item, "stock": i64::MAX, "price": 1})));
}

#[tokio::test]
async fn add_to_an_unknown_item_is_not_found() {
    let app = spawn_app().await;
    let (status, body) = app.post("/stock/add/ghost/1").await;
    assert_eq!((status, body), (StatusCode::NOT_FOUND, json!({"error": "item ghost does not exist"})));
    assert_eq!(app.item_count().await, 0);
}

#[tokio::test]
async fn subtract_returns_the_new_state() {
    let app = spawn_app().await;
    let item = app.item_with(10, 4).await;

    let (status, body) = app.post(&format!("/stock/subtract/{item}/10")).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"item_id": item, "stock": 0, "price": 4})));

    let (status, body) = app.post(&format!("/stock/subtract/{item}/0")).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"item_id": item, "stock": 0, "price": 4})));
}

#[tokio::test]
async fn subtract_from_an_unknown_item_is_not_found() {
    let app = spawn_app().await;
    let (status, body) = app.post("/stock/subtract/ghost/1").await;
    assert_eq!((status, body), (StatusCode::NOT_FOUND, json!({"error": "item ghost does not exist"})));
}

/// The course's scenario: create an item, add stock, take some, try to take too much.
#[tokio::test]
async fn stock_never_goes_below_zero() {
    let app = spawn_app().await;
    let (_, body) = app.post("/stock/item/create/10").await;
    let item = body["item_id"].as_str().expect("an item_id").to_owned();

    let (status, body) = app.post(&format!("/stock/add/{item}/15")).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"item_id": item, "stock": 15, "price": 10})));

    let (status, body) = app.post(&format!("/stock/subtract/{item}/10")).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"item_id": item, "stock": 5, "price": 10})));

    let (status, body) = app.post(&format!("/stock/subtract/{item}/6")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, json!({"error": format!("item {item} has 5 in stock, cannot subtract 6")}));

    assert_eq!(app.get(&format!("/stock/find/{item}")).await, (StatusCode::OK, json!({"stock": 5, "price": 10})));
}

#[tokio::test]
async fn add_leaves_room_for_what_checkouts_reserved_so_that_a_release_always_fits() {
    let app = spawn_app().await;
    let item = app.item_with(10, 1).await;
    let saga = reserve(&app, &item, 4).await;

    let (status, body) = app.post(&format!("/stock/add/{item}/{}", MAX_STOCK - 6)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["error"],
        format!(
            "item {item} has 6 in stock and 4 reserved by checkouts, adding {} would exceed the maximum of \
             {MAX_STOCK} for the two together",
            MAX_STOCK - 6
        )
    );
    assert_eq!(app.stock_of(&item).await, 6);

    let (status, body) = app.post(&format!("/stock/add/{item}/{}", MAX_STOCK - 10)).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"item_id": item, "stock": MAX_STOCK - 4, "price": 1})));
    release(&app, saga).await;
    assert_eq!(app.stock_of(&item).await, MAX_STOCK);
}

#[tokio::test]
async fn batch_init_leaves_room_for_what_checkouts_reserved() {
    let app = spawn_app_with_coordinator().await;
    assert_eq!(app.post("/stock/batch_init/2/10/1").await.0, StatusCode::OK);
    reserve(&app, "1", 4).await;

    let (status, body) = app.post(&format!("/stock/batch_init/2/{MAX_STOCK}/1")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["error"],
        format!(
            "item 1 has 4 reserved by checkouts, a stock of {MAX_STOCK} would exceed the maximum of {MAX_STOCK} \
             for the two together"
        )
    );
    assert_eq!((app.stock_of("0").await, app.stock_of("1").await), (10, 6));

    let (status, body) = app.post(&format!("/stock/batch_init/2/{}/1", MAX_STOCK - 4)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app.stock_of("1").await, MAX_STOCK - 4);
}

#[tokio::test]
async fn batch_init_is_refused_while_checkout_sagas_are_unfinished() {
    let app = spawn_app_with_coordinator().await;
    assert_eq!(app.post("/stock/batch_init/1/10/1").await.0, StatusCode::OK);
    app.start_an_unfinished_saga().await;

    let (status, body) = app.post("/stock/batch_init/2/5/1").await;

    assert_eq!(status, StatusCode::CONFLICT);
    let error = "1 checkout sagas are unfinished; batch_init would change stock under them; try again when they \
                 have ended";
    assert_eq!(body, json!({"error": error, "unfinished": 1}));
    assert_eq!(app.stock_of("0").await, 10);
    assert_eq!(app.item_count().await, 1);
}

#[tokio::test]
async fn batch_init_is_unavailable_while_the_coordinator_cannot_be_asked() {
    let app = spawn_app().await;

    let (status, body) = app.post("/stock/batch_init/2/5/1").await;

    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let error = body["error"].as_str().expect("an error");
    assert!(error.contains("coordinator"), "{error}");
    assert_eq!(app.item_count().await, 0);
}
