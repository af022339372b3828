//! The attacks on the admin surface that issue 16 names, each tried against a running coordinator and refused:
//! a form posted from another site (CSRF) in the token-less loopback mode and with the login cookie, DNS
//! rebinding (a foreign `Host` on a loopback connection), a token in a URL, framing, a cookie a script or another
//! site could use, and the read-only token trying to change something, on every such operation of the served
//! document. Each refusal is checked to have changed nothing, and the legitimate request next to it to work.

mod support;

use futures::FutureExt;
use platform::testing::{eventually_ok, openapi_operations};
use reqwest::{header, Method, RequestBuilder, Response};
use serde_json::{json, Value};
use shared_contracts::{CoordinatorMessage, SagaId};
use support::{browser::Browser, request, start, start_with, Harness, WAIT};

const TOKEN: &str = "s3cret";
const READ_TOKEN: &str = "r3ad-only";
/// The login and logout, open to a caller without a credential.
const OPEN: [&str; 2] = ["/admin/ui/login", "/admin/ui/logout"];
/// The UUID `openapi_operations` puts into a path for an `{id}`.
const SAMPLE_ID: &str = "6f1c1d1e-8a40-4c43-9d8e-5f3f2b7d9a10";

/// A saga that has started and waits for its participants.
async fn executing_saga(h: &Harness, order_id: &str) -> SagaId {
    let saga = SagaId::new();
    h.send(saga, CoordinatorMessage::StartCheckout(request(order_id))).await;
    let started = eventually_ok("the saga to start", WAIT, async || match status_of(h, saga).await {
        status if status == "executing" => Ok(Some(())),
        status => Err(anyhow::anyhow!("the saga is {status}")),
    });
    started.await.unwrap_or_else(|e| panic!("{e:#}"));
    saga
}

/// The saga's status as the API shows it to the operator (whose token is ignored in the loopback mode).
async fn status_of(h: &Harness, saga: SagaId) -> Value {
    let response = h.http.get(format!("{}/admin/sagas/{saga}", h.admin)).bearer_auth(TOKEN).send().await.unwrap();
    let body: Value = response.json().await.unwrap();
    body["saga"]["status"].clone()
}

/// The Abort button of the saga's page as a form posted by a browser: `origin` as its `Origin` header, and the
/// `Sec-Fetch-Site` the browser would send with it.
fn abort_form(h: &Harness, saga: SagaId, origin: &str, fetch_site: &str) -> RequestBuilder {
    h.http
        .post(format!("{}/admin/ui/sagas/{saga}/abort", h.admin))
        .header(header::ORIGIN, origin)
        .header("Sec-Fetch-Site", fetch_site)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body("")
}

/// Logs in with `token` through the form, as a browser on the pages does, and returns the `Set-Cookie` value.
async fn log_in(h: &Harness, token: &str) -> String {
    let response = h
        .http
        .post(format!("{}/admin/ui/login", h.admin))
        .header("Sec-Fetch-Site", "same-origin")
        .header(header::ORIGIN, "null")
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303, "the login refused {token}");
    response.headers()[header::SET_COOKIE].to_str().unwrap().to_owned()
}

async fn text(response: Response) -> (u16, String) {
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn a_form_from_another_site_is_refused_in_the_loopback_mode() {
    let h = start(None).await;
    let saga = executing_saga(&h, "order-csrf-loopback").await;
    for (origin, site) in [("http://evil.example", "cross-site"), ("http://evil.example", ""), ("null", "cross-site")] {
        let (status, page) = text(abort_form(&h, saga, origin, site).send().await.unwrap()).await;
        assert_eq!(status, 403, "{origin} {site}: {page}");
        assert!(page.contains("another site"), "{page}");
    }
    // The JSON API too: a page elsewhere can post to it without reading the answer.
    let api =
        h.http.post(format!("{}/admin/sagas/{saga}/abort", h.admin)).header(header::ORIGIN, "http://evil.example");
    assert_eq!(api.send().await.unwrap().status(), 403);
    let referer =
        h.http.post(format!("{}/admin/sagas/{saga}/abort", h.admin)).header(header::REFERER, "http://evil.example/x");
    assert_eq!(referer.send().await.unwrap().status(), 403);
    assert_eq!(status_of(&h, saga).await, "executing", "a form from another site aborted the saga");

    // The page's own button, and sagactl (no Origin, no cookie), still work.
    let own = abort_form(&h, saga, "null", "same-origin").send().await.unwrap();
    assert_eq!(own.status(), 303);
    assert_eq!(status_of(&h, saga).await, "compensating");
    let other = executing_saga(&h, "order-csrf-tool").await;
    assert_eq!(h.post(&format!("/admin/sagas/{other}/abort")).await.0, 200);
}

#[tokio::test]
async fn a_form_from_another_site_is_refused_with_the_login_cookie() {
    let h = start(Some(TOKEN)).await;
    let saga = executing_saga(&h, "order-csrf-cookie").await;
    let cookie = log_in(&h, TOKEN).await;
    let cookie = cookie.split(';').next().unwrap().to_owned();
    for (origin, site) in [("http://evil.example", "cross-site"), ("http://evil.example", "")] {
        let forged = abort_form(&h, saga, origin, site).header(header::COOKIE, &cookie).send().await.unwrap();
        assert_eq!(forged.status(), 403, "{origin} {site}");
    }
    // A browser that names no origin at all is not let in on the cookie either.
    let bare = h.http.post(format!("{}/admin/ui/sagas/{saga}/abort", h.admin)).header(header::COOKIE, &cookie);
    assert_eq!(bare.send().await.unwrap().status(), 403);
    assert_eq!(status_of(&h, saga).await, "executing", "a form from another site aborted the saga");

    let own = abort_form(&h, saga, "null", "same-origin").header(header::COOKIE, &cookie).send().await.unwrap();
    assert_eq!(own.status(), 303);
    assert_eq!(status_of(&h, saga).await, "compensating");
}

#[tokio::test]
async fn dns_rebinding_is_refused_by_the_host_allow_list_in_every_mode() {
    for token in [None, Some(TOKEN)] {
        let h = start(token).await;
        let saga = executing_saga(&h, "order-rebinding").await;
        let port = h.admin.rsplit(':').next().unwrap();
        // evil.example now resolves to 127.0.0.1: the browser connects to the coordinator, names evil.example as
        // the host, and considers the coordinator's pages its own origin.
        let evil = format!("evil.example:{port}");
        let with_host = |method: Method, path: &str| {
            let request = h.http.request(method, format!("{}{path}", h.admin)).header(header::HOST, &evil);
            let request =
                request.header(header::ORIGIN, format!("http://{evil}")).header("Sec-Fetch-Site", "same-origin");
            match token {
                Some(token) => request.bearer_auth(token),
                None => request,
            }
        };
        for (method, path) in [
            (Method::GET, "/admin/ui".to_owned()),
            (Method::GET, "/admin/stats".to_owned()),
            (Method::GET, "/admin/ui/login".to_owned()),
            (Method::POST, format!("/admin/ui/sagas/{saga}/abort")),
            (Method::POST, format!("/admin/sagas/{saga}/abort")),
        ] {
            let (status, body) = text(with_host(method.clone(), &path).send().await.unwrap()).await;
            assert_eq!(status, 403, "{token:?} {method} {path}: {body}");
            assert!(body.contains("ADMIN_ALLOWED_HOSTS"), "{body}");
        }
        assert_eq!(status_of(&h, saga).await, "executing", "a rebound page aborted the saga");
        // The names of loopback are answered.
        for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}"), format!("[::1]:{port}")] {
            let request = h.http.get(format!("{}/admin/stats", h.admin)).header(header::HOST, &host).bearer_auth(TOKEN);
            assert_eq!(request.send().await.unwrap().status(), 200, "{host}");
        }
    }
}

#[tokio::test]
async fn a_host_named_in_admin_allowed_hosts_is_answered() {
    let h = start_with(|config| config.admin_allowed_hosts = vec!["admin.example".into()]).await;
    let request = |host: &str| h.http.get(format!("{}/admin/stats", h.admin)).header(header::HOST, host);
    assert_eq!(request("admin.example:8443").send().await.unwrap().status(), 200);
    // The bind address is always on the list; the defaults are replaced.
    let port = h.admin.rsplit(':').next().unwrap();
    assert_eq!(request(&format!("127.0.0.1:{port}")).send().await.unwrap().status(), 200);
    assert_eq!(request(&format!("localhost:{port}")).send().await.unwrap().status(), 403);
}

#[tokio::test]
async fn a_token_in_a_url_is_refused_and_never_echoed() {
    let h = start(Some(TOKEN)).await;
    for path in [
        format!("/admin/ui/login?token={TOKEN}"),
        format!("/admin/ui?token={TOKEN}"),
        format!("/admin/stats?access_token={TOKEN}"),
        format!("/admin/sagas?limit=1&admin_token={TOKEN}"),
    ] {
        let response = h.http.get(format!("{}{path}", h.admin)).send().await.unwrap();
        assert!(response.headers().get(header::SET_COOKIE).is_none(), "{path} set a cookie");
        let (status, body) = text(response).await;
        assert_eq!(status, 400, "{path}");
        assert!(body.contains("never taken from a URL") && !body.contains(TOKEN), "{path}: {body}");
    }
    let post = h.http.post(format!("{}/admin/ui/login?token={TOKEN}", h.admin)).form(&[("token", TOKEN)]);
    let response = post.send().await.unwrap();
    assert!(response.headers().get(header::SET_COOKIE).is_none());
    assert_eq!(response.status(), 400);
    // The form is how a browser logs in; the token is in the body.
    let form = text(h.http.get(format!("{}/admin/ui/login", h.admin)).send().await.unwrap()).await;
    assert_eq!(form.0, 200);
    assert!(form.1.contains("<form method=\"post\" action=\"/admin/ui/login\">"), "{}", form.1);
    assert!(form.1.contains("type=\"password\" name=\"token\""), "{}", form.1);
}

#[tokio::test]
async fn every_admin_answer_forbids_framing_sniffing_caching_and_referrers() {
    let h = start(Some(TOKEN)).await;
    let requests = [
        h.http.get(format!("{}/admin/ui", h.admin)).bearer_auth(TOKEN),
        h.http.get(format!("{}/admin/stats", h.admin)).bearer_auth(TOKEN),
        h.http.get(format!("{}/admin/ui/login", h.admin)),
        h.http.get(format!("{}/admin/ui", h.admin)),
        h.http.get(format!("{}/admin/stats", h.admin)).header(header::HOST, "evil.example"),
        h.http.get(format!("{}/admin/no-such-route", h.admin)).bearer_auth(TOKEN),
        h.http.put(format!("{}/admin/stats", h.admin)).bearer_auth(TOKEN),
    ];
    for request in requests {
        let response = request.send().await.unwrap();
        let headers = response.headers();
        let what = format!("{} {}", response.status(), response.url());
        assert_eq!(headers["x-frame-options"], "DENY", "{what}");
        assert_eq!(
            headers["content-security-policy"],
            "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; form-action 'self'; \
             frame-ancestors 'none'",
            "{what}"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff", "{what}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{what}");
        assert_eq!(headers["cache-control"], "no-store", "{what}");
    }
}

#[tokio::test]
async fn the_login_cookie_is_httponly_strict_on_admin_and_secure_over_https() {
    let h = start(Some(TOKEN)).await;
    assert_eq!(log_in(&h, TOKEN).await, format!("admin_token={TOKEN}; Path=/admin; HttpOnly; SameSite=Strict"));
    let behind_tls = h
        .http
        .post(format!("{}/admin/ui/login", h.admin))
        .header("X-Forwarded-Proto", "https")
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(behind_tls.status(), 303);
    assert_eq!(
        behind_tls.headers()[header::SET_COOKIE],
        format!("admin_token={TOKEN}; Path=/admin; HttpOnly; SameSite=Strict; Secure").as_str()
    );
    let wrong = h.http.post(format!("{}/admin/ui/login", h.admin)).form(&[("token", "nope")]).send().await.unwrap();
    assert!(wrong.headers().get(header::SET_COOKIE).is_none());
    let (status, page) = text(wrong).await;
    assert_eq!(status, 401);
    assert!(page.contains("not an admin token") && !page.contains("nope"), "{page}");
    // Logout clears the cookie (and the one earlier versions set on /admin/ui).
    let logout = h.http.post(format!("{}/admin/ui/logout", h.admin)).send().await.unwrap();
    assert_eq!(logout.status(), 303);
    let cleared: Vec<_> = logout.headers().get_all(header::SET_COOKIE).iter().map(|v| v.to_str().unwrap()).collect();
    assert_eq!(
        cleared,
        [
            "admin_token=; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=0",
            "admin_token=; Path=/admin/ui; HttpOnly; SameSite=Strict; Max-Age=0"
        ]
    );
}

/// Every `(METHOD, concrete path)` under `/admin` in the served OpenAPI document, but the login and logout.
async fn admin_operations(h: &Harness) -> Vec<(Method, String)> {
    let doc: Value = reqwest::get(format!("{}/openapi.json", h.admin)).await.unwrap().json().await.unwrap();
    openapi_operations(&doc)
        .into_iter()
        .filter(|(_, path)| path.starts_with("/admin/") && !OPEN.contains(&path.as_str()))
        .map(|(method, path)| (Method::from_bytes(method.as_bytes()).unwrap(), path))
        .collect()
}

#[tokio::test]
async fn the_read_only_token_reads_everything_and_changes_nothing() {
    let h = start_with(|config| {
        config.admin_token = Some(TOKEN.into());
        config.admin_read_token = Some(READ_TOKEN.into());
    })
    .await;
    let saga = executing_saga(&h, "order-read-only").await;
    let cookie = log_in(&h, READ_TOKEN).await.split(';').next().unwrap().to_owned();
    let operations = admin_operations(&h).await;
    let writes: Vec<_> = operations.iter().filter(|(method, _)| *method != Method::GET).collect();
    assert!(writes.len() >= 5, "the document lists too few admin writes: {writes:?}");
    for (method, path) in &operations {
        // The operations on one saga act on the running one, so that a refusal would be seen to change nothing.
        let path = path.replace(SAMPLE_ID, &saga.to_string());
        let url = format!("{}{path}", h.admin);
        let bearer = h.http.request(method.clone(), &url).bearer_auth(READ_TOKEN).send().await.unwrap();
        if *method == Method::GET {
            assert!(![401, 403].contains(&bearer.status().as_u16()), "{method} {path} refused the read-only token");
            continue;
        }
        let (status, body) = text(bearer).await;
        assert_eq!(status, 403, "{method} {path} let the read-only token act: {body}");
        assert!(body.contains("read-only token (ADMIN_READ_TOKEN) may only read"), "{method} {path}: {body}");
        if path.starts_with("/admin/ui") {
            let browser = h
                .http
                .request(method.clone(), &url)
                .header(header::COOKIE, &cookie)
                .header("Sec-Fetch-Site", "same-origin")
                .header(header::ORIGIN, "null");
            assert_eq!(browser.send().await.unwrap().status(), 403, "{method} {path} let the read-only cookie act");
        }
    }
    assert_eq!(status_of(&h, saga).await, "executing", "the read-only token changed the saga");
    // The operator token does what the read-only one may not.
    for (method, path) in writes {
        let path = path.replace(SAMPLE_ID, &saga.to_string());
        let operator = h.http.request(method.clone(), format!("{}{path}", h.admin)).bearer_auth(TOKEN).send().await;
        let status = operator.unwrap().status().as_u16();
        assert!(![401, 403].contains(&status), "{method} {path} refused the operator token: {status}");
    }
}

/// Has the page open in `browser` post a form (no fields) to `action`, as a page of any site can.
async fn post_form_from_page(browser: &Browser, action: &str) {
    let script = "const form = document.createElement('form'); form.method = 'post'; form.action = arguments[0]; \
                  document.body.appendChild(form); form.submit();";
    browser.session_call(Method::POST, "/execute/sync", json!({"script": script, "args": [action]})).await;
}

#[tokio::test]
async fn a_real_browser_cannot_post_from_another_site_but_can_from_the_coordinators_own() {
    let h = start(None).await;
    let saga = executing_saga(&h, "order-browser").await;
    let browser = Browser::launch().await;
    let outcome = std::panic::AssertUnwindSafe(async {
        let port = h.admin.rsplit(':').next().unwrap();
        let abort = format!("{}/admin/ui/sagas/{saga}/abort", h.admin);
        // A page of another site (localhost is not 127.0.0.1 to a browser) posts to the operator's port forward.
        browser.open(&format!("http://localhost:{port}/health")).await;
        post_form_from_page(&browser, &abort).await;
        browser.text_when("h1", |text| text.starts_with("403")).await;
        assert_eq!(status_of(&h, saga).await, "executing", "a real browser's cross-site form aborted the saga");
        // The same form from a page of the coordinator's own origin goes through.
        browser.open(&format!("{}/health", h.admin)).await;
        post_form_from_page(&browser, &abort).await;
        let done = eventually_ok("the abort to take", WAIT, async || match status_of(&h, saga).await {
            status if status == "compensating" => Ok(Some(())),
            status => Err(anyhow::anyhow!("the saga is {status}")),
        });
        done.await.unwrap_or_else(|e| panic!("{e:#}"));
    })
    .catch_unwind()
    .await;
    browser.quit().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

#[tokio::test]
async fn a_real_browser_logs_in_with_the_form_and_out_again() {
    let h = start(Some(TOKEN)).await;
    let browser = Browser::launch().await;
    let outcome = std::panic::AssertUnwindSafe(async {
        browser.open(&format!("{}/admin/ui/login", h.admin)).await;
        browser.type_into("input[name=token]", TOKEN).await;
        browser.click("#login").await;
        let overview = format!("{}/admin/ui", h.admin);
        let arrived =
            eventually_ok("the login to reach the overview", WAIT, async || match browser.current_url().await {
                url if url == overview => Ok(Some(())),
                url => Err(anyhow::anyhow!("the browser is at {url}")),
            });
        arrived.await.unwrap_or_else(|e| panic!("{e:#}"));
        // The cookie let the browser in: the overview is not the refusal page.
        let title = browser.text_when("h1", |text| !text.is_empty()).await;
        assert!(!title.starts_with("401"), "the login cookie did not open the pages: {title}");
        assert!(!browser.current_url().await.contains(TOKEN));
        // Logging out (the form posted from the pages' own origin) clears the cookie.
        post_form_from_page(&browser, &format!("{}/admin/ui/logout", h.admin)).await;
        browser.text_when("h1", |text| text == "Log in").await;
        browser.open(&overview).await;
        browser.text_when("h1", |text| text.starts_with("401")).await;
    })
    .catch_unwind()
    .await;
    browser.quit().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
