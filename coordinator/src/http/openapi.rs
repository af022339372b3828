//! The coordinator's OpenAPI document, derived from the handlers' annotations (`docs/openapi/coordinator.json` is
//! its committed copy), and the schemas of the answers that the handlers build as JSON.

use std::collections::BTreeMap;

use utoipa::{
    openapi::{schema::Schema, ObjectBuilder, OneOfBuilder, RefOr, Type},
    OpenApi, PartialSchema, ToSchema,
};

use crate::{
    dead_letters::{DeadLetter, ReplayReport},
    domain::Status,
    store::{HistoryLine, SagaSummary},
};

/// The admin API, the operator pages and the internal count, as one document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "coordinator",
        description = "The saga coordinator's admin API and operator pages. Every /admin route needs the bearer \
            token ADMIN_TOKEN when one is configured (the pages under /admin/ui also take it from the admin_token \
            cookie), and answers loopback callers only otherwise. Every error answer, including an unknown route \
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
        super::ui::login,
        super::ui::saga_page,
        super::ui::retry,
        super::ui::abort,
        super::ui_dead_letters::list,
        super::ui_dead_letters::replay_all,
        super::ui_dead_letters::replay_one,
        super::ui_dead_letters::discard,
        super::internal::unfinished,
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
        StuckSeconds,
    ))
)]
pub(super) struct CoordinatorApi;

/// A page of sagas, newest first.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct SagaPage {
    sagas: Vec<SagaSummary>,
    limit: i64,
    offset: i64,
}

/// One saga and its full history, oldest first.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct SagaWithHistory {
    saga: SagaSummary,
    history: Vec<HistoryLine>,
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
