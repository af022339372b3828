//! The coordinator's HTTP surface: the admin API under `/admin/` for operators, and who may call it.

mod admin;

use actix_web::{http::header, HttpRequest};
use platform::http::ApiError;

/// Registers the admin routes.
pub fn configure(cfg: &mut actix_web::web::ServiceConfig) {
    admin::configure(cfg);
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
        match &self.token {
            Some(token) => {
                let presented = req
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.strip_prefix("Bearer "));
                if presented.is_some_and(|p| constant_time_eq(p.as_bytes(), token.as_bytes())) {
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

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
