//! The workings of `sagactl`, the operator's command line over the coordinator's admin API.
//!
//! - [`args`]: the command line, parsed with clap into an [`args::Invocation`].
//! - [`client`]: the HTTP calls, and the server's `{"error": ...}` answers as errors.
//! - [`render`]: the answers as tables for a terminal.

pub mod args;
pub mod client;
pub mod render;

use args::{Command, Invocation};
use client::{Client, Error};

/// Runs `invocation` against the coordinator and returns what to print.
pub async fn run(invocation: &Invocation) -> Result<String, Error> {
    let client = Client::new(&invocation.url, invocation.token.as_deref());
    Ok(match &invocation.command {
        Command::List(filter) => render::sagas(&client.get("/admin/sagas", &filter.query()).await?),
        Command::Show { saga_id: id } => render::saga(&client.get(&format!("/admin/sagas/{id}"), &[]).await?),
        Command::Retry { saga_id: id } => render::action(&client.post(&format!("/admin/sagas/{id}/retry")).await?),
        Command::Abort { saga_id: id } => render::action(&client.post(&format!("/admin/sagas/{id}/abort")).await?),
        Command::Stats => render::stats(&client.get("/admin/stats", &[]).await?),
        Command::DeadLetters { limit } => {
            let query: Vec<(&str, String)> = limit.iter().map(|l| ("limit", l.to_string())).collect();
            render::dead_letters(&client.get("/admin/dead-letters", &query).await?)
        }
        Command::ReplayDeadLetters => render::replay(&client.post("/admin/dead-letters/replay").await?),
        Command::Bulk { action } => bulk(&client, action).await?,
        Command::Failures => render::failures(&client.get("/admin/failures", &[]).await?),
        Command::Audit(filter) => render::audit(&client.get("/admin/audit", &filter.query()).await?),
    })
}

/// `bulk retry|abort`: a dry run first; then, unless only that was asked for, the action itself, once the
/// operator has confirmed what the dry run showed (or said `--yes`). The action matches the filter again, so
/// what it reports per saga is what was done.
async fn bulk(client: &Client, action: &args::BulkAction) -> Result<String, Error> {
    let (name, flags) = action.parts();
    let path = format!("/admin/sagas/bulk/{name}");
    let preview = render::bulk(&client.post_json(&path, &flags.body(true)).await?);
    if flags.dry_run {
        return Ok(preview);
    }
    if !flags.yes {
        eprint!("{preview}{name} these sagas? [y/N] ");
        if !confirmed().await {
            return Ok("nothing done\n".into());
        }
    }
    Ok(render::bulk(&client.post_json(&path, &flags.body(false)).await?))
}

/// Whether the operator answers yes on standard input.
async fn confirmed() -> bool {
    use tokio::io::AsyncBufReadExt as _;
    let mut answer = String::new();
    let read = tokio::io::BufReader::new(tokio::io::stdin()).read_line(&mut answer).await;
    read.is_ok() && matches!(answer.trim(), "y" | "Y" | "yes")
}
