//! The workings of `sagactl`, the operator's command line over the coordinator's admin API.
//!
//! - [`args`]: the command line, parsed with clap into an [`args::Invocation`].
//! - [`client`]: the HTTP calls, and the server's `{"error": ...}` answers as errors.
//! - [`render`]: the answers as tables for a terminal; with `-o json` the API's JSON is printed instead.

pub mod args;
pub mod client;
pub mod render;

use args::{Command, DeadLetterAction, Invocation, Output};
use client::{Client, Error};
use serde_json::Value;

/// Runs `invocation` against the coordinator and returns what to print.
pub async fn run(invocation: &Invocation) -> Result<String, Error> {
    let client = Client::new(&invocation.url, invocation.token.as_deref(), invocation.operator.as_deref());
    let (answer, render): (Value, fn(&Value) -> String) = match &invocation.command {
        Command::List(filter) => (client.get("/admin/sagas", &filter.query()).await?, render::sagas),
        Command::Show { saga_id: id } => (client.get(&format!("/admin/sagas/{id}"), &[]).await?, render::saga),
        Command::Retry { saga_id: id } => (client.post(&format!("/admin/sagas/{id}/retry")).await?, render::action),
        Command::Abort { saga_id: id } => (client.post(&format!("/admin/sagas/{id}/abort")).await?, render::action),
        Command::Stats => (client.get("/admin/stats", &[]).await?, render::stats),
        Command::DeadLetters { limit, action: None } => {
            let query: Vec<(&str, String)> = limit.iter().map(|l| ("limit", l.to_string())).collect();
            (client.get("/admin/dead-letters", &query).await?, render::dead_letters)
        }
        Command::DeadLetters { action: Some(action), .. } => {
            let (id, verb) = match action {
                DeadLetterAction::Replay { id } => (id, "replay"),
                DeadLetterAction::Discard { id } => (id, "discard"),
            };
            let path = format!("/admin/dead-letters/{}/{verb}", client::path_segment(id));
            (client.post(&path).await?, render::dead_letter_taken)
        }
        Command::ReplayDeadLetters => (client.post("/admin/dead-letters/replay").await?, render::replay),
        Command::Bulk { action } => return bulk(&client, action, invocation.output).await,
        Command::Failures => (client.get("/admin/failures", &[]).await?, render::failures),
        Command::Audit(filter) => (client.get("/admin/audit", &filter.query()).await?, render::audit),
    };
    Ok(shown(invocation.output, &answer, render))
}

/// `answer` as `output` asks: through `render` for a table, or as the API's JSON.
fn shown(output: Output, answer: &Value, render: fn(&Value) -> String) -> String {
    match output {
        Output::Table => render(answer),
        Output::Json => render::json(answer),
    }
}

/// `bulk retry|abort`: a dry run first; then, unless only that was asked for, the action itself, once the
/// operator has confirmed what the dry run showed (or said `--yes`). The action matches the filter again, so
/// what it reports per saga is what was done.
async fn bulk(client: &Client, action: &args::BulkAction, output: Output) -> Result<String, Error> {
    let (name, flags) = action.parts();
    let path = format!("/admin/sagas/bulk/{name}");
    let preview = client.post_json(&path, &flags.body(true)).await?;
    if flags.dry_run {
        return Ok(shown(output, &preview, render::bulk));
    }
    if !flags.yes {
        // The question goes to stderr as a table whatever the output, which stays the machine's.
        eprint!("{}{name} these sagas? [y/N] ", render::bulk(&preview));
        if !confirmed().await {
            return Ok("nothing done\n".into());
        }
    }
    Ok(shown(output, &client.post_json(&path, &flags.body(false)).await?, render::bulk))
}

/// Whether the operator answers yes on standard input.
async fn confirmed() -> bool {
    use tokio::io::AsyncBufReadExt as _;
    let mut answer = String::new();
    let read = tokio::io::BufReader::new(tokio::io::stdin()).read_line(&mut answer).await;
    read.is_ok() && matches!(answer.trim(), "y" | "Y" | "yes")
}
