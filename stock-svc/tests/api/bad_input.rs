//! Malformed requests: every one is a 4xx with a JSON `error`, and none changes anything.

use reqwest::{Method, StatusCode};

use crate::helpers::{spawn_app, TestApp};

const MALFORMED_NUMBERS: [&str; 3] = ["abc", "-5", "99999999999999999999"];

/// Sends `method path`, asserts the status and an error body, and returns the error message.
async fn refused(app: &TestApp, method: Method, path: &str, expected: StatusCode) -> String {
    let (status, body) = app.call(method.clone(), path).await;
    assert_eq!(status, expected, "{method} {path} answered {body}");
    let error = body["error"].as_str().unwrap_or_else(|| panic!("{method} {path} has no error in {body}"));
    assert!(!error.is_empty());
    error.to_owned()
}

#[tokio::test]
async fn malformed_amounts_change_no_item() {
    let app = spawn_app().await;
    let item = app.item_with(10, 3).await;

    for bad in MALFORMED_NUMBERS {
        for action in ["add", "subtract"] {
            refused(&app, Method::POST, &format!("/stock/{action}/{item}/{bad}"), StatusCode::BAD_REQUEST).await;
        }
    }
    for action in ["add", "subtract"] {
        refused(&app, Method::POST, &format!("/stock/{action}/{item}/"), StatusCode::NOT_FOUND).await;
        refused(&app, Method::POST, &format!("/stock/{action}//5"), StatusCode::NOT_FOUND).await;
    }

    assert_eq!(app.get(&format!("/stock/find/{item}")).await.1, serde_json::json!({"stock": 10, "price": 3}));
}

#[tokio::test]
async fn the_error_says_what_is_wrong() {
    let app = spawn_app().await;
    let item = app.item_with(1, 1).await;
    let error = refused(&app, Method::POST, &format!("/stock/add/{item}/-5"), StatusCode::BAD_REQUEST).await;
    assert_eq!(error, "amount must be a non-negative integer, got \"-5\"");
}

#[tokio::test]
async fn malformed_creations_create_nothing() {
    let app = spawn_app().await;

    for bad in MALFORMED_NUMBERS {
        refused(&app, Method::POST, &format!("/stock/item/create/{bad}"), StatusCode::BAD_REQUEST).await;
        refused(&app, Method::POST, &format!("/stock/batch_init/{bad}/1/1"), StatusCode::BAD_REQUEST).await;
        refused(&app, Method::POST, &format!("/stock/batch_init/5/{bad}/1"), StatusCode::BAD_REQUEST).await;
        refused(&app, Method::POST, &format!("/stock/batch_init/5/1/{bad}"), StatusCode::BAD_REQUEST).await;
    }
    refused(&app, Method::POST, "/stock/item/create/", StatusCode::NOT_FOUND).await;
    refused(&app, Method::POST, "/stock/batch_init//1/1", StatusCode::NOT_FOUND).await;
    let error = refused(&app, Method::POST, "/stock/batch_init/0/1/1", StatusCode::BAD_REQUEST).await;
    assert_eq!(error, "n must be at least 1");
    let error = refused(&app, Method::POST, "/stock/batch_init/10000001/1/1", StatusCode::BAD_REQUEST).await;
    assert_eq!(error, "n must be at most 10000000, got 10000001");

    assert_eq!(app.item_count().await, 0);
}

#[tokio::test]
async fn a_find_without_an_id_is_not_found() {
    let app = spawn_app().await;
    refused(&app, Method::GET, "/stock/find/", StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn a_wrong_method_is_refused_with_json() {
    let app = spawn_app().await;
    let item = app.item_with(10, 3).await;

    let error = refused(&app, Method::GET, &format!("/stock/subtract/{item}/1"), StatusCode::METHOD_NOT_ALLOWED).await;
    assert_eq!(error, "method GET is not allowed here");
    refused(&app, Method::POST, &format!("/stock/find/{item}"), StatusCode::METHOD_NOT_ALLOWED).await;
    refused(&app, Method::DELETE, &format!("/stock/add/{item}/1"), StatusCode::METHOD_NOT_ALLOWED).await;
    refused(&app, Method::GET, "/stock/item/create/5", StatusCode::METHOD_NOT_ALLOWED).await;
    refused(&app, Method::PUT, "/stock/batch_init/5/1/1", StatusCode::METHOD_NOT_ALLOWED).await;

    assert_eq!(app.stock_of(&item).await, 10);
    assert_eq!(app.item_count().await, 1);
}

#[tokio::test]
async fn an_unknown_path_is_not_found_with_json() {
    let app = spawn_app().await;
    let error = refused(&app, Method::POST, "/stock/steal/1/1", StatusCode::NOT_FOUND).await;
    assert_eq!(error, "no route for POST /stock/steal/1/1");
    refused(&app, Method::GET, "/elsewhere", StatusCode::NOT_FOUND).await;
}
