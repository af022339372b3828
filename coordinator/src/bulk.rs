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
use serde::{Deserialize, Serialize};
use serde_json::json;
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkFilter {
    /// Only sagas in this status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// Only sagas failing for this reason: the `kind` of their failure reason (`out_of_stock`, `timed_out`,
    /// `aborted`, ...), or `cancel` for a cancellation that needs attention.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[a-z_]{1,64}$")]
    pub reason: Option<String>,
    /// Only sagas of this order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 128)]
    pub order_id: Option<String>,
    /// Only sagas of this user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 128)]
    pub user_id: Option<String>,
    /// Only unfinished sagas unchanged for at least this many seconds (at most 100 years).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 3162240000_u64)]
    pub stuck_for: Option<u64>,
    /// Only sagas created before this instant (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_before: Option<DateTime<Utc>>,
    /// Only sagas created at or after this instant (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_after: Option<DateTime<Utc>>,
}

impl BulkFilter {
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
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRequest {
    /// Which sagas.
    pub filter: BulkFilter,
    /// `true`: only say which sagas would be touched; `false`: act on them.
    pub dry_run: bool,
    /// The most sagas to touch, oldest first: 1 to 1000 (default 100).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1000)]
    pub limit: Option<u64>,
}

impl BulkRequest {
    /// The request's limit, checked.
    fn limit(&self) -> Result<i64, ApiError> {
        match self.limit.unwrap_or(DEFAULT_LIMIT) {
            limit @ 1..=MAX_LIMIT => Ok(limit as i64),
            _ => Err(ApiError::BadRequest(format!("limit must be between 1 and {MAX_LIMIT}"))),
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

    fn filter(json: serde_json::Value) -> Result<BulkFilter, String> {
        let filter: BulkFilter = serde_json::from_value(json).map_err(|e| e.to_string())?;
        filter.validate().map_err(|e| e.to_string())?;
        Ok(filter)
    }

    #[test]
    fn an_empty_filter_is_refused() {
        assert!(filter(json!({})).unwrap_err().contains("the filter is empty"));
        assert!(filter(json!({"status": "failed"})).is_ok());
    }

    #[test]
    fn values_out_of_range_are_refused_by_name() {
        assert!(filter(json!({"stuck_for": 99_999_999_999_999_u64})).unwrap_err().contains("stuck_for"));
        assert!(filter(json!({"stuck_for": -1})).is_err());
        assert!(filter(json!({"stuck_for": MAX_STUCK_SECS})).is_ok());
        assert!(filter(json!({"status": "sleeping"})).unwrap_err().contains("sleeping"));
        assert!(filter(json!({"reason": "Out Of Stock"})).unwrap_err().contains("reason"));
        assert!(filter(json!({"order_id": ""})).unwrap_err().contains("order_id"));
        assert!(filter(json!({"created_after": "yesterday"})).is_err());
        assert!(filter(json!({"colour": "red"})).unwrap_err().contains("colour"));
        let backwards = json!({"created_after": "2026-12-02T00:00:00Z", "created_before": "2026-12-01T00:00:00Z"});
        assert!(filter(backwards).unwrap_err().contains("created_after"));
    }

    #[test]
    fn the_limit_is_one_to_a_thousand() {
        let request = |limit| BulkRequest { filter: BulkFilter::default(), dry_run: true, limit };
        assert_eq!(request(None).limit().unwrap(), 100);
        assert_eq!(request(Some(1000)).limit().unwrap(), 1000);
        assert!(request(Some(0)).limit().is_err());
        assert!(request(Some(1001)).limit().is_err());
    }
}
