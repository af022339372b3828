//! The OpenAPI document of payment-svc (`docs/openapi/payment.json`, served at `/openapi.json`) against the running
//! service: every operation it describes is a route the service has, and every route the service has is in it.

use platform::testing::{openapi_operations, openapi_routes};
use serde_json::Value;

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
    let client = reqwest::Client::new();
    let served = client.get(format!("{}/openapi.json", app.address)).send().await.unwrap();
    assert_eq!(served.status(), 200);
    let doc: Value = served.json().await.unwrap();
    let on_disk: Value = serde_json::from_str(include_str!("../../../docs/openapi/payment.json")).unwrap();
    assert_eq!(doc, on_disk, "the served document is not the one in docs/openapi");
    assert_eq!(doc["openapi"], "3.0.3");

    let operations = openapi_operations(&doc);
    assert!(operations.len() >= KNOWN_ROUTES.len(), "{operations:?}");
    for (method, path) in operations {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = client.request(method.clone(), format!("{}{path}", app.address)).send().await.unwrap();
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
