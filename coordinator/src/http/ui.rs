//! The operator pages under `/admin/ui`: server-rendered HTML with plain forms, no JavaScript, so that they work
//! from any browser on a jump host. The overview shows how many sagas are in each status (each count a link to
//! them), a chart of the last hour ([`chart`]), the sagas found by the JSON API's filters (as a form; sorted and
//! paged with the total), the stuck ones, and a search by saga, order or user ID; a saga's page shows its
//! request, state, failure reason, attempts, trace ID, its state diagram ([`diagram`]) and timeline, with the
//! Retry and Abort buttons allowed now, which go through [`Operations::perform`] like the JSON API. The HTML is
//! written with `maud`, which checks it at compile time and escapes every value placed in it.
//!
//! Access is the JSON API's (see [`super::AdminAccess`]), with one addition: a browser cannot send a bearer
//! header from a form, so the login form (`super::login`) stores the token in a cookie that the pages accept
//! instead. The admin scope's middleware also refuses forms posted from another site.

use actix_web::{
    http::{header, Method},
    web, HttpResponse, ResponseError,
};
use maud::{html, Markup, PreEscaped, DOCTYPE};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use platform::{
    db::Pool,
    http::{check_id, parse_amount, resource, ApiError, ErrorBody as Error},
};
use serde::Deserialize;
use serde_json::Value;
use shared_contracts::SagaId;

mod chart;
mod diagram;

use super::{
    admin::{find_page, SagaDetails, SagaQuery},
    openapi::{PageRefusals, StuckSeconds},
};
use crate::{
    audit::Actor,
    domain::Status,
    operations::{Action, Operations},
    store::{self, HistoryLine, SagaFilter, SagaSummary, SortKey, SortOrder},
};

/// How long a saga must have been unchanged to count as stuck, unless the page is asked otherwise.
const DEFAULT_STUCK_SECS: u64 = 10;
/// The most sagas one list on a page shows.
const PAGE_ROWS: i64 = 100;
/// Where the pages live; the cookie is scoped to it.
const PAGES: &str = "/admin/ui";

/// Whether `path` is one of the operator pages, which answer errors with a page and take the token from the
/// cookie too.
pub fn is_page(path: &str) -> bool {
    path.strip_prefix(PAGES).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Registers the pages, relative to the `/admin` scope.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/ui", Method::GET, overview))
        .service(resource("/ui/sagas/{saga_id}", Method::GET, saga_page))
        .service(resource("/ui/sagas/{saga_id}/retry", Method::POST, retry))
        .service(resource("/ui/sagas/{saga_id}/abort", Method::POST, abort));
}

/// What a query-string value may hold as it is; everything else is percent-encoded.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// Percent-encodes `text` for a query-string value.
pub(super) fn encode_query(text: &str) -> String {
    utf8_percent_encode(text, QUERY_VALUE).to_string()
}

/// A flash message carried in the query string after a redirect.
#[derive(Deserialize)]
pub(super) struct Flash {
    flash: Option<String>,
    kind: Option<String>,
}

impl Flash {
    pub(super) fn html(&self) -> Markup {
        let class = if self.kind.as_deref() == Some("error") { "flash error" } else { "flash ok" };
        html! {
            @if let Some(message) = &self.flash {
                p class=(class) id="flash" { (message) }
            }
        }
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;\
vertical-align:top}th{background:#f3f3f3}code,pre{font-size:.9em}pre{background:#f7f7f7;padding:.6em}\
.flash{padding:.5em 1em;border-radius:4px}.ok{background:#e6f4e6}.error{background:#fbe3e3}\
.status-executing,.status-compensating,.status-cancelling{color:#a15c00}.status-completed{color:#1b7a1b}\
.status-failed,.status-cancelled{color:#b00}.status-needs_attention{color:#fff;background:#b00;padding:0 .3em}\
form.inline{display:inline-block;margin-right:1em}nav a{margin-right:1em}\
form#filter label{display:inline-block;margin:0 1em .4em 0}th a{color:inherit}.paging a{margin-right:1em}";

pub(super) fn page(title: &str, body: Markup) -> HttpResponse {
    let html = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                nav { a href=(PAGES) { "Overview" } (super::ui_ops::nav()) }
                (body)
            }
        }
    };
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(html.into_string())
}

/// An error as a page, with the status the JSON API would give it.
pub fn error_page(error: &ApiError) -> HttpResponse {
    let status = error.status_code();
    let body = html! {
        h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
        p class="flash error" { (error.to_string()) }
    };
    let mut response = page(&format!("Error {}", status.as_u16()), body);
    *response.status_mut() = status;
    response
}

pub(super) fn redirect(location: &str) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((header::LOCATION, location)).finish()
}

pub(super) fn status_span(status: Status) -> Markup {
    html! { span class={ "status status-" (status.as_str()) } { (status.as_str()) } }
}

pub(super) fn time(at: &chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string()
}

fn saga_rows(sagas: &[SagaSummary]) -> Markup {
    html! {
        @if sagas.is_empty() {
            p class="empty" { "None." }
        } @else {
            table {
                tr { th { "Saga" } th { "Order" } th { "User" } th { "Status" } th { "Retries" } th { "Updated" } }
                @for saga in sagas {
                    tr {
                        td { a href={ "/admin/ui/sagas/" (saga.id) } { (saga.id) } }
                        td { (saga.order_id) }
                        td { (saga.user_id) }
                        td { (status_span(saga.status)) }
                        td { (saga.retries) }
                        td { (time(&saga.updated_at)) }
                    }
                }
            }
        }
    }
}

/// Query parameters of the overview besides the list's ([`SagaQuery`]).
#[derive(Deserialize)]
pub(super) struct OverviewQuery {
    stuck: Option<String>,
    q: Option<String>,
}

#[utoipa::path(
    get,
    path = "/admin/ui",
    operation_id = "uiOverview",
    summary = "Operator page: counts per status, the last hour as a chart, sagas by filter (sorted, paged, with the \
        total), stuck sagas, search.",
    params(
        ("stuck" = Option<StuckSeconds>, Query, description = "Seconds unchanged that count as stuck (default 10)."),
        ("q" = Option<String>, Query, max_length = 128, pattern = r"^[^\x00-\x1F\x7F-\x9F]*$",
            description = "A saga, order or user ID to search for (surrounding spaces are ignored)."),
        ("status" = Option<String>, Query, description = "The list's filters, sort and page: as for GET /admin/sagas; \
            an empty value (as an empty form field sends) means no filter."),
        ("reason" = Option<String>, Query, description = "As for GET /admin/sagas."),
        ("order_id" = Option<String>, Query, description = "As for GET /admin/sagas."),
        ("user_id" = Option<String>, Query, description = "As for GET /admin/sagas."),
        ("created_after" = Option<String>, Query, description = "As for GET /admin/sagas."),
        ("created_before" = Option<String>, Query, description = "As for GET /admin/sagas."),
        ("updated_after" = Option<String>, Query, description = "As for GET /admin/sagas."),
        ("updated_before" = Option<String>, Query, description = "As for GET /admin/sagas."),
        ("stuck_for" = Option<String>, Query, description = "As for GET /admin/sagas."),
        ("sort" = Option<String>, Query, description = "As for GET /admin/sagas."),
        ("order" = Option<String>, Query, description = "As for GET /admin/sagas."),
        ("limit" = Option<String>, Query, description = "As for GET /admin/sagas."),
        ("offset" = Option<String>, Query, description = "As for GET /admin/sagas."),
        ("flash" = Option<String>, Query, description = "A message to show."),
        ("kind" = Option<String>, Query, description = "`ok` or `error`."),
    ),
    responses(
        (status = 200, description = "The page.", content_type = "text/html", body = String),
        (status = 400, description = "A malformed parameter, shown as a page; or a query string that cannot be read \
            at all (a parameter given twice), answered as JSON.", content(
            (String = "text/html"), (Error = "application/json"))),
        PageRefusals,
        (status = 503, description = "The database is unavailable, shown as a page.", content_type = "text/html", body = String),
    )
)]
pub(super) async fn overview(
    pool: web::Data<Pool>,
    query: web::Query<OverviewQuery>,
    list: web::Query<SagaQuery>,
    flash: web::Query<Flash>,
) -> HttpResponse {
    match render_overview(&pool, &query, without_empty(list.into_inner()), &flash).await {
        Ok(response) => response,
        Err(e) => error_page(&e),
    }
}

/// The list's parameters as a form sends them, with the fields left empty taken as not given.
fn without_empty(query: SagaQuery) -> SagaQuery {
    let keep = |value: Option<String>| value.filter(|v| !v.trim().is_empty());
    SagaQuery {
        status: keep(query.status),
        reason: keep(query.reason),
        order_id: keep(query.order_id),
        user_id: keep(query.user_id),
        created_after: keep(query.created_after),
        created_before: keep(query.created_before),
        updated_after: keep(query.updated_after),
        updated_before: keep(query.updated_before),
        stuck_for: keep(query.stuck_for),
        sort: keep(query.sort),
        order: keep(query.order),
        limit: keep(query.limit),
        offset: keep(query.offset),
    }
}

/// The minutes the overview's chart covers.
const CHART_MINUTES: i32 = 60;

async fn render_overview(
    pool: &Pool,
    query: &OverviewQuery,
    list: SagaQuery,
    flash: &Flash,
) -> Result<HttpResponse, ApiError> {
    let stuck_secs = match query.stuck.as_deref().filter(|s| !s.is_empty()) {
        Some(raw) => parse_amount("stuck", raw)?,
        None => DEFAULT_STUCK_SECS,
    };
    let search = query.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    let search = search.map(|q| check_id("search", q)).transpose()?;
    let filter = list.filter()?;
    let (page_of_sagas, total) = find_page(pool, &filter).await?;

    let mut conn = pool.get().await?;
    let counts = store::counts(&mut conn).await?;
    let activity = store::activity_per_minute(&mut conn, CHART_MINUTES).await?;
    let stuck_filter =
        SagaFilter { stuck_for_secs: Some(stuck_secs as i64), limit: PAGE_ROWS, ..SagaFilter::default() };
    let stuck = store::list(&mut conn, &stuck_filter).await?;
    let found = match search {
        Some(term) => Some(search_sagas(&mut conn, term).await?),
        None => None,
    };

    let body = html! {
        h1 { "Checkout sagas" }
        (flash.html())
        h2 { "By status" }
        table {
            tr { th { "Status" } th { "Sagas" } }
            @for status in Status::ALL {
                tr {
                    td { (status_span(status)) }
                    td class="count" id={ "count-" (status.as_str()) } {
                        a href={ (PAGES) "?status=" (status.as_str()) "#sagas" } {
                            (counts.get(&status).copied().unwrap_or(0))
                        }
                    }
                }
            }
        }
        h2 { "Last hour, per minute" }
        (chart::chart(&activity))
        h2 id="sagas" { "Sagas" }
        (filter_form(&list))
        (saga_list(&list, &filter, &page_of_sagas, total))
        h2 { "Stuck: not finished and unchanged for " (stuck_secs) " s or more" }
        form method="get" action=(PAGES) {
            label { "Unchanged for at least " input type="number" name="stuck" min="0" value=(stuck_secs); " s" }
            " "
            button type="submit" id="show-stuck" { "Show" }
        }
        div id="stuck" { (saga_rows(&stuck)) }
        h2 { "Search" }
        form method="get" action=(PAGES) {
            input type="hidden" name="stuck" value=(stuck_secs);
            label { "Saga, order or user ID " input type="search" name="q" size="40" value=(search.unwrap_or("")); }
            " "
            button type="submit" id="search" { "Search" }
        }
        @if let Some(found) = &found {
            div id="results" { (saga_rows(found)) }
        }
    };
    Ok(page("Checkout sagas", body))
}

/// The list's filters as a form that sends them back to the overview.
fn filter_form(list: &SagaQuery) -> Markup {
    let value = |field: &Option<String>| field.clone().unwrap_or_default();
    let text = |name: &str, label: &str, field: &Option<String>, hint: &str| {
        html! { label { (label) " " input type="text" name=(name) value=(value(field)) placeholder=(hint); } }
    };
    html! {
        form id="filter" method="get" action={ (PAGES) "#sagas" } {
            label { "Status "
                select name="status" {
                    option value="" { "any" }
                    @for status in Status::ALL {
                        option value=(status.as_str()) selected[list.status.as_deref() == Some(status.as_str())] {
                            (status.as_str())
                        }
                    }
                }
            }
            (text("reason", "Reason", &list.reason, "out_of_stock"))
            (text("order_id", "Order", &list.order_id, ""))
            (text("user_id", "User", &list.user_id, ""))
            (text("stuck_for", "Stuck for (s)", &list.stuck_for, ""))
            br;
            (text("created_after", "Created from", &list.created_after, "2026-12-02T04:00:00Z"))
            (text("created_before", "to", &list.created_before, "RFC 3339"))
            (text("updated_after", "Updated from", &list.updated_after, "RFC 3339"))
            (text("updated_before", "to", &list.updated_before, "RFC 3339"))
            br;
            label { "Sort by "
                select name="sort" {
                    @for key in [SortKey::CreatedAt, SortKey::UpdatedAt] {
                        option value=(key.as_str()) selected[list.sort.as_deref() == Some(key.as_str())] { (key.as_str()) }
                    }
                }
            }
            label { "Order "
                select name="order" {
                    option value="desc" selected[list.order.as_deref() != Some("asc")] { "newest first" }
                    option value="asc" selected[list.order.as_deref() == Some("asc")] { "oldest first" }
                }
            }
            (text("limit", "Per page", &list.limit, "100"))
            button type="submit" id="find" { "Find" }
            " "
            a href={ (PAGES) "#sagas" } { "Clear" }
        }
    }
}

/// The overview's address for the list `query`.
fn list_link(query: &SagaQuery) -> String {
    let fields = [
        ("status", &query.status),
        ("reason", &query.reason),
        ("order_id", &query.order_id),
        ("user_id", &query.user_id),
        ("created_after", &query.created_after),
        ("created_before", &query.created_before),
        ("updated_after", &query.updated_after),
        ("updated_before", &query.updated_before),
        ("stuck_for", &query.stuck_for),
        ("sort", &query.sort),
        ("order", &query.order),
        ("limit", &query.limit),
        ("offset", &query.offset),
    ];
    let pairs: Vec<String> = fields
        .into_iter()
        .filter_map(|(name, value)| value.as_deref().map(|v| format!("{name}={}", encode_query(v))))
        .collect();
    format!("{PAGES}?{}#sagas", pairs.join("&"))
}

/// `1234567` as `1,234,567`.
fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    if n < 0 {
        out.insert(0, '-');
    }
    out
}

/// One page of the list: where it is in the total, previous and next links, and the rows with sortable headers.
fn saga_list(query: &SagaQuery, filter: &SagaFilter, sagas: &[SagaSummary], total: i64) -> Markup {
    let shown_from = filter.offset.saturating_add(1);
    let shown_to = filter.offset.saturating_add(sagas.len() as i64);
    let at_offset = |offset: i64| SagaQuery { offset: Some(offset.to_string()), ..query.clone() };
    let sorted_by = |key: SortKey| {
        let order = match (filter.sort == key, filter.order) {
            (true, SortOrder::Desc) => SortOrder::Asc,
            (true, SortOrder::Asc) | (false, _) => SortOrder::Desc,
        };
        list_link(&SagaQuery {
            sort: Some(key.as_str().to_owned()),
            order: Some(order.as_str().to_owned()),
            offset: None,
            ..query.clone()
        })
    };
    let arrow = |key: SortKey| match (filter.sort == key, filter.order) {
        (true, SortOrder::Desc) => " ↓",
        (true, SortOrder::Asc) => " ↑",
        (false, _) => "",
    };
    html! {
        p id="range" {
            @if sagas.is_empty() {
                "None of " (thousands(total))
            } @else {
                (thousands(shown_from)) "–" (thousands(shown_to)) " of " (thousands(total))
            }
        }
        p class="paging" {
            @if filter.offset > 0 {
                a id="previous" href=(list_link(&at_offset((filter.offset - filter.limit).max(0)))) { "← previous" }
            }
            @if shown_to < total {
                a id="next" href=(list_link(&at_offset(shown_to))) { "next →" }
            }
        }
        @if !sagas.is_empty() {
            table id="list" {
                tr {
                    th { "Saga" } th { "Order" } th { "User" } th { "Status" } th { "Reason" } th { "Retries" }
                    th { a id="sort-created_at" href=(sorted_by(SortKey::CreatedAt)) { "Created" (arrow(SortKey::CreatedAt)) } }
                    th { a id="sort-updated_at" href=(sorted_by(SortKey::UpdatedAt)) { "Updated" (arrow(SortKey::UpdatedAt)) } }
                }
                @for saga in sagas {
                    tr {
                        td { a href={ "/admin/ui/sagas/" (saga.id) } { (saga.id) } }
                        td { (saga.order_id) }
                        td { (saga.user_id) }
                        td { (status_span(saga.status)) }
                        td { (saga.reason.as_deref().unwrap_or("")) }
                        td { (saga.retries) }
                        td { (time(&saga.created_at)) }
                        td { (time(&saga.updated_at)) }
                    }
                }
            }
        }
    }
}

/// Sagas whose ID, order ID or user ID is `term`, newest first, without repeats.
async fn search_sagas(conn: &mut diesel_async::AsyncPgConnection, term: &str) -> Result<Vec<SagaSummary>, ApiError> {
    let mut found = Vec::new();
    if let Ok(id) = term.parse::<SagaId>() {
        found.extend(store::find(conn, id).await?);
    }
    let by_order = SagaFilter { order_id: Some(term.to_owned()), limit: PAGE_ROWS, ..SagaFilter::default() };
    let by_user = SagaFilter { user_id: Some(term.to_owned()), limit: PAGE_ROWS, ..SagaFilter::default() };
    for saga in store::list(conn, &by_order).await?.into_iter().chain(store::list(conn, &by_user).await?) {
        if !found.iter().any(|f: &SagaSummary| f.id == saga.id) {
            found.push(saga);
        }
    }
    found.sort_by_key(|saga| std::cmp::Reverse(saga.created_at));
    Ok(found)
}

fn parse_saga_id(raw: &str) -> Result<SagaId, ApiError> {
    raw.parse().map_err(|_| ApiError::BadRequest(format!("saga_id {raw:?} is not a UUID")))
}

#[utoipa::path(
    get,
    path = "/admin/ui/sagas/{saga_id}",
    operation_id = "uiSaga",
    summary = "Operator page of one saga: state, reason, attempts, trace ID, request, state diagram, timeline, and \
        the Retry and Abort buttons allowed now.",
    params(("saga_id" = uuid::Uuid, Path, description = "The saga (a UUID)."),
        ("flash" = Option<String>, Query, description = "A message to show."),
        ("kind" = Option<String>, Query, description = "`ok` or `error`."),
    ),
    responses(
        (status = 200, description = "The page.", content_type = "text/html", body = String),
        (status = 400, description = "A malformed parameter, shown as a page; or a query string that cannot be read \
            at all (a parameter given twice), answered as JSON.", content(
            (String = "text/html"), (Error = "application/json"))),
        PageRefusals,
        (status = 404, description = "No such saga.", content_type = "text/html", body = String),
        (status = 503, description = "The database is unavailable, shown as a page.", content_type = "text/html", body = String),
    )
)]
pub(super) async fn saga_page(
    pool: web::Data<Pool>,
    path: web::Path<String>,
    flash: web::Query<Flash>,
) -> HttpResponse {
    match render_saga(&pool, &path, &flash).await {
        Ok(response) => response,
        Err(e) => error_page(&e),
    }
}

async fn render_saga(pool: &Pool, raw_id: &str, flash: &Flash) -> Result<HttpResponse, ApiError> {
    let id = parse_saga_id(raw_id)?;
    let mut conn = pool.get().await?;
    let saga =
        store::find(&mut conn, id).await?.ok_or_else(|| ApiError::NotFound(format!("saga {id} does not exist")))?;
    let history = store::history(&mut conn, id).await?;
    let details = SagaDetails::of(&saga)?;
    let path = history
        .iter()
        .filter_map(|line| line.from_status.filter(|&from| from != line.to_status).map(|from| (from, line.to_status)))
        .collect();

    let id = id.to_string();
    let next_retry = saga.next_retry_at.as_ref().map_or_else(|| "none".to_owned(), time);
    let body = html! {
        h1 { "Saga " code { (id) } }
        (flash.html())
        table id="summary" {
            tr { th { "Status" } td id="status" { (status_span(saga.status)) } }
            tr { th { "Order" } td { (saga.order_id) } }
            tr { th { "User" } td { (saga.user_id) } }
            tr { th { "Reason" } td id="reason" {
                @match &details.reason {
                    Some(reason) => (reason.to_string()),
                    None => "none",
                }
            } }
            @if let Some(problem) = &details.problem {
                tr { th { "Problem" } td id="problem" { (problem) } }
            }
            tr { th { "Attempts" } td id="attempts" { (saga.retries) " retries since the last progress" } }
            tr { th { "Trace ID" } td id="trace-id" { code { (details.trace_id.as_deref().unwrap_or("none")) } } }
            tr { th { "Version" } td { (saga.version) } }
            tr { th { "Next retry" } td { (next_retry) } }
            tr { th { "Created" } td { (time(&saga.created_at)) } }
            tr { th { "Updated" } td { (time(&saga.updated_at)) } }
        }
        h2 { "Actions allowed now" }
        @if details.allowed_actions.is_empty() {
            p id="no-actions" { "None: the saga has ended." }
        }
        @if details.allowed_actions.contains(&Action::Retry.name()) {
            form class="inline retry" method="post" action={ "/admin/ui/sagas/" (id) "/retry" } {
                button type="submit" id="retry" { "Retry" }
                @if saga.status == Status::NeedsAttention {
                    " resume the compensation"
                } @else {
                    " re-send the unanswered commands now"
                }
            }
        }
        @if details.allowed_actions.contains(&Action::Abort.name()) {
            form class="inline abort" method="post" action={ "/admin/ui/sagas/" (id) "/abort" } {
                button type="submit" id="abort" { "Abort" }
                " undo whatever was done, then fail"
            }
        }
        h2 { "State diagram" }
        p { "The path this saga took is drawn bold; its current state is filled." }
        (diagram::diagram(&path, saga.status))
        (request_html(&saga.request))
        h2 { "State" }
        pre id="state" { (pretty(&saga.state)) }
        (timeline_html(&history))
    };
    Ok(page(&format!("Saga {id}"), body))
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

fn request_html(request: &Value) -> Markup {
    html! {
        h2 { "Request" }
        table id="items" {
            tr { th { "Item" } th { "Quantity" } }
            @for item in request["items"].as_array().into_iter().flatten() {
                tr { td { (plain(&item["item_id"])) } td { (plain(&item["quantity"])) } }
            }
        }
        p { "Total: " strong { (plain(&request["total"])) } }
    }
}

/// A JSON value as text: strings without their quotes.
fn plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `{"<tag>": "name", ...rest}` as `name` followed by the rest in compact JSON, if there is any.
fn tagged(value: &Value, tag: &str) -> String {
    let name = value[tag].as_str().unwrap_or("?").to_owned();
    match value.as_object() {
        Some(fields) if fields.len() > 1 => {
            let rest: serde_json::Map<String, Value> =
                fields.iter().filter(|(k, _)| k.as_str() != tag).map(|(k, v)| (k.clone(), v.clone())).collect();
            format!("{name} {}", Value::Object(rest))
        }
        _ => name,
    }
}

/// Who made a history line: the operator and credential of an operator action; the saga's own messages and
/// retry timer otherwise.
fn acted_by(actor: Option<&Value>) -> String {
    match actor {
        Some(actor) => format!("operator {} ({})", plain(&actor["name"]), plain(&actor["credential"])),
        None => "system".to_owned(),
    }
}

fn timeline_html(history: &[HistoryLine]) -> Markup {
    html! {
        h2 { "Timeline" }
        table id="timeline" {
            tr { th { "Time" } th { "Event" } th { "By" } th { "From → to" } th { "Commands" } }
            @for line in history {
                @let commands: Vec<String> =
                    line.commands.as_array().into_iter().flatten().map(|c| tagged(c, "command")).collect();
                tr {
                    td { (time(&line.at)) }
                    td { (tagged(&line.event, "event")) }
                    td class="by" { (acted_by(line.actor.as_ref())) }
                    td {
                        @match line.from_status {
                            Some(from) => (status_span(from)),
                            None => "·",
                        }
                        " → "
                        (status_span(line.to_status))
                    }
                    td { (commands.join(", ")) }
                }
            }
        }
    }
}

#[utoipa::path(
    post,
    path = "/admin/ui/sagas/{saga_id}/retry",
    operation_id = "uiRetry",
    summary = "The Retry button.",
    params(("saga_id" = uuid::Uuid, Path, description = "The saga (a UUID).")),
    responses(
        (status = 303, description = "Back to the saga's page, with the outcome (also a refusal) as a flash message in \
            the query string."),
        (status = 400, description = "Not a UUID.", content_type = "text/html", body = String),
        PageRefusals,
        (status = 404, description = "No such saga.", content_type = "text/html", body = String),
        (status = 503, description = "The database is unavailable, shown as a page.", content_type = "text/html", body = String),
    )
)]
pub(super) async fn retry(
    operations: web::Data<Operations>,
    path: web::Path<String>,
    actor: web::ReqData<Actor>,
) -> HttpResponse {
    act(&operations, &path, &actor, Action::Retry).await
}

#[utoipa::path(
    post,
    path = "/admin/ui/sagas/{saga_id}/abort",
    operation_id = "uiAbort",
    summary = "The Abort button.",
    params(("saga_id" = uuid::Uuid, Path, description = "The saga (a UUID).")),
    responses(
        (status = 303, description = "Back to the saga's page, with the outcome (also a refusal) as a flash message in \
            the query string."),
        (status = 400, description = "Not a UUID.", content_type = "text/html", body = String),
        PageRefusals,
        (status = 404, description = "No such saga.", content_type = "text/html", body = String),
        (status = 503, description = "The database is unavailable, shown as a page.", content_type = "text/html", body = String),
    )
)]
pub(super) async fn abort(
    operations: web::Data<Operations>,
    path: web::Path<String>,
    actor: web::ReqData<Actor>,
) -> HttpResponse {
    act(&operations, &path, &actor, Action::Abort).await
}

/// Performs `action` and sends the browser back to the saga's page with what happened; a saga that is
/// already over is a message there, not an error page.
async fn act(operations: &Operations, raw_id: &str, actor: &Actor, action: Action) -> HttpResponse {
    let id = match parse_saga_id(raw_id) {
        Ok(id) => id,
        Err(e) => return error_page(&e),
    };
    let verb = match action {
        Action::Retry => "Retry",
        Action::Abort => "Abort",
    };
    let (message, kind) = match operations.perform(id, action, actor).await {
        Ok(state) => (format!("{verb} done: the saga is now {}", state.status().as_str()), "ok"),
        Err(ApiError::Conflict(message)) => (format!("{verb} refused: {message}"), "error"),
        Err(e) => return error_page(&e),
    };
    redirect(&format!("/admin/ui/sagas/{id}?flash={}&kind={kind}", encode_query(&message)))
}

#[cfg(test)]
mod tests {
    use actix_web::http::StatusCode;

    use super::*;

    #[test]
    fn what_a_page_shows_is_escaped() {
        let flash = Flash { flash: Some("<a href=\"x\">Tom & Jerry</a>".into()), kind: Some("error".into()) };
        assert_eq!(
            flash.html().into_string(),
            "<p class=\"flash error\" id=\"flash\">&lt;a href=&quot;x&quot;&gt;Tom &amp; Jerry&lt;/a&gt;</p>"
        );
    }

    #[test]
    fn only_paths_under_the_pages_are_pages() {
        assert!(is_page("/admin/ui") && is_page("/admin/ui/sagas/x") && is_page("/admin/ui/login"));
        assert!(!is_page("/admin/uix") && !is_page("/admin/sagas") && !is_page("/admin"));
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode_query("saga is already failed & done"), "saga%20is%20already%20failed%20%26%20done");
        assert_eq!(encode_query("a-b_c.d~é"), "a-b_c.d~%C3%A9");
    }

    #[test]
    fn tagged_values_show_their_name_then_the_rest() {
        assert_eq!(tagged(&serde_json::json!({"event": "start"}), "event"), "start");
        assert_eq!(
            tagged(&serde_json::json!({"event": "stock", "reply": {"reply": "reserved"}}), "event"),
            "stock {\"reply\":{\"reply\":\"reserved\"}}"
        );
    }

    #[test]
    fn totals_are_grouped_by_thousands() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(2345), "2,345");
        assert_eq!(thousands(1234567), "1,234,567");
    }

    #[test]
    fn list_links_keep_the_filters_and_encode_them() {
        let query = SagaQuery {
            status: Some("failed".into()),
            created_after: Some("2026-12-02T04:00:00+01:00".into()),
            offset: Some("100".into()),
            ..SagaQuery::default()
        };
        assert_eq!(
            list_link(&query),
            "/admin/ui?status=failed&created_after=2026-12-02T04%3A00%3A00%2B01%3A00&offset=100#sagas"
        );
    }

    #[test]
    fn the_status_code_of_an_error_page_is_the_api_one() {
        assert_eq!(error_page(&ApiError::Conflict("x".into())).status(), StatusCode::CONFLICT);
        assert_eq!(error_page(&ApiError::Unauthorized("x".into())).status(), StatusCode::UNAUTHORIZED);
    }
}
