//! Who may use the admin API and the operator pages when a token is configured: every route under `/admin`, as
//! the served OpenAPI document lists them (so a route added later is covered too), refuses a caller without the
//! token, or with a wrong one; the pages' login and logout stay open, since they are how a browser presents and
//! drops the token. (tests/attacks.rs tries the attacks on the rest of the rules.)

mod support;

use platform::testing::openapi_operations;
use serde_json::Value;
use support::start;

/// The admin routes that must answer without a credential.
const LOGIN: &str = "/admin/ui/login";
const LOGOUT: &str = "/admin/ui/logout";

/// Every `(METHOD, concrete path)` under `/admin` in the served OpenAPI document, but the login.
async fn admin_operations(admin: &str) -> Vec<(reqwest::Method, String)> {
    let doc: Value = reqwest::get(format!("{admin}/openapi.json")).await.unwrap().json().await.unwrap();
    let operations: Vec<(reqwest::Method, String)> = openapi_operations(&doc)
        .into_iter()
        .filter(|(_, path)| path.starts_with("/admin/") && path != LOGIN && path != LOGOUT)
        .map(|(method, path)| (reqwest::Method::from_bytes(method.as_bytes()).unwrap(), path))
        .collect();
    assert!(operations.len() >= 11, "the document lists too few admin routes: {operations:?}");
    operations
}

#[tokio::test]
async fn with_a_token_every_admin_route_refuses_a_caller_without_it() {
    let h = start(Some("s3cret")).await;
    for (method, path) in admin_operations(&h.admin).await {
        let url = format!("{}{path}", h.admin);
        let anonymous = h.http.request(method.clone(), &url).send().await.unwrap();
        assert_eq!(anonymous.status(), 401, "{method} {path} let an anonymous caller in");
        let wrong = h.http.request(method.clone(), &url).bearer_auth("wrong").send().await.unwrap();
        assert_eq!(wrong.status(), 401, "{method} {path} took a wrong token");
        // The cookie is the pages' way to carry the token; the JSON API does not take it. Sent as a browser on
        // the pages sends it, so that a change is not refused as coming from another site.
        let cookie = h
            .http
            .request(method.clone(), &url)
            .header("Cookie", "admin_token=s3cret")
            .header("Sec-Fetch-Site", "same-origin")
            .header("Origin", "null")
            .send()
            .await;
        let cookie = cookie.unwrap().status();
        if path.starts_with("/admin/ui") {
            assert!(![401, 403].contains(&cookie.as_u16()), "{method} {path} refused the login cookie");
        } else {
            assert_eq!(cookie, 401, "{method} {path} took the login cookie");
        }
        let bearer = h.http.request(method.clone(), &url).bearer_auth("s3cret").send().await.unwrap();
        assert!(![401, 403].contains(&bearer.status().as_u16()), "{method} {path} refused the token");
    }
    // The login checks the token itself.
    assert_eq!(h.http.get(format!("{}{LOGIN}", h.admin)).send().await.unwrap().status(), 200);
    let login = h.http.post(format!("{}{LOGIN}", h.admin)).form(&[("token", "s3cret")]).send().await.unwrap();
    assert_eq!(login.status(), 303);
    assert_eq!(h.http.post(format!("{}{LOGOUT}", h.admin)).send().await.unwrap().status(), 303);
}

#[tokio::test]
async fn refusals_answer_the_way_their_route_answers_errors() {
    let h = start(Some("s3cret")).await;
    let api = h.http.get(format!("{}/admin/stats", h.admin)).send().await.unwrap();
    assert_eq!(api.status(), 401);
    let body: Value = api.json().await.unwrap();
    assert!(body["error"].is_string(), "{body}");
    let page = h.http.get(format!("{}/admin/ui", h.admin)).send().await.unwrap();
    assert_eq!(page.status(), 401);
    assert!(page.text().await.unwrap().contains("<h1>401 "), "the pages answer a refusal with a page");
    // Outside the scope, nothing changes: probes, scrapers and the participants' count need no token.
    for open in ["/health", "/metrics", "/openapi.json", "/internal/sagas/unfinished"] {
        assert_eq!(h.http.get(format!("{}{open}", h.admin)).send().await.unwrap().status(), 200, "{open}");
    }
}
