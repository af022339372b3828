//! The coordinator's OpenAPI document (derived from the handlers, served at `/openapi.json`, committed as
//! `docs/openapi/coordinator.json`) against the running coordinator: the committed file is the served document,
//! every operation it describes is a route, every route is described, and every other method on its paths is a
//! 405.

mod support;

use platform::testing::{assert_openapi_matches, assert_unsupported_methods_refused};
use support::start;

/// Every route of the coordinator, as mounted in `src/http/` and by `platform::http::configure_common`.
const KNOWN_ROUTES: &[(&str, &str)] = &[
    ("GET", "/admin/sagas"),
    ("GET", "/admin/sagas/{saga_id}"),
    ("POST", "/admin/sagas/{saga_id}/retry"),
    ("POST", "/admin/sagas/{saga_id}/abort"),
    ("GET", "/admin/stats"),
    ("GET", "/admin/dead-letters"),
    ("POST", "/admin/dead-letters/replay"),
    ("GET", "/admin/ui"),
    ("GET", "/admin/ui/login"),
    ("POST", "/admin/ui/login"),
    ("POST", "/admin/ui/logout"),
    ("GET", "/admin/ui/sagas/{saga_id}"),
    ("POST", "/admin/ui/sagas/{saga_id}/retry"),
    ("POST", "/admin/ui/sagas/{saga_id}/abort"),
    ("GET", "/health"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/internal/sagas/unfinished"),
];

/// The committed copy of the document.
const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi/coordinator.json");

/// Regenerate the committed file with `OPENAPI_WRITE=1 cargo test -p coordinator --test openapi`.
#[tokio::test]
async fn the_openapi_document_matches_the_routes() {
    let h = start(None).await;
    assert_openapi_matches(&h.admin, COMMITTED.as_ref(), KNOWN_ROUTES).await;
}

#[tokio::test]
async fn every_documented_path_refuses_other_methods() {
    let h = start(None).await;
    assert_unsupported_methods_refused(&h.admin).await;
}
