//! The OpenAPI document of payment-svc (`docs/openapi/payment.json`, served at `/openapi.json`) against the running
//! service: every operation it describes is a route the service has, and every route the service has is in it.

use platform::testing::assert_openapi_matches;

use crate::helpers::spawn_app;

/// Every route of the service, as mounted in `src/http/mod.rs` and by `platform::http::configure_common`.
const KNOWN_ROUTES: &[(&str, &str)] = &[
    ("POST", "/payment/create_user"),
    ("POST", "/payment/batch_init/{n}/{starting_money}"),
    ("GET", "/payment/find_user/{user_id}"),
    ("POST", "/payment/add_funds/{user_id}/{amount}"),
    ("POST", "/payment/pay/{user_id}/{amount}"),
    ("POST", "/payment/pay/{user_id}/{order_id}/{amount}"),
    ("POST", "/payment/cancel/{user_id}/{order_id}"),
    ("GET", "/payment/status/{user_id}/{order_id}"),
    ("POST", "/payment/status/{user_id}/{order_id}"),
    ("GET", "/health"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
];

#[tokio::test]
async fn the_openapi_document_matches_the_routes() {
    let app = spawn_app().await;
    assert_openapi_matches(&app.address, include_str!("../../../docs/openapi/payment.json"), KNOWN_ROUTES).await;
}
