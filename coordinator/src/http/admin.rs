//! Admin endpoints: find sagas (by status, failure reason, order, user, time range, "stuck"; sorted, paged, with
//! the total), show one with its reason, attempts, trace, allowed actions and history, count sagas per status,
//! and retry or abort one. Who may call them is decided before, around the whole `/admin` scope
//! (see [`super::AdminAccess`]).

use actix_web::{http::Method, web, HttpResponse};
use chrono::{DateTime, Utc};
use platform::{
    db::Pool,
    http::{check_id, parse_amount, resource, Amount, ApiError, ErrorBody as Error, Id},
};
use serde::Deserialize;
use shared_contracts::{FailureReason, SagaId};

use super::openapi::{ActionDone, ApiRefusals, SagaPage, SagaWithHistory, Stats, StuckFor};

use crate::{
    audit::Actor,
    domain::{SagaState, Status},
    operations::{Action, Operations},
    store::{self, SagaFilter, SagaSummary, SortKey, SortOrder, MAX_STUCK_SECS},
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

/// Query parameters of `GET /admin/sagas` (and of the overview page's list), all optional and all validated by
/// [`SagaQuery::filter`] so that a bad one is a 400 that names it.
#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct SagaQuery {
    pub(super) status: Option<String>,
    pub(super) reason: Option<String>,
    pub(super) order_id: Option<String>,
    pub(super) user_id: Option<String>,
    pub(super) created_after: Option<String>,
    pub(super) created_before: Option<String>,
    pub(super) updated_after: Option<String>,
    pub(super) updated_before: Option<String>,
    pub(super) stuck_for: Option<String>,
    pub(super) sort: Option<String>,
    pub(super) order: Option<String>,
    pub(super) limit: Option<String>,
    pub(super) offset: Option<String>,
}

/// The default page size.
pub(super) const DEFAULT_PAGE: u64 = 100;

impl SagaQuery {
    /// The filter these parameters describe, or a 400 naming the first one that is wrong.
    pub(super) fn filter(&self) -> Result<SagaFilter, ApiError> {
        let limit = self.limit.as_deref().map(|l| parse_amount("limit", l)).transpose()?.unwrap_or(DEFAULT_PAGE);
        if limit == 0 || limit > MAX_PAGE {
            return Err(ApiError::BadRequest(format!("limit must be between 1 and {MAX_PAGE}, got {limit}")));
        }
        let stuck_for = self.stuck_for.as_deref().map(|s| parse_amount("stuck_for", s)).transpose()?;
        if let Some(secs) = stuck_for.filter(|&s| s > MAX_STUCK_SECS as u64) {
            return Err(ApiError::BadRequest(format!(
                "stuck_for must be at most {MAX_STUCK_SECS} seconds, got {secs}"
            )));
        }
        Ok(SagaFilter {
            statuses: self.status.as_deref().map(parse_statuses).transpose()?.unwrap_or_default(),
            reason: optional_id("reason", &self.reason)?,
            order_id: optional_id("order_id", &self.order_id)?,
            user_id: optional_id("user_id", &self.user_id)?,
            created_after: optional_time("created_after", &self.created_after)?,
            created_before: optional_time("created_before", &self.created_before)?,
            updated_after: optional_time("updated_after", &self.updated_after)?,
            updated_before: optional_time("updated_before", &self.updated_before)?,
            stuck_for_secs: stuck_for.map(|s| s as i64),
            sort: match self.sort.as_deref() {
                None | Some("created_at") => SortKey::CreatedAt,
                Some("updated_at") => SortKey::UpdatedAt,
                Some(other) => {
                    return Err(ApiError::BadRequest(format!("sort must be created_at or updated_at, got {other:?}")))
                }
            },
            order: match self.order.as_deref() {
                None | Some("desc") => SortOrder::Desc,
                Some("asc") => SortOrder::Asc,
                Some(other) => return Err(ApiError::BadRequest(format!("order must be asc or desc, got {other:?}"))),
            },
            limit: limit as i64,
            // parse_amount stops at i64::MAX.
            offset: self.offset.as_deref().map(|o| parse_amount("offset", o)).transpose()?.unwrap_or(0) as i64,
        })
    }
}

/// `executing` or a comma-separated list such as `failed,needs_attention`.
fn parse_statuses(raw: &str) -> Result<Vec<Status>, ApiError> {
    let mut statuses = Vec::new();
    for name in raw.split(',') {
        let status = name.trim().parse::<Status>().map_err(|e| ApiError::BadRequest(format!("status: {e}")))?;
        if !statuses.contains(&status) {
            statuses.push(status);
        }
    }
    Ok(statuses)
}

fn optional_id(what: &str, raw: &Option<String>) -> Result<Option<String>, ApiError> {
    raw.as_deref().map(|value| check_id(what, value).map(str::to_owned)).transpose()
}

/// An RFC 3339 timestamp such as `2026-12-02T04:00:00Z`.
fn optional_time(what: &str, raw: &Option<String>) -> Result<Option<DateTime<Utc>>, ApiError> {
    raw.as_deref()
        .map(|value| {
            DateTime::parse_from_rfc3339(value).map(|t| t.with_timezone(&Utc)).map_err(|e| {
                ApiError::BadRequest(format!(
                    "{what} must be an RFC 3339 timestamp such as 2026-12-02T04:00:00Z, got {value:?} ({e})"
                ))
            })
        })
        .transpose()
}

/// One page of the sagas `filter` matches, and how many match on all pages.
pub(super) async fn find_page(pool: &Pool, filter: &SagaFilter) -> Result<(Vec<SagaSummary>, i64), ApiError> {
    let mut conn = pool.get().await?;
    Ok(store::page(&mut conn, filter).await?)
}

#[utoipa::path(
    get,
    path = "/admin/sagas",
    operation_id = "listSagas",
    summary = "Sagas, filtered, sorted (newest first unless asked otherwise) and paged, with the total.",
    params(
        ("status" = Option<String>, Query, pattern = r"^[a-z_]+(,[a-z_]+)*$",
            description = "Only these statuses: one, or several separated by commas (`failed,needs_attention`)."),
        ("reason" = Option<Id>, Query, description = "Only sagas failing or failed for this reason: the `kind` of \
            the failure reason (`out_of_stock`, `unknown_item`, `insufficient_credit`, `unknown_user`, `cancelled`, \
            `aborted`, `timed_out`), exactly."),
        ("order_id" = Option<Id>, Query, description = "Only this order."),
        ("user_id" = Option<Id>, Query, description = "Only this user."),
        ("created_after" = Option<DateTime<Utc>>, Query, description = "Only sagas created at or after this (RFC 3339)."),
        ("created_before" = Option<DateTime<Utc>>, Query, description = "Only sagas created before this (RFC 3339)."),
        ("updated_after" = Option<DateTime<Utc>>, Query, description = "Only sagas last changed at or after this (RFC 3339)."),
        ("updated_before" = Option<DateTime<Utc>>, Query, description = "Only sagas last changed before this (RFC 3339)."),
        ("stuck_for" = Option<StuckFor>, Query, description = "Only unfinished sagas unchanged for at least this many seconds."),
        ("sort" = Option<String>, Query, pattern = "^(created_at|updated_at)$",
            description = "Sort by `created_at` (default) or `updated_at`."),
        ("order" = Option<String>, Query, pattern = "^(asc|desc)$", description = "`desc` (default, newest first) or `asc`."),
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 1000, description = "Page size, 1 to 1000 (default 100)."),
        ("offset" = Option<Amount>, Query, description = "Rows to skip (default 0)."),
    ),
    responses(
        (status = 200, description = "A page of sagas and the number of all that match.", body = SagaPage),
        (status = 400, description = "A malformed query parameter, named in the message.", body = Error),
        ApiRefusals,
        (status = 503, description = "The database is unavailable.", body = Error),
    )
)]
pub(super) async fn list(pool: web::Data<Pool>, query: web::Query<SagaQuery>) -> Result<HttpResponse, ApiError> {
    let filter = query.filter()?;
    let (sagas, total) = find_page(&pool, &filter).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "sagas": sagas, "total": total, "limit": filter.limit, "offset": filter.offset,
    })))
}

/// What an operator sees of one saga beyond its row: the reason, attempts, trace and what may be done now.
pub(super) struct SagaDetails {
    /// The failure reason in full, if the saga fails or failed.
    pub(super) reason: Option<FailureReason>,
    /// What went wrong, if it needs attention.
    pub(super) problem: Option<String>,
    /// The trace ID of the checkout's trace.
    pub(super) trace_id: Option<String>,
    /// `retry` and `abort`, those allowed now.
    pub(super) allowed_actions: Vec<&'static str>,
}

impl SagaDetails {
    /// The details of `saga`, from its stored state.
    pub(super) fn of(saga: &SagaSummary) -> Result<Self, ApiError> {
        let state: SagaState = serde_json::from_value(saga.state.clone())
            .map_err(|e| ApiError::Unavailable(format!("saga {} has an unreadable state: {e}", saga.id)))?;
        let allowed = [(Action::Retry, state.check_retry()), (Action::Abort, state.check_abort())];
        Ok(Self {
            reason: state.failure_reason().cloned(),
            problem: state.problem().map(str::to_owned),
            trace_id: saga.traceparent.as_deref().and_then(trace_id).map(str::to_owned),
            allowed_actions: allowed.into_iter().filter(|(_, check)| check.is_ok()).map(|(a, _)| a.name()).collect(),
        })
    }
}

/// The trace ID of a W3C `traceparent` (`00-<trace id>-<parent id>-<flags>`).
pub(super) fn trace_id(traceparent: &str) -> Option<&str> {
    let mut fields = traceparent.split('-');
    let _version = fields.next()?;
    fields.next().filter(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[utoipa::path(
    get,
    path = "/admin/sagas/{saga_id}",
    operation_id = "showSaga",
    summary = "One saga, its failure reason, attempts, trace ID, the actions allowed now, and its full history.",
    params(("saga_id" = uuid::Uuid, Path, description = "The saga (a UUID).")),
    responses(
        (status = 200, description = "The saga.", body = SagaWithHistory),
        (status = 400, description = "Not a UUID.", body = Error),
        ApiRefusals,
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
    let details = SagaDetails::of(&saga)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "reason": details.reason,
        "problem": details.problem,
        "attempts": saga.retries,
        "trace_id": details.trace_id,
        "allowed_actions": details.allowed_actions,
        "saga": saga,
        "history": history,
    })))
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
        ApiRefusals,
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
        ApiRefusals,
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
        ApiRefusals,
        (status = 503, description = "The database is unavailable.", body = Error),
    )
)]
pub(super) async fn stats(pool: web::Data<Pool>) -> Result<HttpResponse, ApiError> {
    let mut conn = pool.get().await?;
    let counts = store::counts(&mut conn).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "sagas": counts })))
}
