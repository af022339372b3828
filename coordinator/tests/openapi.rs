//! The coordinator's OpenAPI document (`docs/openapi/coordinator.json`, served at `/openapi.json`) against the
//! running coordinator: every operation it describes is a route, and every route is described.

mod support;

use platform::testing::assert_openapi_matches;
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
    ("GET", "/admin/ui/sagas/{saga_id}"),
    ("POST", "/admin/ui/sagas/{saga_id}/retry"),
    ("POST", "/admin/ui/sagas/{saga_id}/abort"),
    ("GET", "/health"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
];

#[tokio::test]
async fn the_openapi_document_matches_the_routes() {
    let h = start(None).await;
    assert_openapi_matches(&h.admin, include_str!("../../docs/openapi/coordinator.json"), KNOWN_ROUTES).await;
}
