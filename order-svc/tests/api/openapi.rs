//! The OpenAPI document of order-svc (derived from the handlers, served at `/openapi.json`, committed as
//! `docs/openapi/orders.json`) against the running service: the committed file is the served document, every
//! operation it describes is a route the service has, every route the service has is in it, and every other
//! method on its paths is a 405.

use platform::testing::{assert_openapi_matches, assert_unsupported_methods_refused};

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

/// The committed copy of the document.
const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi/orders.json");

/// Regenerate the committed file with `OPENAPI_WRITE=1 cargo test -p order-svc --test api openapi`.
#[tokio::test]
async fn the_openapi_document_matches_the_routes() {
    let app = spawn_app().await;
    assert_openapi_matches(&app.orders, COMMITTED.as_ref(), KNOWN_ROUTES).await;
}

#[tokio::test]
async fn every_documented_path_refuses_other_methods() {
    let app = spawn_app().await;
    assert_unsupported_methods_refused(&app.orders).await;
}
