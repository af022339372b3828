//! Admin endpoints for acting on many sagas and looking back at what operators did: bulk retry and abort by
//! filter (see [`crate::bulk`]), the failed and needs-attention sagas grouped by reason, and the audit log.

use actix_web::{http::Method, web, HttpResponse};
use platform::{
    db::Pool,
    http::{check_id, parse_amount, resource, Amount, ApiError, ErrorBody as Error},
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::openapi::{ApiRefusals, AuditPage, FailureList};
use crate::{
    audit::{self, Actor, AuditFilter},
    bulk::{self, BulkReport, BulkRequest},
    operations::{Action, Operations},
    store::{self, FailureGroup},
};

/// The most audit rows one page returns.
const MAX_PAGE: u64 = 1000;

/// Registers the routes, relative to the `/admin` scope.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/sagas/bulk/retry", Method::POST, bulk_retry))
        .service(resource("/sagas/bulk/abort", Method::POST, bulk_abort))
        .service(resource("/failures", Method::GET, failures))
        .service(resource("/audit", Method::GET, audit_log));
}

async fn act(
    pool: web::Data<Pool>,
    operations: web::Data<Operations>,
    actor: web::ReqData<Actor>,
    body: web::Bytes,
    action: Action,
) -> Result<HttpResponse, ApiError> {
    let request = BulkRequest::from_json(&body)?;
    let report = bulk::run(&pool, &operations, &actor, action, &request).await?;
    Ok(HttpResponse::Ok().json(report))
}

#[utoipa::path(
    post,
    path = "/admin/sagas/bulk/retry",
    operation_id = "bulkRetry",
    summary = "Re-sends the unanswered commands of every saga the filter matches (up to the limit, oldest first), \
        or with `dry_run` only says which sagas those are.",
    request_body = BulkRequest,
    responses(
        (status = 200, description = "The sagas matched and, unless a dry run, what came of each.", body = BulkReport),
        (status = 400, description = "A malformed body, an empty filter or a value out of range.", body = Error),
        ApiRefusals,
        (status = 503, description = "The database is unavailable.", body = Error),
    )
)]
pub(super) async fn bulk_retry(
    pool: web::Data<Pool>,
    operations: web::Data<Operations>,
    actor: web::ReqData<Actor>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    act(pool, operations, actor, body, Action::Retry).await
}

#[utoipa::path(
    post,
    path = "/admin/sagas/bulk/abort",
    operation_id = "bulkAbort",
    summary = "Aborts every saga the filter matches (up to the limit, oldest first), or with `dry_run` only says \
        which sagas those are.",
    request_body = BulkRequest,
    responses(
        (status = 200, description = "The sagas matched and, unless a dry run, what came of each.", body = BulkReport),
        (status = 400, description = "A malformed body, an empty filter or a value out of range.", body = Error),
        ApiRefusals,
        (status = 503, description = "The database is unavailable.", body = Error),
    )
)]
pub(super) async fn bulk_abort(
    pool: web::Data<Pool>,
    operations: web::Data<Operations>,
    actor: web::ReqData<Actor>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    act(pool, operations, actor, body, Action::Abort).await
}

/// A failure group with where to find its sagas.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Failure {
    #[serde(flatten)]
    group: FailureGroup,
    /// The saga list showing the group's sagas: `GET` this path.
    #[schema(example = "/admin/sagas?status=failed&reason=out_of_stock")]
    sagas: String,
}

/// The list filter that shows the sagas of `group`, as a query string of `GET /admin/sagas`.
pub(super) fn group_query(group: &FailureGroup) -> String {
    let mut query = format!("status={}", group.status.as_str());
    if let Some(reason) = &group.reason {
        // Reasons are lowercase letters and underscores: nothing to encode.
        query.push_str(&format!("&reason={reason}"));
    }
    query
}

#[utoipa::path(
    get,
    path = "/admin/failures",
    operation_id = "failures",
    summary = "The failed and needs-attention sagas grouped by status and reason, largest group first.",
    responses(
        (status = 200, description = "The groups.", body = FailureList),
        ApiRefusals,
        (status = 503, description = "The database is unavailable.", body = Error),
    )
)]
pub(super) async fn failures(pool: web::Data<Pool>) -> Result<HttpResponse, ApiError> {
    let mut conn = pool.get().await?;
    let groups = store::failure_groups(&mut conn).await?;
    let failures: Vec<Failure> = groups
        .into_iter()
        .map(|group| Failure { sagas: format!("/admin/sagas?{}", group_query(&group)), group })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "failures": failures })))
}

/// Query parameters of `GET /admin/audit`, validated by hand so that a bad one is a 400 that names it.
#[derive(Deserialize)]
pub(super) struct AuditQuery {
    saga_id: Option<String>,
    actor: Option<String>,
    action: Option<String>,
    limit: Option<String>,
    offset: Option<String>,
}

impl AuditQuery {
    /// The filter this query asks for, or a 400 naming the bad parameter.
    pub(super) fn filter(&self) -> Result<AuditFilter, ApiError> {
        let limit = self.limit.as_deref().map(|l| parse_amount("limit", l)).transpose()?.unwrap_or(100);
        if limit == 0 || limit > MAX_PAGE {
            return Err(ApiError::BadRequest(format!("limit must be between 1 and {MAX_PAGE}")));
        }
        let saga_id = self
            .saga_id
            .as_deref()
            .map(|raw| raw.parse().map_err(|_| ApiError::BadRequest(format!("saga_id {raw:?} is not a UUID"))))
            .transpose()?;
        let text = |what, value: &Option<String>| value.as_deref().map(|v| check_id(what, v).map(str::to_owned));
        Ok(AuditFilter {
            saga_id,
            actor: text("actor", &self.actor).transpose()?,
            action: text("action", &self.action).transpose()?,
            limit: limit as i64,
            offset: self.offset.as_deref().map(|o| parse_amount("offset", o)).transpose()?.unwrap_or(0) as i64,
        })
    }
}

#[utoipa::path(
    get,
    path = "/admin/audit",
    operation_id = "auditLog",
    summary = "The audit log of operator actions, newest first, filtered.",
    params(
        ("saga_id" = Option<uuid::Uuid>, Query, description = "Only actions on this saga."),
        ("actor" = Option<String>, Query, min_length = 1, max_length = 128, description = "Only this actor's."),
        ("action" = Option<String>, Query, min_length = 1, max_length = 128, description = "Only this action (`retry`, `abort`, `bulk_retry`, `bulk_abort`)."),
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 1000, description = "Page size, 1 to 1000 (default 100)."),
        ("offset" = Option<Amount>, Query, description = "Rows to skip (default 0)."),
    ),
    responses(
        (status = 200, description = "A page of the log, with the total.", body = AuditPage),
        (status = 400, description = "A malformed query parameter.", body = Error),
        ApiRefusals,
        (status = 503, description = "The database is unavailable.", body = Error),
    )
)]
pub(super) async fn audit_log(pool: web::Data<Pool>, query: web::Query<AuditQuery>) -> Result<HttpResponse, ApiError> {
    let filter = query.filter()?;
    let mut conn = pool.get().await?;
    let (entries, total) = audit::list(&mut conn, &filter).await?;
    Ok(HttpResponse::Ok().json(json!({
        "entries": entries, "total": total, "limit": filter.limit, "offset": filter.offset
    })))
}
