//! Many clients at once, and the course's bulk sizes.

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{spawn_app, spawn_app_with_coordinator};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_subtracts_never_take_more_than_there_is() {
    let app = spawn_app().await;
    let item = app.item_with(100, 1).await;

    let path = format!("/stock/subtract/{item}/1");
    let statuses = join_all((0..200).map(|_| app.post(&path))).await;

    let succeeded = statuses.iter().filter(|(status, _)| *status == StatusCode::OK).count();
    let refused = statuses.iter().filter(|(status, _)| *status == StatusCode::BAD_REQUEST).count();
    assert_eq!((succeeded, refused), (100, 100));
    assert_eq!(app.stock_of(&item).await, 0);
}

#[tokio::test]
async fn batch_init_makes_the_stress_test_size() {
    let app = spawn_app_with_coordinator().await;

    let (status, _) = app.post("/stock/batch_init/100000/1000000/1").await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.get("/stock/find/99999").await, (StatusCode::OK, json!({"stock": 1000000, "price": 1})));
    assert_eq!(app.get("/stock/find/100000").await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.item_count().await, 100_000);
}
