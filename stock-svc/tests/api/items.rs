//! Every endpoint doing what the API promises, with exact answers.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::spawn_app;

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
    let app = spawn_app().await;

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
        format!("item {item} has 10 in stock, adding {} would exceed the maximum of {}", i64::MAX, i64::MAX)
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
