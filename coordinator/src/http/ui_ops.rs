//! The operator pages for acting on many sagas and looking back: bulk retry or abort (a filter form, then a dry
//! run's preview, then a confirmation, then what came of each saga), the failures grouped by reason with links
//! to their sagas, and the audit log. They share the look and the access rules of the other pages (the admin
//! scope's middleware also refuses forms posted from another site; see [`super::ui`]) and go through the same code as the JSON API ([`crate::bulk`],
//! [`crate::audit`]).

use actix_web::{http::Method, web, HttpResponse};
use maud::{html, Markup};
use platform::{
    db::Pool,
    http::{parse_amount, resource, ApiError},
};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{
    bulk::{group_query, AuditQuery},
    openapi::PageRefusals,
    ui::{error_page, page, status_span, time},
};
use crate::{
    audit::{self, Actor},
    bulk::{self, BulkFilter, BulkReport, BulkRequest},
    domain::Status,
    operations::{Action, Operations},
    store,
};

/// Registers the pages, relative to the `/admin` scope.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/ui/bulk", Method::GET, bulk_form))
        .service(resource("/ui/bulk/run", Method::POST, bulk_post).app_data(unreadable_form()))
        .service(resource("/ui/failures", Method::GET, failures_page))
        .service(resource("/ui/audit", Method::GET, audit_page));
}

/// A form body that cannot be read at all is answered as the page answers its other errors.
fn unreadable_form() -> web::FormConfig {
    web::FormConfig::default().error_handler(|err, _| {
        let page = error_page(&ApiError::BadRequest(format!("malformed form: {err}")));
        actix_web::error::InternalError::from_response(err, page).into()
    })
}

/// The links to these pages and the dead-letter page, for the pages' navigation.
pub(super) fn nav() -> Markup {
    html! {
        a href="/admin/ui/failures" { "Failures" }
        a href="/admin/ui/bulk" { "Bulk actions" }
        a href="/admin/ui/dead-letters" { "Dead letters" }
        a href="/admin/ui/audit" { "Audit log" }
    }
}

/// The bulk form's fields, all text as a form sends them; empty means not given.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub(super) struct BulkForm {
    /// `retry` or `abort`.
    action: Option<String>,
    status: Option<String>,
    reason: Option<String>,
    order_id: Option<String>,
    user_id: Option<String>,
    /// Seconds.
    stuck_for: Option<String>,
    /// RFC 3339.
    created_after: Option<String>,
    /// RFC 3339.
    created_before: Option<String>,
    /// 1 to 1000.
    limit: Option<String>,
    /// `yes` to act; anything else, or nothing, shows the dry run.
    confirm: Option<String>,
}

impl BulkForm {
    fn given(value: &Option<String>) -> Option<&str> {
        value.as_deref().map(str::trim).filter(|v| !v.is_empty())
    }

    fn action(&self) -> Result<Action, ApiError> {
        match Self::given(&self.action) {
            Some("retry") => Ok(Action::Retry),
            Some("abort") => Ok(Action::Abort),
            _ => Err(ApiError::BadRequest("choose retry or abort".into())),
        }
    }

    /// The request the form describes, checked as the JSON API checks its body.
    fn request(&self) -> Result<BulkRequest, ApiError> {
        let mut filter = Map::new();
        let texts = [
            ("status", &self.status),
            ("reason", &self.reason),
            ("order_id", &self.order_id),
            ("user_id", &self.user_id),
            ("created_after", &self.created_after),
            ("created_before", &self.created_before),
        ];
        for (field, value) in texts {
            if let Some(value) = Self::given(value) {
                filter.insert(field.into(), Value::from(value));
            }
        }
        if let Some(stuck_for) = Self::given(&self.stuck_for) {
            filter.insert("stuck_for".into(), Value::from(parse_amount("stuck_for", stuck_for)?));
        }
        let limit = Self::given(&self.limit).map(|l| parse_amount("limit", l)).transpose()?;
        Ok(BulkRequest {
            filter: BulkFilter::from_json(Value::Object(filter))?,
            dry_run: Self::given(&self.confirm) != Some("yes"),
            limit,
        })
    }
}

fn text_input(label: &str, name: &str, value: &Option<String>, hint: &str) -> Markup {
    html! {
        label { (label) " " input type="text" name=(name) id={ "f-" (name) } value=(value.as_deref().unwrap_or("")) placeholder=(hint); }
        br;
    }
}

/// The filter form, filled in with `form`.
fn filter_form(form: &BulkForm) -> Markup {
    let chosen = |action: &str| form.action.as_deref() == Some(action);
    html! {
        form method="post" action="/admin/ui/bulk/run" id="bulk-form" {
            fieldset {
                legend { "Action" }
                label { input type="radio" name="action" value="retry" id="action-retry" checked[chosen("retry")]; " Retry" }
                " "
                label { input type="radio" name="action" value="abort" id="action-abort" checked[chosen("abort")]; " Abort" }
            }
            fieldset {
                legend { "Sagas (at least one criterion)" }
                label { "Status " select name="status" id="f-status" {
                    option value="" { "any" }
                    @for status in Status::ALL {
                        option value=(status.as_str()) selected[form.status.as_deref() == Some(status.as_str())] { (status.as_str()) }
                    }
                } }
                br;
                (text_input("Failure reason", "reason", &form.reason, "out_of_stock"))
                (text_input("Order", "order_id", &form.order_id, ""))
                (text_input("User", "user_id", &form.user_id, ""))
                (text_input("Unfinished and unchanged for at least (s)", "stuck_for", &form.stuck_for, "600"))
                (text_input("Created at or after", "created_after", &form.created_after, "2026-12-01T00:00:00Z"))
                (text_input("Created before", "created_before", &form.created_before, "2026-12-02T00:00:00Z"))
                (text_input("At most (sagas)", "limit", &form.limit, "100"))
            }
            button type="submit" id="preview" { "Preview (dry run)" }
        }
    }
}

#[utoipa::path(
    get,
    path = "/admin/ui/bulk",
    operation_id = "uiBulk",
    summary = "Operator page: the bulk action form.",
    responses(
        (status = 200, description = "The page.", content_type = "text/html", body = String),
        PageRefusals,
    )
)]
pub(super) async fn bulk_form() -> HttpResponse {
    page("Bulk actions", html! { h1 { "Bulk actions" } (filter_form(&BulkForm::default())) })
}

/// The hidden copy of the form's fields that the confirmation posts again.
fn hidden_fields(form: &BulkForm) -> Markup {
    let fields = [
        ("action", &form.action),
        ("status", &form.status),
        ("reason", &form.reason),
        ("order_id", &form.order_id),
        ("user_id", &form.user_id),
        ("stuck_for", &form.stuck_for),
        ("created_after", &form.created_after),
        ("created_before", &form.created_before),
        ("limit", &form.limit),
    ];
    html! {
        @for (name, value) in fields {
            @if let Some(value) = value {
                input type="hidden" name=(name) value=(value);
            }
        }
    }
}

fn saga_link(id: &str) -> Markup {
    html! { a href={ "/admin/ui/sagas/" (id) } { (id) } }
}

fn preview(form: &BulkForm, report: &BulkReport, action: Action) -> Markup {
    html! {
        h1 { "Bulk " (action.name()) ": dry run" }
        p id="matched" { (report.matched) " sagas match; " (report.sagas.len()) " would be touched (oldest first)." }
        table id="preview-sagas" {
            tr { th { "Saga" } th { "Status now" } }
            @for saga in &report.sagas {
                tr { td { (saga_link(&saga.saga_id)) } td { (status_span(saga.status)) } }
            }
        }
        @if !report.sagas.is_empty() {
            form method="post" action="/admin/ui/bulk/run" {
                (hidden_fields(form))
                input type="hidden" name="confirm" value="yes";
                button type="submit" id="confirm" { "Confirm: " (action.name()) " these " (report.sagas.len()) " sagas" }
            }
        }
        h2 { "Change the filter" }
        (filter_form(form))
    }
}

fn results(report: &BulkReport, action: Action) -> Markup {
    let done = report.results.iter().filter(|r| r.refused.is_none()).count();
    html! {
        h1 { "Bulk " (action.name()) ": done" }
        p class="flash ok" id="flash" { (done) " done, " (report.results.len() - done) " refused." }
        table id="results" {
            tr { th { "Saga" } th { "Outcome" } }
            @for result in &report.results {
                tr {
                    td { (saga_link(&result.saga_id)) }
                    td {
                        @if let Some(status) = result.status { "now " (status_span(status)) }
                        @if let Some(refused) = &result.refused { span class="error" { "refused: " (refused) } }
                    }
                }
            }
        }
        p { a href="/admin/ui/audit" { "See the audit log" } }
    }
}

#[utoipa::path(
    post,
    path = "/admin/ui/bulk/run",
    operation_id = "uiBulkRun",
    summary = "The bulk form: without `confirm=yes` a dry run's preview with a confirmation button; with it, the \
        action and what came of each saga.",
    request_body(content = BulkForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The preview or the results.", content_type = "text/html", body = String),
        (status = 400, description = "No action chosen, an empty filter or a value out of range: the form again, with \
            what is wrong.", content_type = "text/html", body = String),
        PageRefusals,
        (status = 503, description = "The database is unavailable, shown as a page.", content_type = "text/html", body = String),
    )
)]
pub(super) async fn bulk_post(
    pool: web::Data<Pool>,
    operations: web::Data<Operations>,
    actor: web::ReqData<Actor>,
    form: web::Form<BulkForm>,
) -> HttpResponse {
    let outcome = async {
        let action = form.action()?;
        let request = form.request()?;
        let report = bulk::run(&pool, &operations, &actor, action, &request).await?;
        Ok::<_, ApiError>((action, report))
    };
    match outcome.await {
        Ok((action, report)) if report.dry_run => page("Bulk action: preview", preview(&form, &report, action)),
        Ok((action, report)) => page("Bulk action: results", results(&report, action)),
        Err(e @ ApiError::BadRequest(_)) => {
            let body = html! {
                h1 { "Bulk actions" }
                p class="flash error" id="flash" { (e.to_string()) }
                (filter_form(&form))
            };
            let mut response = page("Bulk actions", body);
            *response.status_mut() = actix_web::http::StatusCode::BAD_REQUEST;
            response
        }
        Err(e) => error_page(&e),
    }
}

#[utoipa::path(
    get,
    path = "/admin/ui/failures",
    operation_id = "uiFailures",
    summary = "Operator page: failed and needs-attention sagas grouped by reason, each group linking to its sagas.",
    responses(
        (status = 200, description = "The page.", content_type = "text/html", body = String),
        PageRefusals,
        (status = 503, description = "The database is unavailable, shown as a page.", content_type = "text/html", body = String),
    )
)]
pub(super) async fn failures_page(pool: web::Data<Pool>) -> HttpResponse {
    let groups = async {
        let mut conn = pool.get().await?;
        Ok::<_, ApiError>(store::failure_groups(&mut conn).await?)
    };
    let groups = match groups.await {
        Ok(groups) => groups,
        Err(e) => return error_page(&e),
    };
    let body = html! {
        h1 { "Failures by reason" }
        @if groups.is_empty() {
            p class="empty" { "No failed sagas, none needing attention." }
        } @else {
            table id="failures" {
                tr { th { "Status" } th { "Reason" } th { "Sagas" } th { "Oldest" } th { "Newest" } th {} }
                @for group in &groups {
                    tr {
                        td { (status_span(group.status)) }
                        td { (group.reason.as_deref().unwrap_or("—")) }
                        td class="count" { (group.count) }
                        td { (time(&group.oldest)) }
                        td { (time(&group.newest)) }
                        td { a href={ "/admin/ui?" (group_query(group)) } { "show sagas" } }
                    }
                }
            }
        }
    };
    page("Failures", body)
}

#[utoipa::path(
    get,
    path = "/admin/ui/audit",
    operation_id = "uiAudit",
    summary = "Operator page: the audit log, newest first, filtered.",
    params(
        ("saga_id" = Option<uuid::Uuid>, Query, description = "Only actions on this saga."),
        ("actor" = Option<String>, Query, min_length = 1, max_length = 128, description = "Only this actor's."),
        ("action" = Option<String>, Query, min_length = 1, max_length = 128, description = "Only this action."),
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 1000, description = "Page size (default 100)."),
        ("offset" = Option<platform::http::Amount>, Query, description = "Rows to skip (default 0)."),
    ),
    responses(
        (status = 200, description = "The page.", content_type = "text/html", body = String),
        (status = 400, description = "A malformed parameter, shown as a page.", content_type = "text/html", body = String),
        PageRefusals,
        (status = 503, description = "The database is unavailable, shown as a page.", content_type = "text/html", body = String),
    )
)]
pub(super) async fn audit_page(pool: web::Data<Pool>, query: web::Query<AuditQuery>) -> HttpResponse {
    let found = async {
        let filter = query.filter()?;
        let mut conn = pool.get().await?;
        let (entries, total) = audit::list(&mut conn, &filter).await?;
        Ok::<_, ApiError>((filter, entries, total))
    };
    let (filter, entries, total) = match found.await {
        Ok(found) => found,
        Err(e) => return error_page(&e),
    };
    let compact = |value: &Value| match value {
        Value::Object(map) if map.is_empty() => String::new(),
        other => other.to_string(),
    };
    // What came of it in a few words: the status afterwards, the refusal, or a bulk action's counts.
    let outcome = |result: &Value| match (&result["state"]["state"], &result["refused"], &result["done"]) {
        (Value::String(status), _, _) => format!("now {status}"),
        (_, Value::String(refusal), _) => format!("refused: {refusal}"),
        (_, refused, Value::Number(done)) => format!("{done} done, {refused} refused"),
        _ => compact(result),
    };
    let body = html! {
        h1 { "Audit log" }
        form method="get" action="/admin/ui/audit" {
            label { "Saga " input type="text" name="saga_id" size="36" value=(filter.saga_id.map(|id| id.to_string()).unwrap_or_default()); }
            " "
            label { "Actor " input type="text" name="actor" value=(filter.actor.as_deref().unwrap_or("")); }
            " "
            label { "Action " input type="text" name="action" value=(filter.action.as_deref().unwrap_or("")); }
            " "
            button type="submit" id="filter" { "Filter" }
        }
        p id="total" { (total) " actions; showing " (entries.len()) " from " (filter.offset + 1) "." }
        table id="audit" {
            tr { th { "When" } th { "Who" } th { "Credential" } th { "Action" } th { "Sagas" } th { "Details" } th { "Result" } }
            @for entry in &entries {
                tr {
                    td { (time(&entry.at)) }
                    td { (entry.actor) }
                    td { (entry.credential) }
                    td { (entry.action) }
                    td {
                        @for id in &entry.saga_ids {
                            a href={ "/admin/ui/sagas/" (id) } title=(id) { code { (id.get(..8).unwrap_or(id)) } } " "
                        }
                    }
                    td { code { (compact(&entry.details)) } }
                    td { (outcome(&entry.result)) }
                }
            }
        }
    };
    page("Audit log", body)
}
