//! The OpenAPI document of stock-svc (`docs/openapi/stock.json`, served at `/openapi.json`) against the running
//! service: every operation it describes is a route the service has, and every route the service has is in it.

use platform::testing::assert_openapi_matches;

use crate::helpers::spawn_app;

/// Every route of the service, as mounted in `src/http/mod.rs` and by `platform::http::configure_common`.
const KNOWN_ROUTES: &[(&str, &str)] = &[
    ("POST", "/stock/item/create/{price}"),
    ("POST", "/stock/batch_init/{n}/{starting_stock}/{item_price}"),
    ("GET", "/stock/find/{item_id}"),
    ("POST", "/stock/add/{item_id}/{amount}"),
    ("POST", "/stock/subtract/{item_id}/{amount}"),
    ("GET", "/health"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
];

#[tokio::test]
async fn the_openapi_document_matches_the_routes() {
    let app = spawn_app().await;
    assert_openapi_matches(&app.address, include_str!("../../../docs/openapi/stock.json"), KNOWN_ROUTES).await;
}
