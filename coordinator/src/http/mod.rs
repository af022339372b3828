//! The coordinator's HTTP surface: the admin API under `/admin/` for operators (JSON, plus the dead-letter
//! queue), the operator pages under `/admin/ui`, the count of unfinished sagas other services ask for under
//! `/internal/`, the OpenAPI document, and who may call them.
//!
//! Who may is decided once, by [`admin_only`], a middleware around the whole `/admin` scope, so that a route
//! added there cannot forget it. Its rules ([`AdminAccess::check`]), in order:
//!
//! 1. The `Host` header must be on the allow-list (`ADMIN_ALLOWED_HOSTS`), whatever the credential: a page on
//!    another site whose name has been made to resolve to 127.0.0.1 (DNS rebinding) names its own host there.
//! 2. No token in a URL: a query parameter `token`, `access_token` or `admin_token` is a 400, never echoed.
//! 3. A request that may change something (any method but GET, HEAD, OPTIONS) must not come from another site:
//!    `Sec-Fetch-Site` must not be `cross-site` or `same-site`, and `Origin` (else `Referer`) must name the
//!    request's own host. With none of the three, it is a non-browser client (sagactl, curl), let on only if it
//!    carries no login cookie. A browser posting one of the pages' forms sends `Sec-Fetch-Site: same-origin`
//!    (its `Origin` is `null`, as the pages' `Referrer-Policy: no-referrer` asks).
//! 4. A credential: the operator token (`ADMIN_TOKEN`) or the read-only token (`ADMIN_READ_TOKEN`) as a bearer
//!    header, or on the pages from the login cookie; without `ADMIN_TOKEN`, a loopback peer is let in instead.
//!    The login and logout ([`login`]) need none: they are how a browser gets and drops the cookie.
//! 5. The read-only token may only use safe methods (and log out).
//!
//! Every answer under `/admin`, refusals included, carries [`HARDENING`]: no framing, no sniffing, no caching,
//! no referrer, and a content policy that allows no script.

mod admin;
mod bulk;
mod dead_letters;
mod internal;
mod login;
mod openapi;
mod ui;
mod ui_dead_letters;
mod ui_ops;

use actix_web::{
    body::{EitherBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::{
        header::{self, HeaderName, HeaderValue},
        Method,
    },
    middleware::{from_fn, Next},
    web, HttpMessage as _, HttpRequest, ResponseError,
};
use percent_encoding::percent_decode_str;
use platform::http::ApiError;

use crate::audit::{Actor, Credential, OPERATOR_HEADER};
use utoipa::OpenApi as _;

/// Registers the admin routes behind [`admin_only`], the operator pages, the internal count and `/openapi.json`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/admin")
            .wrap(from_fn(admin_only))
            .configure(login::configure)
            // Before admin's, so that `/sagas/bulk/...` is not taken for a saga ID.
            .configure(bulk::configure)
            .configure(admin::configure)
            .configure(dead_letters::configure)
            .configure(ui::configure)
            .configure(ui_ops::configure)
            .configure(ui_dead_letters::configure),
    );
    internal::configure(cfg);
    cfg.service(platform::http::openapi(openapi::CoordinatorApi::openapi()));
}

/// The headers of every answer under `/admin`. The pages use inline styles and inline SVG, and no script.
const HARDENING: [(HeaderName, &str); 5] = [
    (header::X_FRAME_OPTIONS, "DENY"),
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; form-action 'self'; \
         frame-ancestors 'none'",
    ),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::CACHE_CONTROL, "no-store"),
];

/// Lets a request into the `/admin` scope only if [`AdminAccess`] allows it; a refused one is answered as its
/// kind of route answers errors: an error page for the operator pages, the JSON error body for the API. Either
/// way the answer carries [`HARDENING`].
async fn admin_only<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let page = ui::is_page(req.path());
    let verdict = match req.app_data::<web::Data<AdminAccess>>() {
        Some(access) => access.check(req.request(), page, login::is_open(req.path())),
        None => Err(ApiError::Forbidden("the admin API has no access rules configured".into())),
    };
    let mut response = match verdict {
        Ok(credential) => {
            if let Some(credential) = credential {
                let named = req.headers().get(OPERATOR_HEADER).and_then(|value| value.to_str().ok());
                req.extensions_mut().insert(Actor::new(named, credential));
            }
            next.call(req).await?.map_into_left_body()
        }
        Err(refusal) => {
            let response = if page { ui::error_page(&refusal) } else { refusal.error_response() };
            req.into_response(response).map_into_right_body()
        }
    };
    let headers = response.headers_mut();
    for (name, value) in HARDENING {
        headers.insert(name, HeaderValue::from_static(value));
    }
    Ok(response)
}

/// Who may use the admin surface (see the module's rules): holders of the operator token, holders of the
/// read-only token for reading, or, when no operator token is configured, callers on the loopback interface;
/// always only under an allowed `Host`. The operator pages also take a token from the [`TOKEN_COOKIE`] cookie,
/// which is how a browser holds it (a plain HTML form cannot send a bearer header).
pub struct AdminAccess {
    token: Option<String>,
    read_token: Option<String>,
    hosts: Vec<String>,
}

impl AdminAccess {
    /// Access guarded by the operator `token` (loopback-only without one) and the `read_token`, answering under
    /// the `hosts` (lower-case names or addresses, each optionally with `:port`).
    pub fn new(token: Option<String>, read_token: Option<String>, hosts: Vec<String>) -> Self {
        Self { token, read_token, hosts }
    }

    /// Whether a token is configured at all, so that the login has something to check.
    pub fn has_tokens(&self) -> bool {
        self.token.is_some() || self.read_token.is_some()
    }

    /// The credential `presented` is, if it is one of the configured tokens.
    pub fn credential_of(&self, presented: &str) -> Option<Credential> {
        let is = |token: &Option<String>| {
            token.as_ref().is_some_and(|token| constant_time_eq(presented.as_bytes(), token.as_bytes()))
        };
        if is(&self.token) {
            Some(Credential::OperatorToken)
        } else if is(&self.read_token) {
            Some(Credential::ReadOnlyToken)
        } else {
            None
        }
    }

    /// Refuses `req` unless the rules let it in, else says which credential did: none for an `open` path (the
    /// login) that was not given one. `page` says whether it is for an operator page, which also accepts the
    /// token from the cookie.
    fn check(&self, req: &HttpRequest, page: bool, open: bool) -> Result<Option<Credential>, ApiError> {
        let host = self.check_host(req)?;
        refuse_token_in_query(req)?;
        let unsafe_method = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
        if unsafe_method {
            refuse_other_sites(req, host)?;
        }
        let credential = match self.credential(req, page) {
            Ok(credential) => Some(credential),
            Err(_) if open => None,
            Err(refusal) => return Err(refusal),
        };
        if unsafe_method && !open && credential == Some(Credential::ReadOnlyToken) {
            return Err(ApiError::Forbidden(format!(
                "the read-only token (ADMIN_READ_TOKEN) may only read; {} needs the operator token",
                req.method()
            )));
        }
        Ok(credential)
    }

    /// The request's `Host` (or, in HTTP/2, authority), refused unless it is on the allow-list.
    fn check_host<'a>(&self, req: &'a HttpRequest) -> Result<&'a str, ApiError> {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|value| value.to_str().ok())
            .or_else(|| req.uri().authority().map(|authority| authority.as_str()));
        match host {
            Some(host) if host_allowed(&self.hosts, host) => Ok(host),
            Some(host) => Err(ApiError::Forbidden(format!(
                "the admin surface does not answer to the host {:?}; add it to ADMIN_ALLOWED_HOSTS if it is yours",
                shorten(host)
            ))),
            None => Err(ApiError::Forbidden("the admin surface answers only requests that name their Host".into())),
        }
    }

    /// The credential `req` presents, or the loopback peer's when no operator token is configured.
    fn credential(&self, req: &HttpRequest, page: bool) -> Result<Credential, ApiError> {
        let bearer = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        let cookie = if page { cookie(req, TOKEN_COOKIE).filter(|value| !value.is_empty()) } else { None };
        if let Some(credential) = bearer.or(cookie).and_then(|presented| self.credential_of(presented)) {
            return Ok(credential);
        }
        match &self.token {
            Some(_) => Err(ApiError::Unauthorized("the admin API needs a valid bearer token".into())),
            None if req.peer_addr().is_some_and(|peer| peer.ip().is_loopback()) => Ok(Credential::Loopback),
            None => Err(ApiError::Forbidden(
                "no ADMIN_TOKEN is configured, so the admin API answers loopback callers only".into(),
            )),
        }
    }
}

/// Whether `host` (a `Host` header: a name, an IPv4 address or a bracketed IPv6 address, and an optional port) is
/// on `allowed`, whose entries name a host on any port or, with `:port`, on that port only.
fn host_allowed(allowed: &[String], host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    let (name, port) = match host.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((_, after)) => (&host[..host.len() - after.len()], after.strip_prefix(':')),
            None => return false,
        },
        None => match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host.as_str(), None),
        },
    };
    let port_usable = port.is_none_or(|port| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()));
    !name.is_empty() && port_usable && allowed.iter().any(|entry| *entry == name || *entry == host)
}

/// The first 100 characters of `text`, for a message that names what the caller sent.
fn shorten(text: &str) -> String {
    text.chars().take(100).collect()
}

/// The query parameters that would carry a token, refused wherever they appear.
const TOKEN_PARAMETERS: [&str; 3] = ["token", "access_token", "admin_token"];

/// Refuses a token in the query string: it would land in browser history and access logs. The answer does not
/// repeat it.
fn refuse_token_in_query(req: &HttpRequest) -> Result<(), ApiError> {
    let named_token =
        req.query_string().split('&').map(|pair| pair.split_once('=').map_or(pair, |(key, _)| key)).any(|key| {
            TOKEN_PARAMETERS.contains(&percent_decode_str(key).decode_utf8_lossy().to_ascii_lowercase().as_str())
        });
    match named_token {
        true => Err(ApiError::BadRequest(
            "tokens are never taken from a URL, where they would be logged: send a bearer header, or log in with \
             the form at /admin/ui/login"
                .into(),
        )),
        false => Ok(()),
    }
}

/// Refuses a request that a browser says comes from another site, or that names an origin other than `host`, the
/// request's own (see the module's rule 3).
fn refuse_other_sites(req: &HttpRequest, host: &str) -> Result<(), ApiError> {
    let headers = req.headers();
    let text = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let refused = || Err(ApiError::Forbidden("this request comes from another site".into()));
    let fetch_site = text("sec-fetch-site");
    if matches!(fetch_site, Some("cross-site" | "same-site")) {
        return refused();
    }
    match (text(header::ORIGIN.as_str()), text(header::REFERER.as_str())) {
        // What a browser sends for a form on these pages, which ask for no referrer.
        (Some("null"), _) if fetch_site == Some("same-origin") => Ok(()),
        (Some(origin), _) if same_host(origin, host) => Ok(()),
        (Some(_), _) => refused(),
        (None, Some(referer)) if same_host(referer, host) => Ok(()),
        (None, Some(_)) => refused(),
        (None, None) if fetch_site.is_some() || cookie(req, TOKEN_COOKIE).is_some() => {
            Err(ApiError::Forbidden("a browser that names no origin may not change anything here".into()))
        }
        (None, None) => Ok(()),
    }
}

/// Whether `url` (an `Origin` or a `Referer`) is on `host` (the request's `Host`), over http or https.
fn same_host(url: &str, host: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")) else { return false };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    !host.is_empty() && authority.eq_ignore_ascii_case(host)
}

/// The cookie that carries an admin token for the operator pages.
const TOKEN_COOKIE: &str = "admin_token";

/// The value of cookie `name` in `req`. Parsed by hand: actix's cookie support is a feature this workspace does
/// not enable for one cookie.
fn cookie<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use actix_web::{http::StatusCode, test, App, HttpResponse};

    use super::*;

    fn access(token: Option<&str>, read_token: Option<&str>) -> AdminAccess {
        let hosts = crate::config::DEFAULT_ADMIN_HOSTS.split(',').map(str::to_owned).collect();
        AdminAccess::new(token.map(str::to_owned), read_token.map(str::to_owned), hosts)
    }

    /// The admin scope as [`configure`] wraps it, around stand-in routes: the rules, without a database.
    async fn call(access: AdminAccess, req: test::TestRequest) -> (StatusCode, String) {
        let app = test::init_service(
            App::new().app_data(web::Data::new(access)).service(
                web::scope("/admin")
                    .wrap(from_fn(admin_only))
                    .route("/stats", web::get().to(HttpResponse::Ok))
                    .route("/sagas/x/retry", web::post().to(HttpResponse::Ok))
                    .route("/ui", web::get().to(HttpResponse::Ok))
                    .route("/ui/sagas/x/abort", web::post().to(HttpResponse::Ok))
                    .route("/ui/login", web::post().to(HttpResponse::Ok)),
            ),
        )
        .await;
        let response = test::call_service(&app, req.to_request()).await;
        let status = response.status();
        let body = test::read_body(response).await;
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    fn from(peer: &str, uri: &str) -> test::TestRequest {
        test::TestRequest::get()
            .uri(uri)
            .peer_addr(peer.parse().expect("a socket address"))
            .insert_header((header::HOST, "127.0.0.1:8004"))
    }

    fn post(peer: &str, uri: &str) -> test::TestRequest {
        from(peer, uri).method(Method::POST)
    }

    #[actix_web::test]
    async fn without_a_token_only_loopback_callers_get_in() {
        assert_eq!(call(access(None, None), from("127.0.0.1:5000", "/admin/stats")).await.0, StatusCode::OK);
        assert_eq!(call(access(None, None), from("[::1]:5000", "/admin/ui")).await.0, StatusCode::OK);
        let (status, body) = call(access(None, None), from("203.0.113.7:5000", "/admin/stats")).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(body.contains("loopback"), "{body}");
        let (status, page) = call(access(None, None), from("203.0.113.7:5000", "/admin/ui")).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(page.contains("<h1>403 "), "{page}");
    }

    #[actix_web::test]
    async fn with_a_token_the_bearer_opens_everything_and_the_cookie_only_the_pages() {
        let token = || access(Some("s3cret"), None);
        let bearer = |uri| from("203.0.113.7:5000", uri).insert_header((header::AUTHORIZATION, "Bearer s3cret"));
        let cookie = |uri| from("127.0.0.1:5000", uri).insert_header((header::COOKIE, "a=b; admin_token=s3cret"));
        assert_eq!(call(token(), bearer("/admin/stats")).await.0, StatusCode::OK);
        assert_eq!(call(token(), bearer("/admin/ui")).await.0, StatusCode::OK);
        assert_eq!(call(token(), cookie("/admin/ui")).await.0, StatusCode::OK);
        assert_eq!(call(token(), cookie("/admin/stats")).await.0, StatusCode::UNAUTHORIZED);
        // Loopback is no credential once a token is configured.
        assert_eq!(call(token(), from("127.0.0.1:5000", "/admin/stats")).await.0, StatusCode::UNAUTHORIZED);
        let wrong = from("127.0.0.1:5000", "/admin/stats").insert_header((header::AUTHORIZATION, "Bearer s3cre"));
        assert_eq!(call(token(), wrong).await.0, StatusCode::UNAUTHORIZED);
    }

    #[actix_web::test]
    async fn only_an_allowed_host_is_answered_whatever_the_credential() {
        let with_host = |host: &str| {
            from("127.0.0.1:5000", "/admin/stats")
                .insert_header((header::HOST, host))
                .insert_header((header::AUTHORIZATION, "Bearer s3cret"))
        };
        for host in ["127.0.0.1:8004", "localhost", "LOCALHOST:1", "[::1]:8004", "[::1]"] {
            assert_eq!(call(access(None, None), with_host(host)).await.0, StatusCode::OK, "{host}");
            assert_eq!(call(access(Some("s3cret"), None), with_host(host)).await.0, StatusCode::OK, "{host}");
        }
        for host in ["evil.example", "evil.example:8004", "127.0.0.1.evil.example", "localhost:", "localhost:x", "[::1"]
        {
            let (status, body) = call(access(Some("s3cret"), None), with_host(host)).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{host}");
            assert!(body.contains("ADMIN_ALLOWED_HOSTS"), "{body}");
            assert_eq!(call(access(None, None), with_host(host)).await.0, StatusCode::FORBIDDEN, "{host}");
        }
        let port_only = AdminAccess::new(None, None, vec!["admin.example:8443".into()]);
        assert!(host_allowed(&port_only.hosts, "admin.example:8443"));
        assert!(
            !host_allowed(&port_only.hosts, "admin.example:8444") && !host_allowed(&port_only.hosts, "admin.example")
        );
    }

    #[actix_web::test]
    async fn a_change_from_another_site_is_refused_in_every_mode() {
        let foreign = [
            (header::ORIGIN.as_str(), "http://evil.example"),
            (header::ORIGIN.as_str(), "null"),
            (header::ORIGIN.as_str(), "http://127.0.0.1:8004.evil.example"),
            (header::REFERER.as_str(), "http://evil.example/page"),
            ("sec-fetch-site", "cross-site"),
            ("sec-fetch-site", "same-site"),
        ];
        for (name, value) in foreign {
            for uri in ["/admin/ui/sagas/x/abort", "/admin/sagas/x/retry", "/admin/ui/login"] {
                let loopback = post("127.0.0.1:5000", uri).insert_header((name, value));
                let (status, body) = call(access(None, None), loopback).await;
                assert_eq!(status, StatusCode::FORBIDDEN, "{name}: {value} on {uri}: {body}");
                let bearer = post("127.0.0.1:5000", uri)
                    .insert_header((name, value))
                    .insert_header((header::AUTHORIZATION, "Bearer s3cret"));
                assert_eq!(call(access(Some("s3cret"), None), bearer).await.0, StatusCode::FORBIDDEN, "{name} {uri}");
            }
        }
        // Reading from another site is no attack: the browser does not let the other site read the answer.
        let read = from("127.0.0.1:5000", "/admin/stats").insert_header(("sec-fetch-site", "cross-site"));
        assert_eq!(call(access(None, None), read).await.0, StatusCode::OK);
    }

    #[actix_web::test]
    async fn a_change_from_the_pages_or_a_tool_is_let_in() {
        let same = [
            vec![("sec-fetch-site", "same-origin"), (header::ORIGIN.as_str(), "null")],
            vec![("sec-fetch-site", "same-origin"), (header::ORIGIN.as_str(), "http://127.0.0.1:8004")],
            vec![(header::ORIGIN.as_str(), "https://127.0.0.1:8004")],
            vec![(header::REFERER.as_str(), "http://127.0.0.1:8004/admin/ui/sagas/x")],
            // What sagactl and curl send: nothing.
            vec![],
        ];
        for headers in same {
            let req =
                headers.iter().fold(post("127.0.0.1:5000", "/admin/ui/sagas/x/abort"), |r, h| r.insert_header(*h));
            assert_eq!(call(access(None, None), req).await.0, StatusCode::OK, "{headers:?}");
        }
        // A browser's cookie without any origin is not a tool's request.
        let cookie =
            post("127.0.0.1:5000", "/admin/ui/sagas/x/abort").insert_header((header::COOKIE, "admin_token=s3cret"));
        assert_eq!(call(access(Some("s3cret"), None), cookie).await.0, StatusCode::FORBIDDEN);
        let fetch_only = post("127.0.0.1:5000", "/admin/ui/sagas/x/abort").insert_header(("sec-fetch-site", "none"));
        assert_eq!(call(access(None, None), fetch_only).await.0, StatusCode::FORBIDDEN);
    }

    #[actix_web::test]
    async fn the_read_only_token_reads_and_never_changes_anything() {
        let both = || access(Some("s3cret"), Some("r3ad"));
        let bearer = |req: test::TestRequest| req.insert_header((header::AUTHORIZATION, "Bearer r3ad"));
        assert_eq!(call(both(), bearer(from("203.0.113.7:5000", "/admin/stats"))).await.0, StatusCode::OK);
        let cookie = from("203.0.113.7:5000", "/admin/ui").insert_header((header::COOKIE, "admin_token=r3ad"));
        assert_eq!(call(both(), cookie).await.0, StatusCode::OK);
        let (status, body) = call(both(), bearer(post("203.0.113.7:5000", "/admin/sagas/x/retry"))).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(body.contains("read-only token"), "{body}");
        // Without an operator token, loopback still acts, and the read-only token still only reads.
        let loopback_mode = || access(None, Some("r3ad"));
        assert_eq!(call(loopback_mode(), post("127.0.0.1:5000", "/admin/sagas/x/retry")).await.0, StatusCode::OK);
        let read = bearer(post("127.0.0.1:5000", "/admin/sagas/x/retry"));
        assert_eq!(call(loopback_mode(), read).await.0, StatusCode::FORBIDDEN);
    }

    #[actix_web::test]
    async fn a_token_in_a_query_string_is_refused_and_not_repeated() {
        for query in ["token=s3cret", "a=1&Token=s3cret", "%74oken=s3cret", "access_token=s3cret", "admin_token"] {
            let req = from("127.0.0.1:5000", &format!("/admin/stats?{query}"));
            let (status, body) = call(access(Some("s3cret"), None), req).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
            assert!(!body.contains("s3cret") && body.contains("never taken from a URL"), "{body}");
        }
        assert_eq!(call(access(None, None), from("127.0.0.1:5000", "/admin/stats?tokens=1")).await.0, StatusCode::OK);
    }

    #[actix_web::test]
    async fn every_answer_under_admin_carries_the_hardening_headers() {
        let app =
            test::init_service(App::new().app_data(web::Data::new(access(Some("s3cret"), None))).service(
                web::scope("/admin").wrap(from_fn(admin_only)).route("/stats", web::get().to(HttpResponse::Ok)),
            ))
            .await;
        let ok = from("127.0.0.1:5000", "/admin/stats").insert_header((header::AUTHORIZATION, "Bearer s3cret"));
        let refused = from("127.0.0.1:5000", "/admin/ui").insert_header((header::HOST, "evil.example"));
        let unknown = from("127.0.0.1:5000", "/admin/nope").insert_header((header::AUTHORIZATION, "Bearer s3cret"));
        for req in [ok, refused, unknown] {
            let response = test::call_service(&app, req.to_request()).await;
            for (name, value) in HARDENING {
                assert_eq!(response.headers().get(&name).map(|v| v.to_str().unwrap()), Some(value), "{name}");
            }
        }
    }

    #[actix_web::test]
    async fn a_request_let_in_carries_its_actor() {
        let app =
            test::init_service(App::new().app_data(web::Data::new(access(Some("s3cret"), Some("r3ad")))).service(
                web::scope("/admin").wrap(from_fn(admin_only)).route(
                    "/whoami",
                    web::get().to(|actor: web::ReqData<Actor>| async move {
                        HttpResponse::Ok().body(format!("{} {}", actor.name, actor.credential.name()))
                    }),
                ),
            ))
            .await;
        for (token, credential) in [("s3cret", "operator_token"), ("r3ad", "read_only_token")] {
            let req = from("203.0.113.7:5000", "/admin/whoami")
                .insert_header((header::AUTHORIZATION, format!("Bearer {token}")))
                .insert_header((OPERATOR_HEADER, "alice"));
            let response = test::call_service(&app, req.to_request()).await;
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(test::read_body(response).await, format!("alice {credential}"));
        }
    }
}
