//! Acting on many sagas at once: the sagas a [`BulkFilter`] matches are retried or aborted one by one, each
//! through [`Operations::perform_with`] (so each is locked, checked, audited and recorded in its history as a
//! single action would be), and the bulk action itself gets one audit row that lists the sagas and what came of
//! each. A dry run only says how many sagas match and which.
//!
//! A filter must name at least one criterion, so that nobody aborts every saga by leaving the form empty.

use chrono::{DateTime, Utc};
use diesel::{
    sql_types::{Array, BigInt, Nullable, Text, Timestamptz},
    QueryableByName,
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use platform::{
    db::Pool,
    http::{check_id, ApiError},
};
use serde::Serialize;
use serde_json::{json, Value};
use shared_contracts::SagaId;

use crate::{
    audit::{self, Actor},
    domain::Status,
    operations::{Action, Operations},
    store::REASON_SQL,
};

/// The most sagas one bulk action touches.
pub const MAX_LIMIT: u64 = 1000;
/// How many sagas a bulk action touches unless told otherwise.
pub const DEFAULT_LIMIT: u64 = 100;
/// The longest "unchanged for" a filter may ask for: 100 years, in seconds. Anything longer is a mistake.
pub const MAX_STUCK_SECS: u64 = 100 * 366 * 24 * 3600;

/// Which sagas a bulk action is for. Every criterion given must hold; at least one must be given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct BulkFilter {
    /// Only sagas in this status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// Only sagas failing for this reason: the `kind` of their failure reason (`out_of_stock`, `timed_out`,
    /// `aborted`, ...), or `cancel` for a cancellation that needs attention.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[a-z_]{1,64}$")]
    pub reason: Option<String>,
    /// Only sagas of this order.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 128)]
    pub order_id: Option<String>,
    /// Only sagas of this user.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 128)]
    pub user_id: Option<String>,
    /// Only unfinished sagas unchanged for at least this many seconds (at most 100 years).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 3162240000_u64)]
    pub stuck_for: Option<u64>,
    /// Only sagas created before this instant (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_before: Option<DateTime<Utc>>,
    /// Only sagas created at or after this instant (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_after: Option<DateTime<Utc>>,
}

/// A 400 naming what is wrong with the request body.
fn bad(message: impl Into<String>) -> ApiError {
    ApiError::BadRequest(message.into())
}

/// The string `field` of a JSON object, or a 400 naming it.
fn text(field: &str, value: Value) -> Result<String, ApiError> {
    match value {
        Value::String(text) => Ok(text),
        other => Err(bad(format!("{field} must be a string, got {other}"))),
    }
}

impl BulkFilter {
    /// The filter a JSON object describes, checked (see [`BulkFilter::validate`]). Read field by field rather
    /// than derived, so that every refusal names the field it is about.
    pub fn from_json(value: Value) -> Result<Self, ApiError> {
        let Value::Object(fields) = value else { return Err(bad(format!("filter must be an object, got {value}"))) };
        let mut filter = Self::default();
        for (field, value) in fields {
            match field.as_str() {
                "status" => {
                    let raw = text("status", value)?;
                    filter.status =
                        Some(raw.parse().map_err(|e: <Status as std::str::FromStr>::Err| bad(e.to_string()))?);
                }
                "reason" => filter.reason = Some(text("reason", value)?),
                "order_id" => filter.order_id = Some(text("order_id", value)?),
                "user_id" => filter.user_id = Some(text("user_id", value)?),
                "stuck_for" => {
                    let seconds = value.as_u64().ok_or_else(|| {
                        bad(format!("stuck_for must be a number of seconds from 0 to {MAX_STUCK_SECS}, got {value}"))
                    })?;
                    filter.stuck_for = Some(seconds);
                }
                "created_before" | "created_after" => {
                    let raw = text(&field, value)?;
                    let at = DateTime::parse_from_rfc3339(&raw)
                        .map_err(|e| bad(format!("{field} must be an RFC 3339 time, got {raw:?}: {e}")))?
                        .with_timezone(&Utc);
                    match field.as_str() {
                        "created_before" => filter.created_before = Some(at),
                        _ => filter.created_after = Some(at),
                    }
                }
                other => return Err(bad(format!("the filter has no field {other:?}"))),
            }
        }
        filter.validate()?;
        Ok(filter)
    }

    /// Refuses a filter that matches everything or holds a value out of range, naming what is wrong.
    pub fn validate(&self) -> Result<(), ApiError> {
        if *self == Self::default() {
            return Err(ApiError::BadRequest(
                "the filter is empty: name at least one of status, reason, order_id, user_id, stuck_for, \
                 created_before, created_after"
                    .into(),
            ));
        }
        if let Some(reason) = &self.reason {
            let usable =
                (1..=64).contains(&reason.len()) && reason.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
            if !usable {
                return Err(ApiError::BadRequest(format!(
                    "reason must be 1 to 64 lowercase letters and underscores, got {reason:?}"
                )));
            }
        }
        if let Some(order_id) = &self.order_id {
            check_id("order_id", order_id)?;
        }
        if let Some(user_id) = &self.user_id {
            check_id("user_id", user_id)?;
        }
        if let Some(stuck_for) = self.stuck_for {
            if stuck_for > MAX_STUCK_SECS {
                return Err(ApiError::BadRequest(format!(
                    "stuck_for must be at most {MAX_STUCK_SECS} seconds, got {stuck_for}"
                )));
            }
        }
        if let (Some(before), Some(after)) = (self.created_before, self.created_after) {
            if after >= before {
                return Err(ApiError::BadRequest("created_after must be earlier than created_before".into()));
            }
        }
        Ok(())
    }
}

/// What an operator asks of a bulk action.
#[derive(Debug, Clone, utoipa::ToSchema)]
pub struct BulkRequest {
    /// Which sagas.
    pub filter: BulkFilter,
    /// `true`: only say which sagas would be touched; `false`: act on them.
    pub dry_run: bool,
    /// The most sagas to touch, oldest first: 1 to 1000 (default 100).
    #[schema(minimum = 1, maximum = 1000)]
    pub limit: Option<u64>,
}

impl BulkRequest {
    /// The request a JSON body describes, checked; a 400 names what is wrong.
    pub fn from_json(body: &[u8]) -> Result<Self, ApiError> {
        let value: Value = serde_json::from_slice(body).map_err(|e| bad(format!("malformed request body: {e}")))?;
        let Value::Object(mut fields) = value else {
            return Err(bad("malformed request body: it must be an object with filter and dry_run"));
        };
        let filter = BulkFilter::from_json(fields.remove("filter").ok_or_else(|| bad("filter is missing"))?)?;
        let dry_run = match fields.remove("dry_run") {
            Some(Value::Bool(dry_run)) => dry_run,
            Some(other) => return Err(bad(format!("dry_run must be true or false, got {other}"))),
            None => return Err(bad("dry_run is missing: say true to see what would be touched, false to act")),
        };
        let limit = match fields.remove("limit") {
            None | Some(Value::Null) => None,
            Some(value) => Some(
                value
                    .as_u64()
                    .filter(|limit| (1..=MAX_LIMIT).contains(limit))
                    .ok_or_else(|| bad(format!("limit must be between 1 and {MAX_LIMIT}, got {value}")))?,
            ),
        };
        if let Some(field) = fields.keys().next() {
            return Err(bad(format!("the request has no field {field:?}")));
        }
        Ok(Self { filter, dry_run, limit })
    }

    /// The request's limit, checked.
    fn limit(&self) -> Result<i64, ApiError> {
        match self.limit.unwrap_or(DEFAULT_LIMIT) {
            limit @ 1..=MAX_LIMIT => Ok(limit as i64),
            _ => Err(bad(format!("limit must be between 1 and {MAX_LIMIT}"))),
        }
    }
}

/// A saga a filter matched.
#[derive(Debug, Clone, QueryableByName, Serialize, utoipa::ToSchema)]
pub struct Matched {
    /// The saga.
    #[diesel(sql_type = Text)]
    #[schema(format = Uuid)]
    pub saga_id: String,
    /// Its status when matched.
    #[diesel(sql_type = Text)]
    pub status: Status,
}

/// What came of the action on one saga.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SagaResult {
    /// The saga.
    #[schema(format = Uuid)]
    pub saga_id: String,
    /// Its status afterwards, when the action was done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// Why the action was refused (the saga had ended, or was gone), when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

/// The answer to a bulk action.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BulkReport {
    /// `bulk_retry` or `bulk_abort`.
    pub action: String,
    /// Whether this was only a dry run.
    pub dry_run: bool,
    /// How many sagas match the filter in all, also beyond the limit.
    pub matched: i64,
    /// The sagas taken (at most the limit), oldest first, with their status when matched.
    pub sagas: Vec<Matched>,
    /// What came of each, in the same order; empty for a dry run.
    pub results: Vec<SagaResult>,
}

/// The name of a bulk action in the API and the audit log.
pub fn action_name(action: Action) -> String {
    format!("bulk_{}", action.name())
}

/// Applies `action` to the sagas `request` selects, for `actor`, or only lists them for a dry run.
pub async fn run(
    pool: &Pool,
    operations: &Operations,
    actor: &Actor,
    action: Action,
    request: &BulkRequest,
) -> Result<BulkReport, ApiError> {
    request.filter.validate()?;
    let limit = request.limit()?;
    let name = action_name(action);
    let (sagas, matched) = {
        let mut conn = pool.get().await?;
        matching(&mut conn, &request.filter, limit).await?
    };
    let mut report = BulkReport { action: name.clone(), dry_run: request.dry_run, matched, sagas, results: Vec::new() };
    if request.dry_run {
        return Ok(report);
    }
    let details = json!({ "bulk": name });
    let mut ids = Vec::with_capacity(report.sagas.len());
    for saga in &report.sagas {
        let id: SagaId =
            saga.saga_id.parse().map_err(|_| ApiError::Unavailable("a stored saga ID is no UUID".into()))?;
        ids.push(id);
        let result = match operations.perform_with(id, action, actor, &details).await {
            Ok(state) => SagaResult { saga_id: saga.saga_id.clone(), status: Some(state.status()), refused: None },
            Err(refusal @ (ApiError::Conflict(_) | ApiError::NotFound(_))) => {
                SagaResult { saga_id: saga.saga_id.clone(), status: None, refused: Some(refusal.to_string()) }
            }
            Err(e) => return Err(e),
        };
        report.results.push(result);
    }
    let done = report.results.iter().filter(|r| r.refused.is_none()).count();
    let mut conn = pool.get().await?;
    audit::record(
        &mut conn,
        actor,
        &name,
        &ids,
        &json!({ "filter": request.filter, "limit": limit, "matched": matched }),
        &json!({ "done": done, "refused": report.results.len() - done, "results": report.results }),
    )
    .await?;
    tracing::info!(action = %name, actor = %actor.name, matched, done, "bulk operator action");
    Ok(report)
}

/// Up to `limit` sagas matching `filter`, oldest first, and how many match in all.
async fn matching(
    conn: &mut AsyncPgConnection,
    filter: &BulkFilter,
    limit: i64,
) -> Result<(Vec<Matched>, i64), ApiError> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(embed)]
        saga: Matched,
        #[diesel(sql_type = BigInt)]
        total: i64,
    }
    let rows: Vec<Row> = diesel::sql_query(format!(
        "SELECT id::text AS saga_id, status, count(*) OVER () AS total FROM sagas
         WHERE ($1::text IS NULL OR status = $1)
           AND ($2::text IS NULL OR {REASON_SQL} = $2)
           AND ($3::text IS NULL OR order_id = $3)
           AND ($4::text IS NULL OR user_id = $4)
           AND ($5::bigint IS NULL OR (status = ANY($6::text[])
                                       AND updated_at <= now() - make_interval(secs => $5::double precision)))
           AND ($7::timestamptz IS NULL OR created_at < $7)
           AND ($8::timestamptz IS NULL OR created_at >= $8)
         ORDER BY created_at, id LIMIT $9"
    ))
    .bind::<Nullable<Text>, _>(filter.status.map(Status::as_str))
    .bind::<Nullable<Text>, _>(filter.reason.as_deref())
    .bind::<Nullable<Text>, _>(filter.order_id.as_deref())
    .bind::<Nullable<Text>, _>(filter.user_id.as_deref())
    .bind::<Nullable<BigInt>, _>(filter.stuck_for.map(|s| s as i64))
    .bind::<Array<Text>, _>(Status::unfinished().map(Status::as_str).collect::<Vec<_>>())
    .bind::<Nullable<Timestamptz>, _>(filter.created_before)
    .bind::<Nullable<Timestamptz>, _>(filter.created_after)
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await?;
    let total = rows.as_slice().first().map_or(0, |row| row.total);
    Ok((rows.into_iter().map(|row| row.saga).collect(), total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(json: Value) -> Result<BulkFilter, String> {
        BulkFilter::from_json(json).map_err(|e| e.to_string())
    }

    #[test]
    fn an_empty_filter_is_refused() {
        assert!(filter(json!({})).unwrap_err().contains("the filter is empty"));
        assert!(filter(json!({"status": "failed"})).is_ok());
    }

    #[test]
    fn values_out_of_range_are_refused_by_name() {
        assert!(filter(json!({"stuck_for": 99_999_999_999_999_u64})).unwrap_err().contains("stuck_for"));
        assert!(filter(json!({"stuck_for": -1})).unwrap_err().contains("stuck_for"));
        assert!(filter(json!({"stuck_for": "10"})).unwrap_err().contains("stuck_for"));
        assert!(filter(json!({"stuck_for": MAX_STUCK_SECS})).is_ok());
        assert!(filter(json!({"status": "sleeping"})).unwrap_err().contains("sleeping"));
        assert!(filter(json!({"reason": "Out Of Stock"})).unwrap_err().contains("reason"));
        assert!(filter(json!({"order_id": ""})).unwrap_err().contains("order_id"));
        assert!(filter(json!({"created_after": "yesterday"})).unwrap_err().contains("created_after"));
        assert!(filter(json!({"colour": "red"})).unwrap_err().contains("colour"));
        let backwards = json!({"created_after": "2026-12-02T00:00:00Z", "created_before": "2026-12-01T00:00:00Z"});
        assert!(filter(backwards).unwrap_err().contains("created_after"));
    }

    #[test]
    fn a_request_needs_a_filter_and_dry_run_and_a_limit_of_one_to_a_thousand() {
        let request = |body: Value| BulkRequest::from_json(body.to_string().as_bytes()).map_err(|e| e.to_string());
        let filter = json!({"status": "executing"});
        let plain = request(json!({"filter": filter, "dry_run": true})).unwrap();
        assert_eq!((plain.limit().unwrap(), plain.dry_run), (100, true));
        assert_eq!(request(json!({"filter": filter, "dry_run": false, "limit": 1000})).unwrap().limit().unwrap(), 1000);
        assert!(request(json!({"filter": filter, "dry_run": false, "limit": 0})).unwrap_err().contains("limit"));
        assert!(request(json!({"filter": filter, "dry_run": false, "limit": 1001})).unwrap_err().contains("limit"));
        assert!(request(json!({"filter": filter})).unwrap_err().contains("dry_run"));
        assert!(request(json!({"filter": filter, "dry_run": "yes"})).unwrap_err().contains("dry_run"));
        assert!(request(json!({"dry_run": true})).unwrap_err().contains("filter"));
        assert!(request(json!({"filter": filter, "dry_run": true, "x": 1})).unwrap_err().contains("\"x\""));
        assert!(request(json!([1])).unwrap_err().contains("malformed"));
    }
}
