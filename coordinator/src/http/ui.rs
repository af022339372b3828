//! The operator pages under `/admin/ui`: server-rendered HTML with plain forms, no JavaScript, so that they work
//! from any browser on a jump host. The overview shows how many sagas are in each status, the stuck ones, and a
//! search by saga, order or user ID; a saga's page shows its request, state and timeline, with Retry and Abort
//! buttons that go through [`Operations::perform`] like the JSON API. The HTML is written with `maud`, which
//! checks it at compile time and escapes every value placed in it.
//!
//! Access is the JSON API's (see [`super::AdminAccess`]), with one addition: a browser cannot send a bearer
//! header from a form, so `GET /admin/ui/login?token=...` stores the token in an `HttpOnly`, `SameSite=Strict`
//! cookie that the pages accept instead. Forms that change something are also refused when the browser says they
//! come from another origin, which matters in the token-less, loopback-only mode where no cookie protects them.

use actix_web::{
    http::{header, Method},
    web, HttpRequest, HttpResponse, ResponseError,
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

use super::{openapi::StuckSeconds, AdminAccess, TOKEN_COOKIE};
use crate::{
    domain::Status,
    operations::{Action, Operations},
    store::{self, HistoryLine, SagaFilter, SagaSummary},
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

/// Registers the login page, which must stay outside the `/admin` scope's access check: it is how a browser
/// gets the credential.
pub fn configure_login(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/admin/ui/login", Method::GET, login));
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
form.inline{display:inline-block;margin-right:1em}nav a{margin-right:1em}";

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
                nav { a href=(PAGES) { "Overview" } }
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

fn status_span(status: Status) -> Markup {
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

/// Query parameters of the overview.
#[derive(Deserialize)]
pub(super) struct OverviewQuery {
    stuck: Option<String>,
    q: Option<String>,
}

#[utoipa::path(
    get,
    path = "/admin/ui",
    operation_id = "uiOverview",
    summary = "Operator page: counts per status, stuck sagas, search.",
    params(
        ("stuck" = Option<StuckSeconds>, Query, description = "Seconds unchanged that count as stuck (default 10)."),
        ("q" = Option<String>, Query, max_length = 128, pattern = r"^[^\x00-\x1F\x7F-\x9F]*$",
            description = "A saga, order or user ID to search for (surrounding spaces are ignored)."),
        ("flash" = Option<String>, Query, description = "A message to show."),
        ("kind" = Option<String>, Query, description = "`ok` or `error`."),
    ),
    responses(
        (status = 200, description = "The page.", content_type = "text/html", body = String),
        (status = 400, description = "A malformed parameter, shown as a page; or a query string that cannot be read \
            at all (a parameter given twice), answered as JSON.", content(
            (String = "text/html"), (Error = "application/json"))),
        (status = 401, description = "No valid token (bearer or admin_token cookie).", content_type = "text/html", body = String),
        (status = 403, description = "Not on loopback and no token configured.", content_type = "text/html", body = String),
        (status = 503, description = "The database is unavailable, shown as a page.", content_type = "text/html", body = String),
    )
)]
pub(super) async fn overview(
    pool: web::Data<Pool>,
    query: web::Query<OverviewQuery>,
    flash: web::Query<Flash>,
) -> HttpResponse {
    match render_overview(&pool, &query, &flash).await {
        Ok(response) => response,
        Err(e) => error_page(&e),
    }
}

async fn render_overview(pool: &Pool, query: &OverviewQuery, flash: &Flash) -> Result<HttpResponse, ApiError> {
    let stuck_secs = match query.stuck.as_deref().filter(|s| !s.is_empty()) {
        Some(raw) => parse_amount("stuck", raw)?,
        None => DEFAULT_STUCK_SECS,
    };
    let search = query.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    let search = search.map(|q| check_id("search", q)).transpose()?;

    let mut conn = pool.get().await?;
    let counts = store::counts(&mut conn).await?;
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
                    td class="count" id={ "count-" (status.as_str()) } { (counts.get(&status).copied().unwrap_or(0)) }
                }
            }
        }
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

#[derive(Deserialize)]
pub(super) struct LoginQuery {
    token: Option<String>,
}

/// Stores the admin token in a cookie, so that the pages and their forms work without a bearer header.
#[utoipa::path(
    get,
    path = "/admin/ui/login",
    operation_id = "uiLogin",
    summary = "Stores the admin token in the admin_token cookie (HttpOnly, SameSite=Strict) for the operator pages.",
    params(("token" = String, Query, description = "The ADMIN_TOKEN.")),
    responses(
        (status = 303, description = "Logged in; on to /admin/ui."),
        (status = 400, description = "No token given, shown as a page; or a query string that cannot be read at all, \
            answered as JSON.", content((String = "text/html"), (Error = "application/json"))),
        (status = 401, description = "Not the admin token (or none is configured).", content_type = "text/html", body = String),
    )
)]
pub(super) async fn login(access: web::Data<AdminAccess>, query: web::Query<LoginQuery>) -> HttpResponse {
    let Some(token) = query.token.as_deref() else {
        return error_page(&ApiError::BadRequest("log in with /admin/ui/login?token=<ADMIN_TOKEN>".into()));
    };
    // Only a token the cookie can carry verbatim is ever accepted, so a wrong one is refused here, not stored.
    let storable = !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic() && !b"\";\\,".contains(&b));
    if !(storable && access.accepts(token)) {
        return error_page(&ApiError::Unauthorized("that is not the admin token".into()));
    }
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, PAGES))
        .insert_header((header::SET_COOKIE, format!("{TOKEN_COOKIE}={token}; Path={PAGES}; HttpOnly; SameSite=Strict")))
        .finish()
}

fn parse_saga_id(raw: &str) -> Result<SagaId, ApiError> {
    raw.parse().map_err(|_| ApiError::BadRequest(format!("saga_id {raw:?} is not a UUID")))
}

#[utoipa::path(
    get,
    path = "/admin/ui/sagas/{saga_id}",
    operation_id = "uiSaga",
    summary = "Operator page of one saga: state, request, timeline, Retry and Abort.",
    params(("saga_id" = uuid::Uuid, Path, description = "The saga (a UUID)."),
        ("flash" = Option<String>, Query, description = "A message to show."),
        ("kind" = Option<String>, Query, description = "`ok` or `error`."),
    ),
    responses(
        (status = 200, description = "The page.", content_type = "text/html", body = String),
        (status = 400, description = "A malformed parameter, shown as a page; or a query string that cannot be read \
            at all (a parameter given twice), answered as JSON.", content(
            (String = "text/html"), (Error = "application/json"))),
        (status = 401, description = "No valid token (bearer or admin_token cookie).", content_type = "text/html", body = String),
        (status = 403, description = "Not on loopback and no token configured.", content_type = "text/html", body = String),
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

    let id = id.to_string();
    let next_retry = saga.next_retry_at.as_ref().map_or_else(|| "none".to_owned(), time);
    let body = html! {
        h1 { "Saga " code { (id) } }
        (flash.html())
        table id="summary" {
            tr { th { "Status" } td id="status" { (status_span(saga.status)) } }
            tr { th { "Order" } td { (saga.order_id) } }
            tr { th { "User" } td { (saga.user_id) } }
            tr { th { "Version" } td { (saga.version) } }
            tr { th { "Retries" } td { (saga.retries) } }
            tr { th { "Next retry" } td { (next_retry) } }
            tr { th { "Created" } td { (time(&saga.created_at)) } }
            tr { th { "Updated" } td { (time(&saga.updated_at)) } }
        }
        @if !saga.status.is_terminal() {
            h2 { "Actions" }
            form class="inline retry" method="post" action={ "/admin/ui/sagas/" (id) "/retry" } {
                button type="submit" id="retry" { "Retry" }
                " re-send the unanswered commands now"
            }
            form class="inline abort" method="post" action={ "/admin/ui/sagas/" (id) "/abort" } {
                button type="submit" id="abort" { "Abort" }
                " undo whatever was done, then fail"
            }
        }
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

fn timeline_html(history: &[HistoryLine]) -> Markup {
    html! {
        h2 { "Timeline" }
        table id="timeline" {
            tr { th { "Time" } th { "Event" } th { "From → to" } th { "Commands" } }
            @for line in history {
                @let commands: Vec<String> =
                    line.commands.as_array().into_iter().flatten().map(|c| tagged(c, "command")).collect();
                tr {
                    td { (time(&line.at)) }
                    td { (tagged(&line.event, "event")) }
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

/// Whether a form post comes from these pages: a browser names the page's origin in `Origin`; tools such as
/// curl send none.
pub(super) fn same_origin(req: &HttpRequest) -> bool {
    let Some(origin) = req.headers().get(header::ORIGIN).and_then(|o| o.to_str().ok()) else { return true };
    let host = req.connection_info().host().to_owned();
    origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")) == Some(host.as_str())
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
        (status = 401, description = "No valid token.", content_type = "text/html", body = String),
        (status = 403, description = "Not on loopback, or posted from another origin.", content_type = "text/html", body = String),
        (status = 404, description = "No such saga.", content_type = "text/html", body = String),
        (status = 503, description = "The database is unavailable, shown as a page.", content_type = "text/html", body = String),
    )
)]
pub(super) async fn retry(
    req: HttpRequest,
    operations: web::Data<Operations>,
    path: web::Path<String>,
) -> HttpResponse {
    act(&req, &operations, &path, Action::Retry).await
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
        (status = 401, description = "No valid token.", content_type = "text/html", body = String),
        (status = 403, description = "Not on loopback, or posted from another origin.", content_type = "text/html", body = String),
        (status = 404, description = "No such saga.", content_type = "text/html", body = String),
        (status = 503, description = "The database is unavailable, shown as a page.", content_type = "text/html", body = String),
    )
)]
pub(super) async fn abort(
    req: HttpRequest,
    operations: web::Data<Operations>,
    path: web::Path<String>,
) -> HttpResponse {
    act(&req, &operations, &path, Action::Abort).await
}

/// Performs `action` and sends the browser back to the saga's page with what happened; a saga that is
/// already over is a message there, not an error page.
async fn act(req: &HttpRequest, operations: &Operations, raw_id: &str, action: Action) -> HttpResponse {
    if !same_origin(req) {
        return error_page(&ApiError::Forbidden("this form was posted from another site".into()));
    }
    let id = match parse_saga_id(raw_id) {
        Ok(id) => id,
        Err(e) => return error_page(&e),
    };
    let verb = match action {
        Action::Retry => "Retry",
        Action::Abort => "Abort",
    };
    let (message, kind) = match operations.perform(id, action).await {
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
    fn the_status_code_of_an_error_page_is_the_api_one() {
        assert_eq!(error_page(&ApiError::Conflict("x".into())).status(), StatusCode::CONFLICT);
        assert_eq!(error_page(&ApiError::Unauthorized("x".into())).status(), StatusCode::UNAUTHORIZED);
    }
}
