//! Admin endpoints: list sagas (by status, order, user, "stuck"), show one with its history, count sagas per
//! status, and retry or abort one. Who may call them is decided before, around the whole `/admin` scope
//! (see [`super::AdminAccess`]).

use actix_web::{http::Method, web, HttpResponse};
use platform::{
    db::Pool,
    http::{check_id, parse_amount, resource, Amount, ApiError, ErrorBody as Error, Id},
};
use serde::Deserialize;
use shared_contracts::SagaId;

use super::openapi::{ActionDone, SagaPage, SagaWithHistory, Stats};

use crate::{
    audit::Actor,
    domain::Status,
    operations::{Action, Operations},
    store::{self, SagaFilter},
};

/// The most sagas one page returns.
const MAX_PAGE: u64 = 1000;

/// Registers the routes, relative to the `/admin` scope.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/sagas", Method::GET, list))
        .service(resource("/sagas/{saga_id}", Method::GET, show))
        .service(resource("/sagas/{saga_id}/retry", Method::POST, retry))
        .service(resource("/sagas/{saga_id}/abort", Method::POST, abort))
        .service(resource("/stats", Method::GET, stats));
}

fn parse_saga_id(raw: &str) -> Result<SagaId, ApiError> {
    raw.parse().map_err(|_| ApiError::BadRequest(format!("saga_id {raw:?} is not a UUID")))
}

/// Query parameters of `GET /admin/sagas`, all optional and all validated by hand so that a bad one is a 400
/// that names it.
#[derive(Deserialize)]
pub(super) struct ListQuery {
    status: Option<String>,
    order_id: Option<String>,
    user_id: Option<String>,
    stuck_for: Option<String>,
    limit: Option<String>,
    offset: Option<String>,
}

#[utoipa::path(
    get,
    path = "/admin/sagas",
    operation_id = "listSagas",
    summary = "Sagas, newest first, filtered.",
    params(
        ("status" = Option<Status>, Query, description = "Only this status."),
        ("order_id" = Option<Id>, Query, description = "Only this order."),
        ("user_id" = Option<Id>, Query, description = "Only this user."),
        ("stuck_for" = Option<Amount>, Query, description = "Only unfinished sagas unchanged for at least this many seconds."),
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 1000, description = "Page size, 1 to 1000 (default 100)."),
        ("offset" = Option<Amount>, Query, description = "Rows to skip (default 0)."),
    ),
    responses(
        (status = 200, description = "A page of sagas.", body = SagaPage),
        (status = 400, description = "A malformed query parameter.", body = Error),
        (status = 401, description = "ADMIN_TOKEN is configured and the request has no valid bearer token.", body = Error),
        (status = 403, description = "No ADMIN_TOKEN is configured and the caller is not on loopback.", body = Error),
        (status = 503, description = "The database is unavailable.", body = Error),
    )
)]
pub(super) async fn list(pool: web::Data<Pool>, query: web::Query<ListQuery>) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let status = query
        .status
        .as_deref()
        .map(str::parse::<Status>)
        .transpose()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let limit = query.limit.as_deref().map(|l| parse_amount("limit", l)).transpose()?.unwrap_or(100);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::BadRequest(format!("limit must be between 1 and {MAX_PAGE}")));
    }
    let filter = SagaFilter {
        status,
        order_id: query.order_id.as_deref().map(|o| check_id("order_id", o).map(str::to_owned)).transpose()?,
        user_id: query.user_id.as_deref().map(|u| check_id("user_id", u).map(str::to_owned)).transpose()?,
        stuck_for_secs: query.stuck_for.as_deref().map(|s| parse_amount("stuck_for", s)).transpose()?.map(|s| s as i64),
        limit: limit as i64,
        offset: query.offset.as_deref().map(|o| parse_amount("offset", o)).transpose()?.unwrap_or(0) as i64,
    };
    let mut conn = pool.get().await?;
    let sagas = store::list(&mut conn, &filter).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "sagas": sagas, "limit": filter.limit, "offset": filter.offset })))
}

#[utoipa::path(
    get,
    path = "/admin/sagas/{saga_id}",
    operation_id = "showSaga",
    summary = "One saga and its full history.",
    params(("saga_id" = uuid::Uuid, Path, description = "The saga (a UUID).")),
    responses(
        (status = 200, description = "The saga.", body = SagaWithHistory),
        (status = 400, description = "Not a UUID.", body = Error),
        (status = 401, description = "ADMIN_TOKEN is configured and the request has no valid bearer token.", body = Error),
        (status = 403, description = "No ADMIN_TOKEN is configured and the caller is not on loopback.", body = Error),
        (status = 404, description = "No such saga.", body = Error),
        (status = 503, description = "The database is unavailable.", body = Error),
    )
)]
pub(super) async fn show(pool: web::Data<Pool>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = parse_saga_id(&path)?;
    let mut conn = pool.get().await?;
    let saga =
        store::find(&mut conn, id).await?.ok_or_else(|| ApiError::NotFound(format!("saga {id} does not exist")))?;
    let history = store::history(&mut conn, id).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "saga": saga, "history": history })))
}

/// `POST /admin/sagas/{id}/retry` and `/abort`.
async fn act(
    operations: web::Data<Operations>,
    path: web::Path<String>,
    actor: web::ReqData<Actor>,
    action: Action,
) -> Result<HttpResponse, ApiError> {
    let id = parse_saga_id(&path)?;
    let state = operations.perform(id, action, &actor).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "saga_id": id, "action": action.name(), "state": state })))
}

#[utoipa::path(
    post,
    path = "/admin/sagas/{saga_id}/retry",
    operation_id = "retrySaga",
    summary = "Re-sends the saga's unanswered commands now.",
    params(("saga_id" = uuid::Uuid, Path, description = "The saga (a UUID).")),
    responses(
        (status = 200, description = "Done; the state afterwards.", body = ActionDone),
        (status = 400, description = "Not a UUID.", body = Error),
        (status = 401, description = "ADMIN_TOKEN is configured and the request has no valid bearer token.", body = Error),
        (status = 403, description = "No ADMIN_TOKEN is configured and the caller is not on loopback.", body = Error),
        (status = 404, description = "No such saga.", body = Error),
        (status = 409, description = "The saga has already ended.", body = Error),
        (status = 503, description = "The database is unavailable.", body = Error),
    )
)]
pub(super) async fn retry(
    operations: web::Data<Operations>,
    path: web::Path<String>,
    actor: web::ReqData<Actor>,
) -> Result<HttpResponse, ApiError> {
    act(operations, path, actor, Action::Retry).await
}

#[utoipa::path(
    post,
    path = "/admin/sagas/{saga_id}/abort",
    operation_id = "abortSaga",
    summary = "Compensates whatever the saga did, then fails it with reason `aborted`.",
    params(("saga_id" = uuid::Uuid, Path, description = "The saga (a UUID).")),
    responses(
        (status = 200, description = "Done; the state afterwards.", body = ActionDone),
        (status = 400, description = "Not a UUID.", body = Error),
        (status = 401, description = "ADMIN_TOKEN is configured and the request has no valid bearer token.", body = Error),
        (status = 403, description = "No ADMIN_TOKEN is configured and the caller is not on loopback.", body = Error),
        (status = 404, description = "No such saga.", body = Error),
        (status = 409, description = "The saga has already ended.", body = Error),
        (status = 503, description = "The database is unavailable.", body = Error),
    )
)]
pub(super) async fn abort(
    operations: web::Data<Operations>,
    path: web::Path<String>,
    actor: web::ReqData<Actor>,
) -> Result<HttpResponse, ApiError> {
    act(operations, path, actor, Action::Abort).await
}

#[utoipa::path(
    get,
    path = "/admin/stats",
    operation_id = "stats",
    summary = "How many sagas are in each status.",
    responses(
        (status = 200, description = "Counts.", body = Stats),
        (status = 401, description = "ADMIN_TOKEN is configured and the request has no valid bearer token.", body = Error),
        (status = 403, description = "No ADMIN_TOKEN is configured and the caller is not on loopback.", body = Error),
        (status = 503, description = "The database is unavailable.", body = Error),
    )
)]
pub(super) async fn stats(pool: web::Data<Pool>) -> Result<HttpResponse, ApiError> {
    let mut conn = pool.get().await?;
    let counts = store::counts(&mut conn).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "sagas": counts })))
}
