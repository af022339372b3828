//! The dead-letter page under `/admin/ui/dead-letters`: the messages waiting in the dead-letter queue, decoded,
//! each with Replay and Discard buttons, and Replay all. The buttons go through [`DeadLetters`] like the JSON
//! API, audited with the operator of the request; the admin scope's middleware refuses forms posted from another
//! site (see [`super::AdminAccess`]).

use actix_web::{http::Method, web, HttpResponse};
use maud::{html, Markup};
use platform::http::{check_id, resource, ApiError};
use serde::Deserialize;

use super::{
    dead_letters::{broker_error, parse_limit, taken},
    openapi::PageRefusals,
    ui::{encode_query, error_page, page, redirect, time, Flash},
};
use crate::{
    audit::Actor,
    dead_letters::{DeadLetter, DeadLetters},
};

/// Where the page lives.
const PAGE: &str = "/admin/ui/dead-letters";

/// Registers the page and its buttons, relative to the `/admin` scope.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/ui/dead-letters", Method::GET, list))
        .service(resource("/ui/dead-letters/replay", Method::POST, replay_all))
        .service(resource("/ui/dead-letters/{id}/replay", Method::POST, replay_one))
        .service(resource("/ui/dead-letters/{id}/discard", Method::POST, discard));
}

#[derive(Deserialize)]
pub(super) struct ListQuery {
    limit: Option<String>,
}

#[utoipa::path(
    get,
    path = "/admin/ui/dead-letters",
    operation_id = "uiDeadLetters",
    summary = "The dead-letter page: the waiting messages, decoded, with Replay, Discard and Replay all.",
    params(
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 1000, description = "The most to show (default 100)."),
        ("flash" = Option<String>, Query, description = "A message to show, set by the redirect after a button."),
        ("kind" = Option<String>, Query, description = "`error` shows the flash message as an error."),
    ),
    responses(
        (status = 200, description = "The page.", content_type = "text/html", body = String),
        (status = 400, description = "A malformed limit, shown as a page.", content_type = "text/html", body = String),
        PageRefusals,
        (status = 503, description = "The broker is unavailable, shown as a page.", content_type = "text/html", body = String),
    )
)]
pub(super) async fn list(
    dead_letters: web::Data<DeadLetters>,
    query: web::Query<ListQuery>,
    flash: web::Query<Flash>,
) -> HttpResponse {
    let listed = async {
        let limit = parse_limit(query.limit.as_deref())?;
        dead_letters.peek(limit).await.map_err(broker_error)
    };
    match listed.await {
        Ok(letters) => page("Dead letters", letters_html(&letters, &flash)),
        Err(e) => error_page(&e),
    }
}

fn letters_html(letters: &[DeadLetter], flash: &Flash) -> Markup {
    html! {
        h1 { "Dead letters" }
        (flash.html())
        p { "Messages no consumer could process, oldest first. Replay sends one back to the queue it died in; \
            Discard removes it for good (it is kept in the audit log)." }
        @if letters.is_empty() {
            p id="empty" { "The dead-letter queue is empty." }
        } @else {
            form.inline method="post" action={ (PAGE) "/replay" } {
                button type="submit" id="replay-all" { "Replay all" }
            }
            table id="dead-letters" {
                tr { th { "ID" } th { "Kind" } th { "Saga" } th { "Died in" } th { "Reason" } th { "Died at" }
                     th { "Deaths" } th { "Content" } th { "Actions" } }
                @for letter in letters { (letter_row(letter)) }
            }
        }
    }
}

fn letter_row(letter: &DeadLetter) -> Markup {
    let action = |verb: &str| format!("{PAGE}/{}/{verb}", encode_query(&letter.id));
    let dash = || "-".to_owned();
    html! {
        tr.dead-letter data-id=(letter.id) {
            td { code { (letter.id) } }
            td { (letter.kind.clone().unwrap_or_else(dash)) }
            td {
                @if let Some(saga) = letter.saga_id {
                    a href={ "/admin/ui/sagas/" (saga) } { code { (saga) } }
                } @else { "-" }
            }
            td { (letter.original_queue.clone().unwrap_or_else(dash)) }
            td { (letter.reason.clone().unwrap_or_else(dash)) }
            td { (letter.died_at.as_ref().map(time).unwrap_or_else(dash)) }
            td { (letter.deaths.map(|n| n.to_string()).unwrap_or_else(dash)) }
            td { details { summary { "body" } pre { (letter.body) } } }
            td {
                form.inline method="post" action=(action("replay")) { button type="submit" class="replay" { "Replay" } }
                form.inline method="post" action=(action("discard")) { button type="submit" class="discard" { "Discard" } }
            }
        }
    }
}

/// Back to the page with `message` as its flash.
fn back(message: &str, kind: &str) -> HttpResponse {
    redirect(&format!("{PAGE}?flash={}&kind={kind}", encode_query(message)))
}

#[utoipa::path(
    post,
    path = "/admin/ui/dead-letters/replay",
    operation_id = "uiReplayDeadLetters",
    summary = "The Replay all button.",
    responses(
        (status = 303, description = "Back to the dead-letter page, with what was done as a flash message."),
        PageRefusals,
        (status = 503, description = "The broker or the database is unavailable, shown as a page.", content_type = "text/html", body = String),
    )
)]
pub(super) async fn replay_all(dead_letters: web::Data<DeadLetters>, actor: web::ReqData<Actor>) -> HttpResponse {
    match dead_letters.replay(&actor).await {
        Ok(report) => back(
            &format!("Replayed {} dead letters; {} left (no queue to go back to)", report.replayed, report.skipped),
            "ok",
        ),
        Err(e) => error_page(&broker_error(e)),
    }
}

#[utoipa::path(
    post,
    path = "/admin/ui/dead-letters/{id}/replay",
    operation_id = "uiReplayDeadLetter",
    summary = "The Replay button of one message.",
    params(("id" = String, Path, max_length = 128, description = "The message's id as listed.")),
    responses(
        (status = 303, description = "Back to the dead-letter page, with the outcome (also a refusal: not waiting, \
            no queue to go back to) as a flash message."),
        (status = 400, description = "A malformed id.", content_type = "text/html", body = String),
        PageRefusals,
        (status = 503, description = "The broker or the database is unavailable, shown as a page.", content_type = "text/html", body = String),
    )
)]
pub(super) async fn replay_one(
    dead_letters: web::Data<DeadLetters>,
    actor: web::ReqData<Actor>,
    path: web::Path<String>,
) -> HttpResponse {
    act(&dead_letters, &actor, &path, Verb::Replay).await
}

#[utoipa::path(
    post,
    path = "/admin/ui/dead-letters/{id}/discard",
    operation_id = "uiDiscardDeadLetter",
    summary = "The Discard button of one message.",
    params(("id" = String, Path, max_length = 128, description = "The message's id as listed.")),
    responses(
        (status = 303, description = "Back to the dead-letter page, with the outcome (also a refusal: not waiting) \
            as a flash message."),
        (status = 400, description = "A malformed id.", content_type = "text/html", body = String),
        PageRefusals,
        (status = 503, description = "The broker or the database is unavailable, shown as a page.", content_type = "text/html", body = String),
    )
)]
pub(super) async fn discard(
    dead_letters: web::Data<DeadLetters>,
    actor: web::ReqData<Actor>,
    path: web::Path<String>,
) -> HttpResponse {
    act(&dead_letters, &actor, &path, Verb::Discard).await
}

#[derive(Clone, Copy)]
enum Verb {
    Replay,
    Discard,
}

/// Replays or discards message `raw_id` and sends the browser back to the page with what happened; a message
/// that is gone or cannot be replayed is a message there, not an error page.
async fn act(dead_letters: &DeadLetters, actor: &Actor, raw_id: &str, verb: Verb) -> HttpResponse {
    let id = match check_id("id", raw_id) {
        Ok(id) => id,
        Err(e) => return error_page(&e),
    };
    let (outcome, done) = match verb {
        Verb::Replay => (dead_letters.replay_one(id, actor).await, "Replayed"),
        Verb::Discard => (dead_letters.discard(id, actor).await, "Discarded"),
    };
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(e) => return error_page(&broker_error(e)),
    };
    match taken(id, outcome) {
        Ok(letter) => match (verb, &letter.original_queue) {
            (Verb::Replay, Some(queue)) => back(&format!("{done} {id} to {queue}"), "ok"),
            _ => back(&format!("{done} {id}"), "ok"),
        },
        Err(refusal @ (ApiError::NotFound(_) | ApiError::Conflict(_))) => back(&refusal.to_string(), "error"),
        Err(e) => error_page(&e),
    }
}
