//! The coordinator's OpenAPI document (`docs/openapi/coordinator.json`, served at `/openapi.json`) against the
//! running coordinator: every operation it describes is a route, and every route is described.

mod support;

use platform::testing::{openapi_operations, openapi_routes};
use serde_json::Value;
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
    let (status, doc) = h.get("/openapi.json").await;
    assert_eq!(status, 200);
    let on_disk: Value = serde_json::from_str(include_str!("../../docs/openapi/coordinator.json")).unwrap();
    assert_eq!(doc, on_disk, "the served document is not the one in docs/openapi");

    let operations = openapi_operations(&doc);
    assert!(operations.len() >= KNOWN_ROUTES.len(), "{operations:?}");
    for (method, path) in operations {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = h.http.request(method.clone(), format!("{}{path}", h.admin)).send().await.unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or_default();
        let unknown = status == 404 && body["error"].as_str().is_some_and(|e| e.starts_with("no route for"));
        assert!(!unknown && status != 405, "{method} {path} is documented but not served: {status} {body}");
    }

    let documented = openapi_routes(&doc);
    for (method, path) in KNOWN_ROUTES {
        assert!(
            documented.iter().any(|(m, p)| m == method && p == path),
            "{method} {path} is served but not documented"
        );
    }
}
