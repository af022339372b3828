//! Malformed requests: every one is a 4xx with a JSON `error`, and nothing changes.

use reqwest::{Method, StatusCode};

use crate::helpers::{spawn_app, TestApp};

const BAD_NUMBERS: [&str; 4] = ["abc", "-5", "99999999999999999999", "1.5"];

/// Sends `method path` and checks that it is refused with `expected` and a JSON error.
async fn assert_refused(app: &TestApp, method: Method, path: &str, expected: StatusCode) {
    let (status, body) = app.call(method.clone(), path).await;
    assert_eq!(status, expected, "{method} {path}: {body}");
    assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{method} {path}: {body}");
}

/// Checks that the user still has `credit` and that no payment and no other user was recorded.
async fn assert_unchanged(app: &TestApp, user_id: &str, credit: u64) {
    assert_eq!(app.credit_of(user_id).await, credit);
    assert_eq!(app.count("SELECT count(*) AS count FROM users").await, 1);
    assert_eq!(app.count("SELECT count(*) AS count FROM payments").await, 0);
}

#[tokio::test]
async fn malformed_amounts_are_bad_requests() {
    let app = spawn_app().await;
    let user = app.user_with(50).await;
    for bad in BAD_NUMBERS {
        for path in [
            format!("/payment/add_funds/{user}/{bad}"),
            format!("/payment/pay/{user}/{bad}"),
            format!("/payment/pay/{user}/order-1/{bad}"),
            format!("/payment/batch_init/{bad}/10"),
            format!("/payment/batch_init/10/{bad}"),
        ] {
            assert_refused(&app, Method::POST, &path, StatusCode::BAD_REQUEST).await;
        }
    }
    assert_unchanged(&app, &user, 50).await;
}

#[tokio::test]
async fn the_largest_bigint_is_accepted_and_one_more_is_not() {
    let app = spawn_app().await;
    let user = app.user_with(0).await;
    assert_refused(
        &app,
        Method::POST,
        &format!("/payment/add_funds/{user}/9223372036854775808"),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(app.credit_of(&user).await, 0);
    let (status, body) = app.post(&format!("/payment/add_funds/{user}/9223372036854775807")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app.credit_of(&user).await, i64::MAX as u64);
}

#[tokio::test]
async fn empty_segments_are_refused() {
    let app = spawn_app().await;
    let user = app.user_with(50).await;
    for (method, path) in [
        (Method::GET, "/payment/find_user/".to_owned()),
        (Method::POST, format!("/payment/add_funds/{user}/")),
        (Method::POST, "/payment/add_funds//5".to_owned()),
        (Method::POST, format!("/payment/pay/{user}/")),
        (Method::POST, "/payment/pay//5".to_owned()),
        (Method::POST, format!("/payment/pay/{user}//5")),
        (Method::POST, format!("/payment/cancel/{user}/")),
        (Method::GET, format!("/payment/status/{user}/")),
        (Method::POST, "/payment/batch_init//5".to_owned()),
    ] {
        let (status, body) = app.call(method.clone(), &path).await;
        assert!(status.is_client_error(), "{method} {path}: {status}");
        assert!(body["error"].as_str().is_some(), "{method} {path}: {body}");
    }
    assert_unchanged(&app, &user, 50).await;
}

#[tokio::test]
async fn an_overlong_id_is_a_bad_request() {
    let app = spawn_app().await;
    let user = app.user_with(50).await;
    let long = "x".repeat(129);
    assert_refused(&app, Method::GET, &format!("/payment/find_user/{long}"), StatusCode::BAD_REQUEST).await;
    assert_refused(&app, Method::POST, &format!("/payment/pay/{user}/{long}/5"), StatusCode::BAD_REQUEST).await;
    assert_unchanged(&app, &user, 50).await;
}

#[tokio::test]
async fn a_wrong_method_is_a_json_405() {
    let app = spawn_app().await;
    let user = app.user_with(50).await;
    for (method, path) in [
        (Method::GET, "/payment/create_user".to_owned()),
        (Method::GET, "/payment/batch_init/10/10".to_owned()),
        (Method::POST, format!("/payment/find_user/{user}")),
        (Method::GET, format!("/payment/add_funds/{user}/5")),
        (Method::GET, format!("/payment/pay/{user}/5")),
        (Method::DELETE, format!("/payment/pay/{user}/order-1/5")),
        (Method::GET, format!("/payment/cancel/{user}/order-1")),
        (Method::DELETE, format!("/payment/status/{user}/order-1")),
    ] {
        assert_refused(&app, method, &path, StatusCode::METHOD_NOT_ALLOWED).await;
    }
    assert_unchanged(&app, &user, 50).await;
}

#[tokio::test]
async fn an_unknown_path_is_a_json_404() {
    let app = spawn_app().await;
    let user = app.user_with(50).await;
    for path in ["/payment/nope", "/payment/pay", &format!("/payment/pay/{user}/order/5/extra"), "/elsewhere"] {
        assert_refused(&app, Method::POST, path, StatusCode::NOT_FOUND).await;
    }
    assert_unchanged(&app, &user, 50).await;
}
