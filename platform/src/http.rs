//! What every REST service shares: the error type handlers return and its one mapping to a status and a JSON
//! body, strict parsing of numbers taken from the path, JSON answers for unknown routes and wrong methods,
//! request metrics, the `/health`, `/metrics` and `/openapi.json` endpoints, and the listening socket.
//!
//! The OpenAPI documents are derived with `utoipa` from the handlers' annotations; the schemas here
//! ([`ErrorBody`], [`UnfinishedBody`], and the path segments [`Id`], [`Amount`], [`Count`]) state what the parsers
//! below accept, so that a document and the handler it describes cannot disagree on a constraint.

use std::{
    future::Future,
    net::{SocketAddr, TcpListener, ToSocketAddrs},
    time::Instant,
};

use actix_web::{
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::{Method, StatusCode},
    middleware::Next,
    web, HttpResponse, ResponseError,
};
use anyhow::Context;
use serde::Serialize;
use tracing::Instrument;

use crate::db::Pool;

/// The error every REST handler returns. Services convert their own domain errors into it, so that the choice
/// of status code lives in one place.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed: a number that is not one, an amount out of range.
    #[error("{0}")]
    BadRequest(String),
    /// A named entity does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request is well-formed but the business rules refuse it (not enough stock or credit, order paid).
    #[error("{0}")]
    Rejected(String),
    /// The request conflicts with work in progress (a checkout in flight).
    #[error("{0}")]
    Conflict(String),
    /// A `batch_init` would overwrite what `unfinished` sagas or checkouts still change: 409, with their number
    /// also in the body as `unfinished`.
    #[error("{unfinished} {what} are unfinished; batch_init would change {changes} under them; try again when they have ended")]
    Unfinished {
        /// How many.
        unfinished: u64,
        /// What they are ("checkout sagas", "checkouts of these orders").
        what: &'static str,
        /// What the `batch_init` would change under them ("stock", "credit", "these orders").
        changes: &'static str,
    },
    /// The caller did not prove who it is.
    #[error("{0}")]
    Unauthorized(String),
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The route exists but not for this method.
    #[error("method {0} is not allowed here")]
    MethodNotAllowed(String),
    /// The outcome did not arrive in time; the work goes on and can be looked up later.
    #[error("{0}")]
    Timeout(String),
    /// A dependency (database, broker, another service) is unreachable or failing.
    #[error("service unavailable: {0}")]
    Unavailable(String),
}

/// The JSON body of every error answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody<'a> {
    /// What went wrong, for a person to read.
    pub error: &'a str,
}

/// The JSON body of a 409 from a `batch_init` that unfinished work would see changed under it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UnfinishedBody<'a> {
    /// What went wrong, for a person to read.
    pub error: &'a str,
    /// How many sagas or checkouts have not ended.
    #[schema(minimum = 1)]
    pub unfinished: u64,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) | Self::Rejected(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) | Self::Unfinished { .. } => StatusCode::CONFLICT,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let message = self.to_string();
        if let Self::Unfinished { unfinished, .. } = self {
            let body = UnfinishedBody { error: &message, unfinished: *unfinished };
            return HttpResponse::build(self.status_code()).json(body);
        }
        HttpResponse::build(self.status_code()).json(ErrorBody { error: &message })
    }
}

impl From<diesel::result::Error> for ApiError {
    fn from(e: diesel::result::Error) -> Self {
        tracing::warn!(error = %e, "database error");
        Self::Unavailable(format!("database error: {e}"))
    }
}

impl From<diesel_async::pooled_connection::deadpool::PoolError> for ApiError {
    fn from(e: diesel_async::pooled_connection::deadpool::PoolError) -> Self {
        tracing::warn!(error = %e, "no database connection");
        Self::Unavailable(format!("no database connection: {e}"))
    }
}

/// The largest amount, price, credit or stock the system stores (PostgreSQL `BIGINT`).
pub const MAX_AMOUNT: u64 = i64::MAX as u64;

/// Parses the path segment `raw`, called `what` in the error, as a non-negative integer the database can hold.
/// Signs, spaces, fractions and values above [`MAX_AMOUNT`] are refused with a message that says which.
pub fn parse_amount(what: &str, raw: &str) -> Result<u64, ApiError> {
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::BadRequest(format!("{what} must be a non-negative integer, got {raw:?}")));
    }
    match raw.parse::<u64>() {
        Ok(value) if value <= MAX_AMOUNT => Ok(value),
        _ => Err(ApiError::BadRequest(format!("{what} must be at most {MAX_AMOUNT}, got {raw}"))),
    }
}

/// Like [`parse_amount`], also refusing 0 (quantities, counts of things to create).
pub fn parse_positive(what: &str, raw: &str) -> Result<u64, ApiError> {
    match parse_amount(what, raw)? {
        0 => Err(ApiError::BadRequest(format!("{what} must be at least 1"))),
        value => Ok(value),
    }
}

/// Checks that an ID taken from the path is usable: not empty, not absurdly long, printable.
pub fn check_id<'a>(what: &str, raw: &'a str) -> Result<&'a str, ApiError> {
    // Characters, not bytes: the limit the message and the OpenAPI documents state (`maxLength` counts characters).
    if raw.is_empty() || raw.chars().count() > 128 || raw.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(format!("{what} must be 1 to 128 printable characters")));
    }
    Ok(raw)
}

/// An ID in a path, as [`check_id`] accepts it: 1 to 128 printable characters (no control characters).
pub struct Id;

/// An amount, price, credit or stock in a path, as [`parse_amount`] accepts it: decimal digits only, 0 to
/// 9223372036854775807 ([`MAX_AMOUNT`]).
pub struct Amount;

/// A count or quantity in a path, as [`parse_positive`] accepts it: decimal digits only, 1 to
/// 9223372036854775807 ([`MAX_AMOUNT`]).
pub struct Count;

/// What [`check_id`] refuses, as a pattern: control characters (Unicode category Cc).
const ID_PATTERN: &str = r"^[^\x00-\x1F\x7F-\x9F]+$";

impl utoipa::PartialSchema for Id {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::String)
            .min_length(Some(1))
            .max_length(Some(128))
            .pattern(Some(ID_PATTERN))
            .description(Some("1 to 128 printable characters."))
            .into()
    }
}

impl utoipa::ToSchema for Id {}

impl utoipa::PartialSchema for Amount {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        digits(0, "Decimal digits, 0 to 9223372036854775807.")
    }
}

impl utoipa::ToSchema for Amount {}

impl utoipa::PartialSchema for Count {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        digits(1, "Decimal digits, 1 to 9223372036854775807.")
    }
}

impl utoipa::ToSchema for Count {}

/// An integer of at least `minimum` and at most [`MAX_AMOUNT`], which a path carries as decimal digits.
fn digits(minimum: u64, description: &str) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::Integer)
        .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Int64)))
        .minimum(Some(minimum))
        .maximum(Some(MAX_AMOUNT))
        .description(Some(description))
        .into()
}

/// Connections the kernel queues for a listening service before it accepts them. The gateway opens connections in
/// bursts under load; with the standard library's 128 the kernel drops the SYNs beyond it, and each dropped
/// connection waits a whole second for its retransmission. The kernel caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: i32 = 4096;

/// A listening socket on `addr` (`host:port`, port 0 for any free one) with a backlog of [`LISTEN_BACKLOG`].
pub fn listen(addr: &str) -> anyhow::Result<TcpListener> {
    let addr: SocketAddr = addr
        .to_socket_addrs()
        .with_context(|| format!("resolving {addr}"))?
        .next()
        .with_context(|| format!("{addr} names no address"))?;
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into()).with_context(|| format!("binding {addr}"))?;
    socket.listen(LISTEN_BACKLOG).with_context(|| format!("listening on {addr}"))?;
    Ok(socket.into())
}

/// Adds `/health`, `/metrics`, and JSON answers for unknown paths, wrong methods and unreadable path segments
/// and query strings to a service's routes.
pub fn configure_common(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::PathConfig::default()
            .error_handler(|err, _| ApiError::BadRequest(format!("malformed path: {err}")).into()),
    )
    .app_data(
        web::QueryConfig::default()
            .error_handler(|err, _| ApiError::BadRequest(format!("malformed query string: {err}")).into()),
    )
    .service(resource("/health", Method::GET, health))
    .service(resource("/metrics", Method::GET, metrics));
}

/// The default service for an app: unknown paths are 404 with a JSON body.
pub async fn not_found(req: actix_web::HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!("no route for {} {}", req.method(), req.path())))
}

/// A resource at `path` that answers `method` with `handler` and any other method with a JSON 405 that names
/// `method` in its `Allow` header.
pub fn resource<F, Args>(path: &str, method: Method, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    resource_for(path, &[method], handler)
}

/// Like [`resource`], answering each of `methods` with the same `handler`.
pub fn resource_for<F, Args>(path: &str, methods: &[Method], handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    let allowed = methods.iter().map(Method::as_str).collect::<Vec<_>>().join(", ");
    let resource = methods
        .iter()
        .fold(web::resource(path), |resource, method| resource.route(web::method(method.clone()).to(handler.clone())));
    resource.default_service(web::to(move |req: actix_web::HttpRequest| {
        let allowed = allowed.clone();
        async move {
            let mut response = ApiError::MethodNotAllowed(req.method().to_string()).error_response();
            if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&allowed) {
                response.headers_mut().insert(actix_web::http::header::ALLOW, value);
            }
            response
        }
    }))
}

/// What every service's document describes besides its own API: `/health`, `/metrics`, `/openapi.json`, and the
/// schemas of the error bodies and path segments.
#[derive(utoipa::OpenApi)]
#[openapi(paths(health, metrics, serve_openapi), components(schemas(ErrorBody, UnfinishedBody, Id, Amount, Count)))]
struct CommonApi;

/// A service's OpenAPI document as served: `api`, derived from the service's handlers, with what
/// [`CommonApi`] adds, as pretty-printed JSON (the form committed in `docs/openapi/<service>.json`).
pub fn openapi_json(api: utoipa::openapi::OpenApi) -> String {
    use utoipa::OpenApi as _;
    let document = api.merge_from(CommonApi::openapi());
    let mut json = document.to_pretty_json().expect("an OpenAPI document is serialisable");
    json.push('\n');
    json
}

/// The OpenAPI document a service serves, in the form [`openapi_json`] gives it.
#[derive(Clone)]
struct OpenApiJson(web::Bytes);

/// `GET /openapi.json`, answering with `api` completed by [`openapi_json`].
pub fn openapi(api: utoipa::openapi::OpenApi) -> actix_web::Resource {
    let document = OpenApiJson(web::Bytes::from(openapi_json(api)));
    resource("/openapi.json", Method::GET, serve_openapi).app_data(web::Data::new(document))
}

/// The service's OpenAPI document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "This document.", content_type = "application/json", body = Object))
)]
async fn serve_openapi(document: web::Data<OpenApiJson>) -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(document.0.clone())
}

/// What `/health` answers.
#[derive(Serialize, utoipa::ToSchema)]
struct Health {
    /// `ok` or `unavailable`.
    #[schema(pattern = "^(ok|unavailable)$")]
    status: &'static str,
    /// Why the database did not answer, when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Ready when the database answers.
#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    responses(
        (status = 200, description = "Ready: the database answers.", body = Health),
        (status = 503, description = "Not ready: the database does not answer.", body = Health),
    )
)]
async fn health(pool: web::Data<Pool>) -> HttpResponse {
    match database_answers(&pool).await {
        Ok(()) => HttpResponse::Ok().json(Health { status: "ok", error: None }),
        Err(e) => HttpResponse::ServiceUnavailable().json(Health { status: "unavailable", error: Some(e) }),
    }
}

async fn database_answers(pool: &Pool) -> Result<(), String> {
    use diesel_async::RunQueryDsl;
    let mut conn = pool.get().await.map_err(|e| e.to_string())?;
    diesel::sql_query("SELECT 1").execute(&mut conn).await.map(drop).map_err(|e| e.to_string())
}

/// The service's metrics in the Prometheus text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Every metric of the service.", content_type = "text/plain", body = String))
)]
async fn metrics() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(crate::telemetry::prometheus().render())
}

/// What the request-metrics middleware returns.
pub type MiddlewareFuture<B> = std::pin::Pin<Box<dyn Future<Output = Result<ServiceResponse<B>, actix_web::Error>>>>;

/// A tracing span per request (see [`crate::trace`]), and request counts and latency per route and status, as
/// `<service>_http_requests_total` and `<service>_http_request_duration_seconds`. Use with `actix_web::middleware::from_fn(request_metrics(name))`.
pub fn request_metrics<B: MessageBody + 'static>(
    service: &'static str,
) -> impl Fn(ServiceRequest, Next<B>) -> MiddlewareFuture<B> + Clone + 'static {
    let requests: &'static str = Box::leak(format!("{service}_http_requests_total").into_boxed_str());
    let durations: &'static str = Box::leak(format!("{service}_http_request_duration_seconds").into_boxed_str());
    move |req: ServiceRequest, next: Next<B>| {
        Box::pin(async move {
            let started = Instant::now();
            let route = req.match_pattern().unwrap_or_else(|| "unmatched".to_owned());
            let method = req.method().to_string();
            // Every request is a span, continuing the caller's trace when it sent a traceparent header.
            let span = tracing::info_span!(
                "http.request",
                service,
                http.method = %method,
                http.route = %route,
                trace_id = tracing::field::Empty
            );
            let incoming = req.headers().get(crate::trace::TRACEPARENT).and_then(|value| value.to_str().ok());
            crate::trace::continue_trace(&span, incoming);
            let response = next.call(req).instrument(span).await?;
            let status = response.status().as_u16().to_string();
            metrics::counter!(requests, "route" => route.clone(), "method" => method, "status" => status).increment(1);
            metrics::histogram!(durations, "route" => route).record(started.elapsed().as_secs_f64());
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_digits_within_bigint() {
        assert_eq!(parse_amount("amount", "0").unwrap(), 0);
        assert_eq!(parse_amount("amount", "9223372036854775807").unwrap(), MAX_AMOUNT);
        for bad in ["", "abc", "-5", "+5", "1.5", " 1", "9223372036854775808", "99999999999999999999"] {
            let err = parse_amount("amount", bad).unwrap_err();
            assert!(matches!(err, ApiError::BadRequest(_)), "{bad:?} was accepted");
        }
        assert!(parse_positive("quantity", "0").is_err());
    }

    #[test]
    fn ids_must_be_printable_and_short() {
        assert!(check_id("item_id", "42").is_ok());
        assert!(check_id("item_id", "").is_err());
        assert!(check_id("item_id", &"x".repeat(129)).is_err());
        assert!(check_id("item_id", &"é".repeat(128)).is_ok());
        assert!(check_id("item_id", &"é".repeat(129)).is_err());
        assert!(check_id("item_id", "a\u{0}b").is_err());
    }
}
