//! Dead letters for operators: `GET /admin/dead-letters` lists what waits in the dead-letter queue without taking
//! it away, `POST /admin/dead-letters/replay` sends every waiting message back to the queue it died in.

use actix_web::{http::Method, web, HttpResponse};
use platform::http::{parse_positive, resource, ApiError, ErrorBody as Error};
use serde::Deserialize;

use super::openapi::DeadLetterList;
use crate::dead_letters::{DeadLetters, ReplayReport};

/// The most messages one listing shows.
const MAX_LISTED: u64 = 1000;

/// Registers the routes, relative to the `/admin` scope.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/dead-letters", Method::GET, list)).service(resource(
        "/dead-letters/replay",
        Method::POST,
        replay,
    ));
}

#[derive(Deserialize)]
pub(super) struct ListQuery {
    limit: Option<String>,
}

fn broker_error(e: anyhow::Error) -> ApiError {
    tracing::warn!(error = %format!("{e:#}"), "dead-letter queue unreachable");
    ApiError::Unavailable(format!("the broker: {e:#}"))
}

#[utoipa::path(
    get,
    path = "/admin/dead-letters",
    operation_id = "listDeadLetters",
    summary = "Messages waiting in the dead-letter queue, from its head; they stay there.",
    params(("limit" = Option<u64>, Query, minimum = 1, maximum = 1000, description = "The most to show, 1 to 1000 (default 100).")),
    responses(
        (status = 200, description = "The messages.", body = DeadLetterList),
        (status = 400, description = "A malformed limit.", body = Error),
        (status = 401, description = "ADMIN_TOKEN is configured and the request has no valid bearer token.", body = Error),
        (status = 403, description = "No ADMIN_TOKEN is configured and the caller is not on loopback.", body = Error),
        (status = 503, description = "The broker is unavailable.", body = Error),
    )
)]
pub(super) async fn list(
    dead_letters: web::Data<DeadLetters>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit.as_deref().map(|l| parse_positive("limit", l)).transpose()?.unwrap_or(100);
    if limit > MAX_LISTED {
        return Err(ApiError::BadRequest(format!("limit must be between 1 and {MAX_LISTED}")));
    }
    let messages = dead_letters.peek(limit as usize).await.map_err(broker_error)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "messages": messages })))
}

#[utoipa::path(
    post,
    path = "/admin/dead-letters/replay",
    operation_id = "replayDeadLetters",
    summary = "Publishes every waiting dead letter back to the work queue it died in (from its x-death header) and \
        removes it; messages naming no work queue stay.",
    responses(
        (status = 200, description = "What was done.", body = ReplayReport),
        (status = 401, description = "ADMIN_TOKEN is configured and the request has no valid bearer token.", body = Error),
        (status = 403, description = "No ADMIN_TOKEN is configured and the caller is not on loopback.", body = Error),
        (status = 503, description = "The broker is unavailable.", body = Error),
    )
)]
pub(super) async fn replay(dead_letters: web::Data<DeadLetters>) -> Result<HttpResponse, ApiError> {
    let report = dead_letters.replay().await.map_err(broker_error)?;
    Ok(HttpResponse::Ok().json(report))
}
