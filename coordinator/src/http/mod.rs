//! The coordinator's HTTP surface: the admin API under `/admin/` for operators (JSON, plus the dead-letter
//! queue), the operator pages under `/admin/ui`, the count of unfinished sagas other services ask for under
//! `/internal/`, the OpenAPI document, and who may call them.

mod admin;
mod dead_letters;
mod internal;
mod openapi;
mod ui;

use actix_web::{http::header, HttpRequest};
use platform::http::ApiError;
use utoipa::OpenApi as _;

/// Registers the admin routes, the operator pages and `/openapi.json`.
pub fn configure(cfg: &mut actix_web::web::ServiceConfig) {
    admin::configure(cfg);
    dead_letters::configure(cfg);
    internal::configure(cfg);
    ui::configure(cfg);
    cfg.service(platform::http::openapi(openapi::CoordinatorApi::openapi()));
}

/// Who may use the admin API: holders of the configured bearer token or, when no token is configured, callers
/// on the loopback interface only.
pub struct AdminAccess {
    token: Option<String>,
}

impl AdminAccess {
    /// Access guarded by `token`, or loopback-only without one.
    pub fn new(token: Option<String>) -> Self {
        Self { token }
    }

    /// Refuses `req` unless it may use the admin API.
    pub fn check(&self, req: &HttpRequest) -> Result<(), ApiError> {
        self.check_with(req, None)
    }

    /// Like [`AdminAccess::check`], also accepting the token from the `admin_token` cookie, which is how a
    /// browser holds it for the operator pages (a plain HTML form cannot send a bearer header).
    pub fn check_page(&self, req: &HttpRequest) -> Result<(), ApiError> {
        self.check_with(req, cookie(req, TOKEN_COOKIE))
    }

    /// Whether `presented` is the configured token (false when none is configured).
    pub fn accepts(&self, presented: &str) -> bool {
        self.token.as_ref().is_some_and(|token| constant_time_eq(presented.as_bytes(), token.as_bytes()))
    }

    fn check_with(&self, req: &HttpRequest, cookie: Option<&str>) -> Result<(), ApiError> {
        match &self.token {
            Some(_) => {
                let bearer = req
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.strip_prefix("Bearer "));
                if bearer.or(cookie).is_some_and(|presented| self.accepts(presented)) {
                    Ok(())
                } else {
                    Err(ApiError::Unauthorized("the admin API needs a valid bearer token".into()))
                }
            }
            None if req.peer_addr().is_some_and(|peer| peer.ip().is_loopback()) => Ok(()),
            None => Err(ApiError::Forbidden(
                "no ADMIN_TOKEN is configured, so the admin API answers loopback callers only".into(),
            )),
        }
    }
}

/// The cookie that carries the admin token for the operator pages.
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
