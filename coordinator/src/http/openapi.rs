//! The coordinator's OpenAPI document, derived from the handlers' annotations (`docs/openapi/coordinator.json` is
//! its committed copy), and the schemas of the answers that the handlers build as JSON.

use std::collections::BTreeMap;

use utoipa::{
    openapi::{schema::Schema, KnownFormat, ObjectBuilder, OneOfBuilder, RefOr, SchemaFormat, Type},
    OpenApi, PartialSchema, ToSchema,
};

use shared_contracts::FailureReason;

use crate::{
    audit::{Actor, AuditEntry, Credential},
    bulk::{BulkFilter, BulkReport, BulkRequest, Matched, SagaResult},
    dead_letters::{DeadLetter, ReplayReport},
    domain::Status,
    store::{FailureGroup, HistoryLine, SagaSummary, MAX_STUCK_SECS},
};

/// The refusals of the admin scope's access check (`super::admin_only`), the same for every JSON operation under
/// `/admin`.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // Only its schema is used: the middleware answers these, not the handlers.
pub(super) enum ApiRefusals {
    #[response(status = 401, description = "ADMIN_TOKEN is configured and the request has no valid bearer token.")]
    Unauthorized(platform::http::ErrorBody<'static>),
    #[response(
        status = 403,
        description = "A Host not on ADMIN_ALLOWED_HOSTS; a change from another site (Sec-Fetch-Site, Origin, \
            Referer); the read-only token on anything but a read; or, with no ADMIN_TOKEN configured, a caller not \
            on loopback."
    )]
    Forbidden(platform::http::ErrorBody<'static>),
}

/// The same refusals for the operator pages under `/admin/ui`, which answer them as HTML pages.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // Only its schema is used: the middleware answers these, not the handlers.
pub(super) enum PageRefusals {
    #[response(
        status = 401,
        content_type = "text/html",
        description = "ADMIN_TOKEN is configured and the request has no valid token (bearer, or the admin_token \
            cookie)."
    )]
    Unauthorized(String),
    #[response(
        status = 403,
        content_type = "text/html",
        description = "A Host not on ADMIN_ALLOWED_HOSTS; a form posted from another site; the read-only token on \
            anything but a read; or, with no ADMIN_TOKEN configured, a caller not on loopback."
    )]
    Forbidden(String),
}

/// The admin API, the operator pages and the internal count, as one document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "coordinator",
        description = "The saga coordinator's admin API and operator pages. Every /admin route needs the bearer \
            token ADMIN_TOKEN when one is configured (the pages under /admin/ui also take it from the admin_token \
            cookie set by the login form), and answers loopback callers only otherwise; the read-only token \
            ADMIN_READ_TOKEN may use every GET. Every /admin request must name an allowed Host \
            (ADMIN_ALLOWED_HOSTS), no token is ever taken from a query string, and a request that changes \
            something is refused when it comes from another site (Sec-Fetch-Site, Origin, Referer). Every error answer, including an unknown route \
            (404) and a wrong method (405), has the body `{\"error\": string}`; the pages answer their errors as \
            HTML pages."
    ),
    paths(
        super::admin::list,
        super::admin::show,
        super::admin::retry,
        super::admin::abort,
        super::admin::stats,
        super::dead_letters::list,
        super::dead_letters::replay,
        super::dead_letters::replay_one,
        super::dead_letters::discard,
        super::ui::overview,
        super::login::show,
        super::login::submit,
        super::login::logout,
        super::ui::saga_page,
        super::ui::retry,
        super::ui::abort,
        super::ui_dead_letters::list,
        super::ui_dead_letters::replay_all,
        super::ui_dead_letters::replay_one,
        super::ui_dead_letters::discard,
        super::internal::unfinished,
        super::bulk::bulk_retry,
        super::bulk::bulk_abort,
        super::bulk::failures,
        super::bulk::audit_log,
        super::ui_ops::bulk_form,
        super::ui_ops::bulk_post,
        super::ui_ops::failures_page,
        super::ui_ops::audit_page,
    ),
    components(schemas(
        SagaPage,
        SagaWithHistory,
        ActionDone,
        Stats,
        DeadLetterList,
        DeadLetterTaken,
        Unfinished,
        SagaSummary,
        HistoryLine,
        DeadLetter,
        ReplayReport,
        Status,
        FailureReason,
        StuckSeconds,
        StuckFor,
        BulkRequest,
        BulkFilter,
        BulkReport,
        Matched,
        SagaResult,
        FailureList,
        super::bulk::Failure,
        FailureGroup,
        AuditPage,
        AuditEntry,
        Actor,
        Credential,
        super::ui_ops::BulkForm,
    ))
)]
pub(super) struct CoordinatorApi;

/// A page of sagas in the order asked for, and how many match on all pages.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct SagaPage {
    sagas: Vec<SagaSummary>,
    /// How many sagas match the filter, on every page.
    total: u64,
    limit: i64,
    offset: i64,
}

/// One saga, what an operator needs to judge it, and its full history, oldest first.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct SagaWithHistory {
    /// Why the checkout fails or failed, in full; `null` when it has not failed.
    reason: Option<FailureReason>,
    /// What went wrong, for a saga that needs attention.
    problem: Option<String>,
    /// Retries since the saga last made progress.
    attempts: i32,
    /// The ID of the checkout's trace (from its W3C `traceparent`), to look it up in the tracing backend.
    #[schema(pattern = "^[0-9a-f]{32}$")]
    trace_id: Option<String>,
    /// What an operator may do now: `retry` (while it runs or needs attention) and `abort` (while it runs).
    #[schema(inline)]
    allowed_actions: Vec<AllowedAction>,
    saga: SagaSummary,
    history: Vec<HistoryLine>,
}

/// An operator action on one saga.
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "snake_case")]
pub(super) enum AllowedAction {
    Retry,
    Abort,
}

/// What an operator action did.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct ActionDone {
    #[schema(format = Uuid)]
    saga_id: String,
    /// `retry` or `abort`.
    #[schema(pattern = "^(retry|abort)$")]
    action: String,
    /// The saga's state afterwards, tagged by `state`.
    state: serde_json::Value,
}

/// How many sagas are in each status.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct Stats {
    /// Every status, by name, with its count.
    sagas: BTreeMap<String, u64>,
}

/// Messages waiting in the dead-letter queue, from its head.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct DeadLetterList {
    messages: Vec<DeadLetter>,
}

/// One dead letter an operator replayed or discarded.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct DeadLetterTaken {
    /// `replay` or `discard`.
    #[schema(pattern = "^(replay|discard)$")]
    action: String,
    /// The message as it was in the queue.
    message: DeadLetter,
}

/// How many sagas are still under way.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct Unfinished {
    unfinished: u64,
}

/// The overview's `stuck` parameter: seconds as decimal digits, or empty for the default.
pub(super) struct StuckSeconds;

impl PartialSchema for StuckSeconds {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(platform::http::Amount::schema())
            .item(ObjectBuilder::new().schema_type(Type::String).max_length(Some(0)))
            .into()
    }
}

impl ToSchema for StuckSeconds {}

/// The list's `stuck_for` parameter: seconds, 0 to [`MAX_STUCK_SECS`].
pub(super) struct StuckFor;

impl PartialSchema for StuckFor {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(0))
            .maximum(Some(MAX_STUCK_SECS))
            .description(Some("Seconds, 0 to 100000000000 (about 3,000 years)."))
            .into()
    }
}

impl ToSchema for StuckFor {}

/// The failed and needs-attention sagas by status and reason, largest group first.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct FailureList {
    failures: Vec<super::bulk::Failure>,
}

/// A page of the audit log, newest first, with how many rows match in all.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct AuditPage {
    entries: Vec<AuditEntry>,
    total: i64,
    limit: i64,
    offset: i64,
}
