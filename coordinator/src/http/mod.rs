//! The coordinator's HTTP surface: the admin API under `/admin/` for operators (JSON, plus the dead-letter
//! queue), the operator pages under `/admin/ui`, the count of unfinished sagas other services ask for under
//! `/internal/`, the OpenAPI document, and who may call them.
//!
//! Who may is decided once, by [`admin_only`], a middleware around the whole `/admin` scope, so that a route
//! added there cannot forget it. The one admin path outside it is the pages' login, which is how a browser
//! presents the token in the first place, and which checks the token itself.

mod admin;
mod dead_letters;
mod internal;
mod openapi;
mod ui;
mod ui_dead_letters;

use actix_web::{
    body::{EitherBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::header,
    middleware::{from_fn, Next},
    web, HttpMessage as _, HttpRequest, ResponseError,
};
use platform::http::ApiError;

use crate::audit::{Actor, Credential, OPERATOR_HEADER};
use utoipa::OpenApi as _;

/// Registers the admin routes behind [`admin_only`], the operator pages, the internal count and `/openapi.json`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    // Before the scope, so that it is matched first: the login must be reachable without a credential.
    ui::configure_login(cfg);
    cfg.service(
        web::scope("/admin")
            .wrap(from_fn(admin_only))
            .configure(admin::configure)
            .configure(dead_letters::configure)
            .configure(ui::configure)
            .configure(ui_dead_letters::configure),
    );
    internal::configure(cfg);
    cfg.service(platform::http::openapi(openapi::CoordinatorApi::openapi()));
}

/// Lets a request into the `/admin` scope only if [`AdminAccess`] allows it; a refused one is answered as its
/// kind of route answers errors: an error page for the operator pages, the JSON error body for the API.
async fn admin_only<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let page = ui::is_page(req.path());
    let verdict = match req.app_data::<web::Data<AdminAccess>>() {
        Some(access) => access.check(req.request(), page),
        None => Err(ApiError::Forbidden("the admin API has no access rules configured".into())),
    };
    match verdict {
        Ok(credential) => {
            let named = req.headers().get(OPERATOR_HEADER).and_then(|value| value.to_str().ok());
            let actor = Actor::new(named, credential);
            req.extensions_mut().insert(actor);
            Ok(next.call(req).await?.map_into_left_body())
        }
        Err(refusal) => {
            let response = if page { ui::error_page(&refusal) } else { refusal.error_response() };
            Ok(req.into_response(response).map_into_right_body())
        }
    }
}

/// Who may use the admin API: holders of the configured bearer token or, when no token is configured, callers
/// on the loopback interface only. The operator pages also take the token from the `admin_token` cookie, which
/// is how a browser holds it (a plain HTML form cannot send a bearer header).
pub struct AdminAccess {
    token: Option<String>,
}

impl AdminAccess {
    /// Access guarded by `token`, or loopback-only without one.
    pub fn new(token: Option<String>) -> Self {
        Self { token }
    }

    /// Whether `presented` is the configured token (false when none is configured).
    pub fn accepts(&self, presented: &str) -> bool {
        self.token.as_ref().is_some_and(|token| constant_time_eq(presented.as_bytes(), token.as_bytes()))
    }

    /// Refuses `req` unless it may use the admin API, else says which credential let it in; `page` says whether
    /// it is for an operator page, which also accepts the token from the cookie.
    fn check(&self, req: &HttpRequest, page: bool) -> Result<Credential, ApiError> {
        match &self.token {
            Some(_) => {
                let bearer = req
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.strip_prefix("Bearer "));
                let cookie = if page { cookie(req, TOKEN_COOKIE) } else { None };
                if bearer.or(cookie).is_some_and(|presented| self.accepts(presented)) {
                    Ok(Credential::OperatorToken)
                } else {
                    Err(ApiError::Unauthorized("the admin API needs a valid bearer token".into()))
                }
            }
            None if req.peer_addr().is_some_and(|peer| peer.ip().is_loopback()) => Ok(Credential::Loopback),
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

#[cfg(test)]
mod tests {
    use actix_web::{http::StatusCode, test, App, HttpResponse};

    use super::*;

    /// The admin scope as [`configure`] wraps it, around stand-in routes: the rules, without a database.
    async fn call(token: Option<&str>, req: test::TestRequest) -> (StatusCode, String) {
        let app = test::init_service(
            App::new().app_data(web::Data::new(AdminAccess::new(token.map(str::to_owned)))).service(
                web::scope("/admin")
                    .wrap(from_fn(admin_only))
                    .route("/stats", web::get().to(HttpResponse::Ok))
                    .route("/ui", web::get().to(HttpResponse::Ok)),
            ),
        )
        .await;
        let response = test::call_service(&app, req.to_request()).await;
        let status = response.status();
        let body = test::read_body(response).await;
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    fn from(peer: &str, uri: &str) -> test::TestRequest {
        test::TestRequest::get().uri(uri).peer_addr(peer.parse().expect("a socket address"))
    }

    #[actix_web::test]
    async fn without_a_token_only_loopback_callers_get_in() {
        assert_eq!(call(None, from("127.0.0.1:5000", "/admin/stats")).await.0, StatusCode::OK);
        assert_eq!(call(None, from("[::1]:5000", "/admin/ui")).await.0, StatusCode::OK);
        let (status, body) = call(None, from("203.0.113.7:5000", "/admin/stats")).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(body.contains("loopback"), "{body}");
        let (status, page) = call(None, from("203.0.113.7:5000", "/admin/ui")).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(page.contains("<h1>403 "), "{page}");
    }

    #[actix_web::test]
    async fn with_a_token_the_bearer_opens_everything_and_the_cookie_only_the_pages() {
        let token = Some("s3cret");
        let bearer = |uri| from("203.0.113.7:5000", uri).insert_header((header::AUTHORIZATION, "Bearer s3cret"));
        let cookie = |uri| from("127.0.0.1:5000", uri).insert_header((header::COOKIE, "a=b; admin_token=s3cret"));
        assert_eq!(call(token, bearer("/admin/stats")).await.0, StatusCode::OK);
        assert_eq!(call(token, bearer("/admin/ui")).await.0, StatusCode::OK);
        assert_eq!(call(token, cookie("/admin/ui")).await.0, StatusCode::OK);
        assert_eq!(call(token, cookie("/admin/stats")).await.0, StatusCode::UNAUTHORIZED);
        // Loopback is no credential once a token is configured.
        assert_eq!(call(token, from("127.0.0.1:5000", "/admin/stats")).await.0, StatusCode::UNAUTHORIZED);
        let wrong = from("127.0.0.1:5000", "/admin/stats").insert_header((header::AUTHORIZATION, "Bearer s3cre"));
        assert_eq!(call(token, wrong).await.0, StatusCode::UNAUTHORIZED);
    }

    #[actix_web::test]
    async fn a_request_let_in_carries_its_actor() {
        let app =
            test::init_service(App::new().app_data(web::Data::new(AdminAccess::new(Some("s3cret".into())))).service(
                web::scope("/admin").wrap(from_fn(admin_only)).route(
                    "/whoami",
                    web::get().to(|actor: web::ReqData<Actor>| async move {
                        HttpResponse::Ok().body(format!("{} {}", actor.name, actor.credential.name()))
                    }),
                ),
            ))
            .await;
        let req = from("203.0.113.7:5000", "/admin/whoami")
            .insert_header((header::AUTHORIZATION, "Bearer s3cret"))
            .insert_header((OPERATOR_HEADER, "alice"));
        let response = test::call_service(&app, req.to_request()).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(test::read_body(response).await, "alice operator_token");
    }
}
