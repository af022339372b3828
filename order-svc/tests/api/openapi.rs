//! The OpenAPI document of order-svc (`docs/openapi/orders.json`, served at `/openapi.json`) against the running
//! service: every operation it describes is a route the service has, and every route the service has is in it.

use platform::testing::assert_openapi_matches;

use crate::helpers::spawn_app;

/// Every route of the service, as mounted in `src/http/mod.rs` and by `platform::http::configure_common`.
const KNOWN_ROUTES: &[(&str, &str)] = &[
    ("POST", "/orders/create/{user_id}"),
    ("POST", "/orders/batch_init/{n}/{n_items}/{n_users}/{item_price}"),
    ("GET", "/orders/find/{order_id}"),
    ("POST", "/orders/addItem/{order_id}/{item_id}/{quantity}"),
    ("POST", "/orders/addItem/{order_id}/{item_id}"),
    ("DELETE", "/orders/removeItem/{order_id}/{item_id}"),
    ("DELETE", "/orders/remove/{order_id}"),
    ("POST", "/orders/checkout/{order_id}"),
    ("POST", "/orders/cancel/{order_id}"),
    ("GET", "/health"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
];

#[tokio::test]
async fn the_openapi_document_matches_the_routes() {
    let app = spawn_app().await;
    assert_openapi_matches(&app.orders, include_str!("../../../docs/openapi/orders.json"), KNOWN_ROUTES).await;
}
