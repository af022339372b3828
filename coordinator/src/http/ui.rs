//! The operator pages under `/admin/ui`: server-rendered HTML with plain forms, no JavaScript, so that they work
//! from any browser on a jump host. The overview shows how many sagas are in each status, the stuck ones, and a
//! search by saga, order or user ID; a saga's page shows its request, state and timeline, with Retry and Abort
//! buttons that go through [`Operations::perform`] like the JSON API.
//!
//! Access is the JSON API's, with one addition: a browser cannot send a bearer header from a form, so
//! `GET /admin/ui/login?token=...` stores the token in an `HttpOnly`, `SameSite=Strict` cookie that the pages
//! accept instead. Forms that change something are also refused when the browser says they come from another
//! origin, which matters in the token-less, loopback-only mode where no cookie protects them.

use std::fmt::Write as _;

use actix_web::{
    http::{header, Method},
    web, HttpRequest, HttpResponse, ResponseError,
};
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

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/admin/ui", Method::GET, overview))
        .service(resource("/admin/ui/login", Method::GET, login))
        .service(resource("/admin/ui/sagas/{saga_id}", Method::GET, saga_page))
        .service(resource("/admin/ui/sagas/{saga_id}/retry", Method::POST, retry))
        .service(resource("/admin/ui/sagas/{saga_id}/abort", Method::POST, abort));
}

/// Makes `text` safe to place in HTML text and in quoted attribute values.
pub fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            _ => escaped.push(c),
        }
    }
    escaped
}

/// Percent-encodes `text` for a query-string value.
fn encode_query(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            let _ = write!(encoded, "%{byte:02X}");
        }
    }
    encoded
}

/// A flash message carried in the query string after a redirect.
#[derive(Deserialize)]
pub(super) struct Flash {
    flash: Option<String>,
    kind: Option<String>,
}

impl Flash {
    fn html(&self) -> String {
        match &self.flash {
            Some(message) => {
                let class = if self.kind.as_deref() == Some("error") { "flash error" } else { "flash ok" };
                format!("<p class=\"{class}\" id=\"flash\">{}</p>", escape_html(message))
            }
            None => String::new(),
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

fn page(title: &str, body: &str) -> HttpResponse {
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\
         <style>{STYLE}</style></head><body><nav><a href=\"/admin/ui\">Overview</a></nav>{body}</body></html>",
        escape_html(title)
    );
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(html)
}

/// An error as a page, with the status the JSON API would give it.
fn error_page(error: &ApiError) -> HttpResponse {
    let status = error.status_code();
    let mut response = page(
        &format!("Error {}", status.as_u16()),
        &format!(
            "<h1>{} {}</h1><p class=\"flash error\">{}</p>",
            status.as_u16(),
            escape_html(status.canonical_reason().unwrap_or("")),
            escape_html(&error.to_string())
        ),
    );
    *response.status_mut() = status;
    response
}

fn redirect(location: &str) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((header::LOCATION, location)).finish()
}

fn status_span(status: &str) -> String {
    format!("<span class=\"status status-{0}\">{0}</span>", escape_html(status))
}

fn time(at: &chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string()
}

fn saga_rows(sagas: &[SagaSummary]) -> String {
    if sagas.is_empty() {
        return "<p class=\"empty\">None.</p>".into();
    }
    let mut html = String::from(
        "<table><tr><th>Saga</th><th>Order</th><th>User</th><th>Status</th><th>Retries</th><th>Updated</th></tr>",
    );
    for saga in sagas {
        let _ = write!(
            html,
            "<tr><td><a href=\"/admin/ui/sagas/{id}\">{id}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td></tr>",
            escape_html(&saga.order_id),
            escape_html(&saga.user_id),
            status_span(&saga.status),
            saga.retries,
            time(&saga.updated_at),
            id = escape_html(&saga.id),
        );
    }
    html.push_str("</table>");
    html
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
    req: HttpRequest,
    access: web::Data<AdminAccess>,
    pool: web::Data<Pool>,
    query: web::Query<OverviewQuery>,
    flash: web::Query<Flash>,
) -> HttpResponse {
    match render_overview(&req, &access, &pool, &query, &flash).await {
        Ok(response) => response,
        Err(e) => error_page(&e),
    }
}

async fn render_overview(
    req: &HttpRequest,
    access: &AdminAccess,
    pool: &Pool,
    query: &OverviewQuery,
    flash: &Flash,
) -> Result<HttpResponse, ApiError> {
    access.check_page(req)?;
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

    let mut body = String::from("<h1>Checkout sagas</h1>");
    body.push_str(&flash.html());
    body.push_str("<h2>By status</h2><table><tr><th>Status</th><th>Sagas</th></tr>");
    for status in Status::ALL {
        let n = counts.iter().find(|(s, _)| s == status.as_str()).map_or(0, |(_, n)| *n);
        let _ = write!(
            body,
            "<tr><td>{}</td><td class=\"count\" id=\"count-{}\">{n}</td></tr>",
            status_span(status.as_str()),
            status.as_str()
        );
    }
    body.push_str("</table>");

    let _ = write!(
        body,
        "<h2>Stuck: not finished and unchanged for {stuck_secs} s or more</h2>\
         <form method=\"get\" action=\"/admin/ui\"><label>Unchanged for at least \
         <input type=\"number\" name=\"stuck\" min=\"0\" value=\"{stuck_secs}\"> s</label> \
         <button type=\"submit\" id=\"show-stuck\">Show</button></form><div id=\"stuck\">{}</div>",
        saga_rows(&stuck)
    );

    let _ = write!(
        body,
        "<h2>Search</h2><form method=\"get\" action=\"/admin/ui\"><input type=\"hidden\" name=\"stuck\" \
         value=\"{stuck_secs}\"><label>Saga, order or user ID <input type=\"search\" name=\"q\" size=\"40\" \
         value=\"{}\"></label> <button type=\"submit\" id=\"search\">Search</button></form>",
        escape_html(search.unwrap_or(""))
    );
    if let Some(found) = found {
        let _ = write!(body, "<div id=\"results\">{}</div>", saga_rows(&found));
    }
    Ok(page("Checkout sagas", &body))
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
        .insert_header((header::LOCATION, "/admin/ui"))
        .insert_header((
            header::SET_COOKIE,
            format!("{TOKEN_COOKIE}={token}; Path=/admin/ui; HttpOnly; SameSite=Strict"),
        ))
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
    req: HttpRequest,
    access: web::Data<AdminAccess>,
    pool: web::Data<Pool>,
    path: web::Path<String>,
    flash: web::Query<Flash>,
) -> HttpResponse {
    match render_saga(&req, &access, &pool, &path, &flash).await {
        Ok(response) => response,
        Err(e) => error_page(&e),
    }
}

async fn render_saga(
    req: &HttpRequest,
    access: &AdminAccess,
    pool: &Pool,
    raw_id: &str,
    flash: &Flash,
) -> Result<HttpResponse, ApiError> {
    access.check_page(req)?;
    let id = parse_saga_id(raw_id)?;
    let mut conn = pool.get().await?;
    let saga =
        store::find(&mut conn, id).await?.ok_or_else(|| ApiError::NotFound(format!("saga {id} does not exist")))?;
    let history = store::history(&mut conn, id).await?;

    let mut body = format!("<h1>Saga <code>{id}</code></h1>");
    body.push_str(&flash.html());
    let next_retry = saga.next_retry_at.as_ref().map_or_else(|| "none".to_owned(), time);
    let _ = write!(
        body,
        "<table id=\"summary\"><tr><th>Status</th><td id=\"status\">{}</td></tr>\
         <tr><th>Order</th><td>{}</td></tr><tr><th>User</th><td>{}</td></tr>\
         <tr><th>Version</th><td>{}</td></tr><tr><th>Retries</th><td>{}</td></tr>\
         <tr><th>Next retry</th><td>{}</td></tr><tr><th>Created</th><td>{}</td></tr>\
         <tr><th>Updated</th><td>{}</td></tr></table>",
        status_span(&saga.status),
        escape_html(&saga.order_id),
        escape_html(&saga.user_id),
        saga.version,
        saga.retries,
        next_retry,
        time(&saga.created_at),
        time(&saga.updated_at),
    );
    let terminal = saga.status.parse::<Status>().map_or(true, Status::is_terminal);
    if !terminal {
        let _ = write!(
            body,
            "<h2>Actions</h2>\
             <form class=\"inline retry\" method=\"post\" action=\"/admin/ui/sagas/{id}/retry\">\
             <button type=\"submit\" id=\"retry\">Retry</button> re-send the unanswered commands now</form>\
             <form class=\"inline abort\" method=\"post\" action=\"/admin/ui/sagas/{id}/abort\">\
             <button type=\"submit\" id=\"abort\">Abort</button> undo whatever was done, then fail</form>"
        );
    }
    body.push_str(&request_html(&saga.request));
    let _ = write!(body, "<h2>State</h2><pre id=\"state\">{}</pre>", escape_html(&pretty(&saga.state)));
    body.push_str(&timeline_html(&history));
    Ok(page(&format!("Saga {id}"), &body))
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

fn request_html(request: &Value) -> String {
    let mut html = String::from("<h2>Request</h2><table id=\"items\"><tr><th>Item</th><th>Quantity</th></tr>");
    for item in request["items"].as_array().into_iter().flatten() {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td></tr>",
            escape_html(&plain(&item["item_id"])),
            escape_html(&plain(&item["quantity"]))
        );
    }
    let _ = write!(html, "</table><p>Total: <strong>{}</strong></p>", escape_html(&plain(&request["total"])));
    html
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

fn timeline_html(history: &[HistoryLine]) -> String {
    let mut html = String::from(
        "<h2>Timeline</h2><table id=\"timeline\"><tr><th>Time</th><th>Event</th><th>From → to</th>\
         <th>Commands</th></tr>",
    );
    for line in history {
        let commands: Vec<String> =
            line.commands.as_array().into_iter().flatten().map(|c| tagged(c, "command")).collect();
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{} → {}</td><td>{}</td></tr>",
            time(&line.at),
            escape_html(&tagged(&line.event, "event")),
            line.from_status.as_deref().map_or_else(|| "·".to_owned(), status_span),
            status_span(&line.to_status),
            escape_html(&commands.join(", ")),
        );
    }
    html.push_str("</table>");
    html
}

/// Whether a form post comes from these pages: a browser names the page's origin in `Origin`; tools such as
/// curl send none.
fn same_origin(req: &HttpRequest) -> bool {
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
    access: web::Data<AdminAccess>,
    operations: web::Data<Operations>,
    path: web::Path<String>,
) -> HttpResponse {
    act(&req, &access, &operations, &path, Action::Retry).await
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
    access: web::Data<AdminAccess>,
    operations: web::Data<Operations>,
    path: web::Path<String>,
) -> HttpResponse {
    act(&req, &access, &operations, &path, Action::Abort).await
}

/// Performs `action` and sends the browser back to the saga's page with what happened; a saga that is
/// already over is a message there, not an error page.
async fn act(
    req: &HttpRequest,
    access: &AdminAccess,
    operations: &Operations,
    raw_id: &str,
    action: Action,
) -> HttpResponse {
    if let Err(e) = access.check_page(req) {
        return error_page(&e);
    }
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
    fn html_special_characters_are_escaped() {
        assert_eq!(
            escape_html("<a href=\"x\">Tom & Jerry's</a>"),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; Jerry&#39;s&lt;/a&gt;"
        );
        assert_eq!(escape_html("plain"), "plain");
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
