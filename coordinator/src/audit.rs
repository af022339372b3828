//! Who acts on sagas: the [`Actor`] behind every operator action, as the admin scope's access check found it,
//! and the audit log (`operator_actions`) in which every action is [`record`]ed and from which operators
//! [`list`] it.

use diesel::{
    sql_types::{Array, BigInt, Jsonb, Nullable, Text, Timestamptz},
    QueryResult, QueryableByName,
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use serde_json::Value;
use shared_contracts::SagaId;

/// The credential that let a caller into the admin scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Credential {
    /// The operator token (`ADMIN_TOKEN`), as a bearer header or the pages' cookie.
    OperatorToken,
    /// The read-only token (`ADMIN_READ_TOKEN`), as a bearer header or the pages' cookie: it may read, never act.
    ReadOnlyToken,
    /// No token is configured and the caller is on loopback.
    Loopback,
}

impl Credential {
    /// How the audit log and the API name it.
    pub fn name(self) -> &'static str {
        match self {
            Self::OperatorToken => "operator_token",
            Self::ReadOnlyToken => "read_only_token",
            Self::Loopback => "loopback",
        }
    }
}

/// Who performs an admin request: the name the caller gave (the `X-Operator` header, else `anonymous`) and the
/// credential that let it in. The access check puts one into the extensions of every request it lets through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Actor {
    /// The caller's own name for itself; not authenticated, only recorded.
    pub name: String,
    /// What let it in.
    pub credential: Credential,
}

/// The header in which a caller names itself.
pub const OPERATOR_HEADER: &str = "x-operator";
/// The name recorded when a caller gives none (or an unusable one).
pub const ANONYMOUS: &str = "anonymous";
/// The longest name kept.
const MAX_NAME: usize = 64;

impl Actor {
    /// The actor of a request let in by `credential`, named by `header` (the `X-Operator` value) if it is a
    /// usable name: 1 to 64 printable characters. Anything else is recorded as [`ANONYMOUS`].
    pub fn new(header: Option<&str>, credential: Credential) -> Self {
        let name = header
            .map(str::trim)
            .filter(|name| !name.is_empty() && name.chars().count() <= MAX_NAME)
            .filter(|name| name.chars().all(|c| !c.is_control()))
            .unwrap_or(ANONYMOUS);
        Self { name: name.to_owned(), credential }
    }
}

/// Appends one operator action to the audit log: `action` (e.g. `retry`) by `actor` on `sagas`, given `details`
/// (a filter, a message), with `result`. Called in the transaction of the action itself where there is one, so
/// that the record and the change commit together.
pub async fn record(
    conn: &mut AsyncPgConnection,
    actor: &Actor,
    action: &str,
    sagas: &[SagaId],
    details: &Value,
    result: &Value,
) -> QueryResult<()> {
    let ids: Vec<String> = sagas.iter().map(ToString::to_string).collect();
    diesel::sql_query(
        "INSERT INTO operator_actions (actor, credential, action, saga_ids, details, result)
         VALUES ($1, $2, $3, $4::uuid[], $5, $6)",
    )
    .bind::<Text, _>(&actor.name)
    .bind::<Text, _>(actor.credential.name())
    .bind::<Text, _>(action)
    .bind::<Array<Text>, _>(ids)
    .bind::<Jsonb, _>(details)
    .bind::<Jsonb, _>(result)
    .execute(conn)
    .await
    .map(drop)
}

/// One row of the audit log.
#[derive(Debug, QueryableByName, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// Its place in the log.
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    /// When.
    #[diesel(sql_type = Timestamptz)]
    pub at: chrono::DateTime<chrono::Utc>,
    /// Who, by the name the caller gave.
    #[diesel(sql_type = Text)]
    pub actor: String,
    /// With which credential (see [`Credential::name`]).
    #[diesel(sql_type = Text)]
    pub credential: String,
    /// What: `retry`, `abort`, `bulk_retry`, `bulk_abort`, ...
    #[diesel(sql_type = Text)]
    pub action: String,
    /// On which sagas.
    #[diesel(sql_type = Array<Text>)]
    #[schema(value_type = Vec<uuid::Uuid>)]
    pub saga_ids: Vec<String>,
    /// What the action was given (a filter, the bulk action it was part of).
    #[diesel(sql_type = Jsonb)]
    pub details: Value,
    /// What came of it: the state afterwards, or the refusal.
    #[diesel(sql_type = Jsonb)]
    pub result: Value,
}

/// Which rows of the audit log an operator asks for.
#[derive(Debug, Default)]
pub struct AuditFilter {
    /// Only actions on this saga.
    pub saga_id: Option<SagaId>,
    /// Only this actor's.
    pub actor: Option<String>,
    /// Only this action.
    pub action: Option<String>,
    /// Page size.
    pub limit: i64,
    /// Rows to skip.
    pub offset: i64,
}

/// The rows of the audit log matching `filter`, newest first, and how many match in all.
pub async fn list(conn: &mut AsyncPgConnection, filter: &AuditFilter) -> QueryResult<(Vec<AuditEntry>, i64)> {
    const WHERE: &str = "WHERE ($1::uuid IS NULL OR saga_ids @> ARRAY[$1::uuid])
           AND ($2::text IS NULL OR actor = $2) AND ($3::text IS NULL OR action = $3)";
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let saga_id = filter.saga_id.map(|id| id.to_string());
    let entries = diesel::sql_query(format!(
        "SELECT id, at, actor, credential, action, saga_ids::text[] AS saga_ids, details, result
         FROM operator_actions {WHERE} ORDER BY at DESC, id DESC LIMIT $4 OFFSET $5"
    ))
    .bind::<Nullable<Text>, _>(saga_id.as_deref())
    .bind::<Nullable<Text>, _>(filter.actor.as_deref())
    .bind::<Nullable<Text>, _>(filter.action.as_deref())
    .bind::<BigInt, _>(filter.limit)
    .bind::<BigInt, _>(filter.offset)
    .load(conn)
    .await?;
    let total: Count = diesel::sql_query(format!("SELECT count(*) AS n FROM operator_actions {WHERE}"))
        .bind::<Nullable<Text>, _>(saga_id.as_deref())
        .bind::<Nullable<Text>, _>(filter.actor.as_deref())
        .bind::<Nullable<Text>, _>(filter.action.as_deref())
        .get_result(conn)
        .await?;
    Ok((entries, total.n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_usable_name_is_kept_and_anything_else_is_anonymous() {
        assert_eq!(Actor::new(Some(" alice "), Credential::Loopback).name, "alice");
        assert_eq!(Actor::new(None, Credential::Loopback).name, ANONYMOUS);
        assert_eq!(Actor::new(Some(""), Credential::Loopback).name, ANONYMOUS);
        assert_eq!(Actor::new(Some("a\nb"), Credential::Loopback).name, ANONYMOUS);
        assert_eq!(Actor::new(Some(&"x".repeat(65)), Credential::Loopback).name, ANONYMOUS);
        assert_eq!(Actor::new(Some(&"x".repeat(64)), Credential::OperatorToken).name.len(), 64);
    }
}
