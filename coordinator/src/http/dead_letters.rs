//! Dead letters for operators: `GET /admin/dead-letters` lists what waits in the dead-letter queue without taking
//! it away, `POST /admin/dead-letters/replay` sends every waiting message back to the queue it died in.

use actix_web::{http::Method, web, HttpResponse};
use platform::http::{parse_positive, resource, ApiError};
use serde::Deserialize;

use crate::dead_letters::DeadLetters;

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
struct ListQuery {
    limit: Option<String>,
}

fn broker_error(e: anyhow::Error) -> ApiError {
    tracing::warn!(error = %format!("{e:#}"), "dead-letter queue unreachable");
    ApiError::Unavailable(format!("the broker: {e:#}"))
}

async fn list(dead_letters: web::Data<DeadLetters>, query: web::Query<ListQuery>) -> Result<HttpResponse, ApiError> {
    let limit = query.limit.as_deref().map(|l| parse_positive("limit", l)).transpose()?.unwrap_or(100);
    if limit > MAX_LISTED {
        return Err(ApiError::BadRequest(format!("limit must be between 1 and {MAX_LISTED}")));
    }
    let messages = dead_letters.peek(limit as usize).await.map_err(broker_error)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "messages": messages })))
}

async fn replay(dead_letters: web::Data<DeadLetters>) -> Result<HttpResponse, ApiError> {
    let report = dead_letters.replay().await.map_err(broker_error)?;
    Ok(HttpResponse::Ok().json(report))
}
