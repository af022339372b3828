//! The workings of `sagactl`, the operator's command line over the coordinator's admin API.
//!
//! - [`args`]: the command line, parsed with clap into an [`args::Invocation`].
//! - [`client`]: the HTTP calls, and the server's `{"error": ...}` answers as errors.
//! - [`render`]: the answers as tables for a terminal.

pub mod args;
pub mod client;
pub mod render;

use args::{Command, DeadLetterAction, Invocation};
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
        Command::DeadLetters { limit, action: None } => {
            let query: Vec<(&str, String)> = limit.iter().map(|l| ("limit", l.to_string())).collect();
            render::dead_letters(&client.get("/admin/dead-letters", &query).await?)
        }
        Command::DeadLetters { action: Some(action), .. } => {
            let (id, verb) = match action {
                DeadLetterAction::Replay { id } => (id, "replay"),
                DeadLetterAction::Discard { id } => (id, "discard"),
            };
            let path = format!("/admin/dead-letters/{}/{verb}", client::path_segment(id));
            render::dead_letter_taken(&client.post(&path).await?)
        }
        Command::ReplayDeadLetters => render::replay(&client.post("/admin/dead-letters/replay").await?),
    })
}
