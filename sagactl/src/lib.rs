//! The workings of `sagactl`, the operator's command line over the coordinator's admin API.
//!
//! - [`args`]: the command line, parsed with clap into an [`args::Invocation`].
//! - [`client`]: the HTTP calls, and the server's `{"error": ...}` answers as errors.
//! - [`render`]: the answers as tables for a terminal; with `-o json` the API's JSON is printed instead.

pub mod args;
pub mod client;
pub mod render;

use args::{Command, Invocation, Output};
use client::{Client, Error};
use serde_json::Value;

/// Runs `invocation` against the coordinator and returns what to print.
pub async fn run(invocation: &Invocation) -> Result<String, Error> {
    let client = Client::new(&invocation.url, invocation.token.as_deref());
    let (answer, render): (Value, fn(&Value) -> String) = match &invocation.command {
        Command::List(filter) => (client.get("/admin/sagas", &filter.query()).await?, render::sagas),
        Command::Show { saga_id: id } => (client.get(&format!("/admin/sagas/{id}"), &[]).await?, render::saga),
        Command::Retry { saga_id: id } => (client.post(&format!("/admin/sagas/{id}/retry")).await?, render::action),
        Command::Abort { saga_id: id } => (client.post(&format!("/admin/sagas/{id}/abort")).await?, render::action),
        Command::Stats => (client.get("/admin/stats", &[]).await?, render::stats),
        Command::DeadLetters { limit } => {
            let query: Vec<(&str, String)> = limit.iter().map(|l| ("limit", l.to_string())).collect();
            (client.get("/admin/dead-letters", &query).await?, render::dead_letters)
        }
        Command::ReplayDeadLetters => (client.post("/admin/dead-letters/replay").await?, render::replay),
    };
    Ok(match invocation.output {
        Output::Table => render(&answer),
        Output::Json => render::json(&answer),
    })
}
