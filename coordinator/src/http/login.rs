//! The pages' login and logout. A browser cannot send a bearer header from a plain form, so the login form takes
//! a token (operator or read-only) in its POST body and stores it in the [`TOKEN_COOKIE`] cookie, which the pages
//! accept instead; logout clears it. The token never travels in a URL: the middleware refuses one in a query
//! string before this module sees it.
//!
//! The cookie is `HttpOnly` (no script reads it), `SameSite=Strict` (no other site's page makes the browser send
//! it), `Path=/admin`, and `Secure` when the request came over https: the coordinator serves plain HTTP, so that
//! is a TLS-terminating proxy in front saying `X-Forwarded-Proto: https` (or `Forwarded: proto=https`). The
//! header is believed as it is: a client that lies about it only gets a cookie its browser keeps to https.

use actix_web::{
    http::{header, Method, StatusCode},
    web, HttpRequest, HttpResponse,
};
use maud::{html, Markup, PreEscaped, DOCTYPE};
use platform::http::{resource, resource_for, ErrorBody as Error};
use serde::Deserialize;

use super::{AdminAccess, TOKEN_COOKIE};

/// Where the login form lives.
pub const LOGIN: &str = "/admin/ui/login";
/// Where the logout button posts.
pub const LOGOUT: &str = "/admin/ui/logout";
/// Where a browser goes once logged in.
const PAGES: &str = "/admin/ui";
/// The path the cookie is sent to.
const COOKIE_PATH: &str = "/admin";
/// The cookie's path in earlier versions, cleared at logout too so that no stale copy outlives it.
const OLD_COOKIE_PATH: &str = "/admin/ui";

/// Whether `path` is the login or the logout, which the admin scope lets through without a credential (all its
/// other rules still apply).
pub fn is_open(path: &str) -> bool {
    path == LOGIN || path == LOGOUT
}

/// Registers the login and logout, relative to the `/admin` scope.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource_for("/ui/login", &[Method::GET, Method::POST], login)).service(resource(
        "/ui/logout",
        Method::POST,
        logout,
    ));
}

/// The login form's body.
#[derive(Deserialize)]
pub(super) struct LoginForm {
    token: String,
}

/// The form as a page, with `status` and an optional `message`.
fn form_page(status: StatusCode, access: &AdminAccess, message: Option<&str>) -> HttpResponse {
    let body: Markup = html! {
        h1 { "Log in" }
        @if let Some(message) = message {
            p class="flash error" id="flash" { (message) }
        }
        @if access.has_tokens() {
            form method="post" action=(LOGIN) {
                label { "Admin token " input type="password" name="token" autocomplete="current-password" required; }
                " "
                button type="submit" id="login" { "Log in" }
            }
            p { "The operator token (ADMIN_TOKEN) may act on sagas; the read-only token (ADMIN_READ_TOKEN) may only \
                 look." }
        } @else {
            p { "No admin token is configured: the pages answer callers on the loopback interface without logging in." }
            p { a href=(PAGES) { "On to the pages" } }
        }
    };
    let html = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "Log in" }
                style { (PreEscaped("body{font-family:system-ui,sans-serif;margin:2em}.error{background:#fbe3e3;\
                    padding:.5em 1em}")) }
            }
            body { (body) }
        }
    };
    HttpResponse::build(status).content_type("text/html; charset=utf-8").body(html.into_string())
}

/// Shows the form (GET) or checks the token it posted (POST).
async fn login(req: HttpRequest, access: web::Data<AdminAccess>, form: Option<web::Form<LoginForm>>) -> HttpResponse {
    match *req.method() {
        Method::POST => submit(req, access, form).await,
        _ => show(access).await,
    }
}

/// The login form.
#[utoipa::path(
    get,
    path = "/admin/ui/login",
    operation_id = "uiLoginForm",
    summary = "The login form of the operator pages (a token never goes in the URL: a query parameter token is a 400).",
    responses(
        (status = 200, description = "The form.", content_type = "text/html", body = String),
        (status = 400, description = "A token in the query string, refused without echoing it.", content(
            (String = "text/html"), (Error = "application/json"))),
        (status = 403, description = "A Host not on ADMIN_ALLOWED_HOSTS.", content_type = "text/html", body = String),
    )
)]
pub(super) async fn show(access: web::Data<AdminAccess>) -> HttpResponse {
    form_page(StatusCode::OK, &access, None)
}

/// Checks the posted token and stores it in the cookie.
#[utoipa::path(
    post,
    path = "/admin/ui/login",
    operation_id = "uiLogin",
    summary = "Stores the posted token (ADMIN_TOKEN or ADMIN_READ_TOKEN) in the admin_token cookie (HttpOnly, \
        SameSite=Strict, Path=/admin, Secure over https).",
    request_body(content = inline(LoginFormBody), content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Logged in; on to /admin/ui."),
        (status = 400, description = "No token in the body, or a token in the query string; shown as the form.",
            content((String = "text/html"), (Error = "application/json"))),
        (status = 401, description = "Not an admin token (or none is configured), shown as the form.",
            content_type = "text/html", body = String),
        (status = 403, description = "A Host not on ADMIN_ALLOWED_HOSTS, or posted from another site.",
            content_type = "text/html", body = String),
    )
)]
pub(super) async fn submit(
    req: HttpRequest,
    access: web::Data<AdminAccess>,
    form: Option<web::Form<LoginForm>>,
) -> HttpResponse {
    let Some(token) = form.as_ref().map(|form| form.token.as_str()).filter(|token| !token.is_empty()) else {
        return form_page(StatusCode::BAD_REQUEST, &access, Some("Post the token in the form's token field."));
    };
    // Only a token the cookie can carry verbatim is ever accepted, so a wrong one is refused here, not stored.
    let storable = token.bytes().all(|b| b.is_ascii_graphic() && !b"\";\\,".contains(&b));
    if !(storable && access.credential_of(token).is_some()) {
        return form_page(StatusCode::UNAUTHORIZED, &access, Some("That is not an admin token."));
    }
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, PAGES))
        .insert_header((header::SET_COOKIE, set_cookie(&req, token, COOKIE_PATH, None)))
        .finish()
}

/// Clears the cookie.
#[utoipa::path(
    post,
    path = "/admin/ui/logout",
    operation_id = "uiLogout",
    summary = "Clears the admin_token cookie; on to the login form.",
    responses(
        (status = 303, description = "Logged out; on to /admin/ui/login."),
        (status = 403, description = "A Host not on ADMIN_ALLOWED_HOSTS, or posted from another site.",
            content_type = "text/html", body = String),
    )
)]
pub(super) async fn logout(req: HttpRequest) -> HttpResponse {
    let mut response = HttpResponse::SeeOther();
    response.insert_header((header::LOCATION, LOGIN));
    for path in [COOKIE_PATH, OLD_COOKIE_PATH] {
        response.append_header((header::SET_COOKIE, set_cookie(&req, "", path, Some(0))));
    }
    response.finish()
}

/// A `Set-Cookie` value for the token cookie on `path`, `Secure` when `req` came over https.
fn set_cookie(req: &HttpRequest, value: &str, path: &str, max_age: Option<u32>) -> String {
    let mut cookie = format!("{TOKEN_COOKIE}={value}; Path={path}; HttpOnly; SameSite=Strict");
    if let Some(seconds) = max_age {
        cookie.push_str(&format!("; Max-Age={seconds}"));
    }
    if req.connection_info().scheme() == "https" {
        cookie.push_str("; Secure");
    }
    cookie
}

/// The login form's body, for the OpenAPI document.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct LoginFormBody {
    /// ADMIN_TOKEN or ADMIN_READ_TOKEN.
    token: String,
}
