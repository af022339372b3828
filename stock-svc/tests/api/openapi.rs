//! The OpenAPI document of stock-svc (derived from the handlers, served at `/openapi.json`, committed as
//! `docs/openapi/stock.json`) against the running service: the committed file is the served document, every
//! operation it describes is a route the service has, every route the service has is in it, and every other
//! method on its paths is a 405.

use platform::testing::{assert_openapi_matches, assert_unsupported_methods_refused};

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

/// The committed copy of the document.
const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi/stock.json");

/// Regenerate the committed file with `OPENAPI_WRITE=1 cargo test -p stock-svc --test api openapi`.
#[tokio::test]
async fn the_openapi_document_matches_the_routes() {
    let app = spawn_app().await;
    assert_openapi_matches(&app.address, COMMITTED.as_ref(), KNOWN_ROUTES).await;
}

#[tokio::test]
async fn every_documented_path_refuses_other_methods() {
    let app = spawn_app().await;
    assert_unsupported_methods_refused(&app.address).await;
}
