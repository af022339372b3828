//! Dead letters for operators: `GET /admin/dead-letters` lists what waits in the dead-letter queue, decoded,
//! without taking it away; `POST /admin/dead-letters/replay` sends every waiting message back to the queue it
//! died in; `POST /admin/dead-letters/{id}/replay` and `.../{id}/discard` do so with one message, or remove it
//! for good. Every replay and discard is audited with the request's [`Actor`].

use actix_web::{http::Method, web, HttpResponse};
use platform::http::{check_id, parse_positive, resource, ApiError, ErrorBody as Error};
use serde::Deserialize;

use super::openapi::{ApiRefusals, DeadLetterList, DeadLetterTaken};
use crate::{
    audit::Actor,
    dead_letters::{DeadLetter, DeadLetters, ReplayReport, Taken},
};

/// The most messages one listing shows.
const MAX_LISTED: u64 = 1000;

/// Registers the routes, relative to the `/admin` scope.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/dead-letters", Method::GET, list))
        .service(resource("/dead-letters/replay", Method::POST, replay))
        .service(resource("/dead-letters/{id}/replay", Method::POST, replay_one))
        .service(resource("/dead-letters/{id}/discard", Method::POST, discard));
}

#[derive(Deserialize)]
pub(super) struct ListQuery {
    limit: Option<String>,
}

/// The broker or the audit log out of reach, as the API says it.
pub(super) fn broker_error(e: anyhow::Error) -> ApiError {
    tracing::warn!(error = %format!("{e:#}"), "dead-letter queue unreachable");
    ApiError::Unavailable(format!("the broker or the audit log: {e:#}"))
}

/// The `limit` of a listing: 1 to [`MAX_LISTED`], 100 when not given.
pub(super) fn parse_limit(raw: Option<&str>) -> Result<usize, ApiError> {
    let limit = raw.map(|l| parse_positive("limit", l)).transpose()?.unwrap_or(100);
    if limit > MAX_LISTED {
        return Err(ApiError::BadRequest(format!("limit must be between 1 and {MAX_LISTED}")));
    }
    Ok(limit as usize)
}

/// What taking one message came to, as the API answers it: the message, or why nothing was done.
pub(super) fn taken(id: &str, outcome: Taken) -> Result<DeadLetter, ApiError> {
    match outcome {
        Taken::Done(letter) => Ok(*letter),
        Taken::NotFound => Err(ApiError::NotFound(format!("no dead letter {id:?} is waiting"))),
        Taken::NoQueue(letter) => Err(ApiError::Conflict(format!(
            "dead letter {id:?} names no work queue to go back to (it died in {}); discard it instead",
            letter.original_queue.as_deref().unwrap_or("no recorded queue")
        ))),
    }
}

#[utoipa::path(
    get,
    path = "/admin/dead-letters",
    operation_id = "listDeadLetters",
    summary = "Messages waiting in the dead-letter queue, from its head, decoded; they stay there.",
    params(("limit" = Option<u64>, Query, minimum = 1, maximum = 1000, description = "The most to show, 1 to 1000 (default 100).")),
    responses(
        (status = 200, description = "The messages.", body = DeadLetterList),
        (status = 400, description = "A malformed limit.", body = Error),
        ApiRefusals,
        (status = 503, description = "The broker is unavailable.", body = Error),
    )
)]
pub(super) async fn list(
    dead_letters: web::Data<DeadLetters>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = parse_limit(query.limit.as_deref())?;
    let messages = dead_letters.peek(limit).await.map_err(broker_error)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "messages": messages })))
}

#[utoipa::path(
    post,
    path = "/admin/dead-letters/replay",
    operation_id = "replayDeadLetters",
    summary = "Publishes every waiting dead letter back to the work queue it died in (from its x-death header) and \
        removes it; messages naming no work queue stay. Audited as replay_dead_letters.",
    responses(
        (status = 200, description = "What was done.", body = ReplayReport),
        ApiRefusals,
        (status = 503, description = "The broker or the database is unavailable.", body = Error),
    )
)]
pub(super) async fn replay(
    dead_letters: web::Data<DeadLetters>,
    actor: web::ReqData<Actor>,
) -> Result<HttpResponse, ApiError> {
    let report = dead_letters.replay(&actor).await.map_err(broker_error)?;
    Ok(HttpResponse::Ok().json(report))
}

#[utoipa::path(
    post,
    path = "/admin/dead-letters/{id}/replay",
    operation_id = "replayDeadLetter",
    summary = "Publishes one dead letter back to the work queue it died in and removes it; the others stay in \
        their order. Audited as replay_dead_letter.",
    params(("id" = String, Path, max_length = 128, description = "The message's id as listed: its AMQP message ID, \
        else sha256: and the hex SHA-256 of its body. The one nearest the head is taken when several share it.")),
    responses(
        (status = 200, description = "The message replayed.", body = DeadLetterTaken),
        (status = 400, description = "A malformed id.", body = Error),
        ApiRefusals,
        (status = 404, description = "No such message is waiting.", body = Error),
        (status = 409, description = "The message names no work queue to go back to; it stays.", body = Error),
        (status = 503, description = "The broker or the database is unavailable.", body = Error),
    )
)]
pub(super) async fn replay_one(
    dead_letters: web::Data<DeadLetters>,
    actor: web::ReqData<Actor>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = check_id("id", &path)?;
    let letter = taken(id, dead_letters.replay_one(id, &actor).await.map_err(broker_error)?)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "action": "replay", "message": letter })))
}

#[utoipa::path(
    post,
    path = "/admin/dead-letters/{id}/discard",
    operation_id = "discardDeadLetter",
    summary = "Removes one dead letter for good, after recording it in full in the audit log \
        (discard_dead_letter); the others stay in their order.",
    params(("id" = String, Path, max_length = 128, description = "The message's id as listed: its AMQP message ID, \
        else sha256: and the hex SHA-256 of its body. The one nearest the head is taken when several share it.")),
    responses(
        (status = 200, description = "The message discarded.", body = DeadLetterTaken),
        (status = 400, description = "A malformed id.", body = Error),
        ApiRefusals,
        (status = 404, description = "No such message is waiting.", body = Error),
        (status = 503, description = "The broker or the database is unavailable.", body = Error),
    )
)]
pub(super) async fn discard(
    dead_letters: web::Data<DeadLetters>,
    actor: web::ReqData<Actor>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = check_id("id", &path)?;
    let letter = taken(id, dead_letters.discard(id, &actor).await.map_err(broker_error)?)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "action": "discard", "message": letter })))
}
