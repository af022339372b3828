//! `sagactl`: list, inspect, retry and abort checkout sagas, and look at or replay dead letters, through the
//! coordinator's admin API. See `sagactl --help` and `docs/operations.md`.

use std::process::ExitCode;

use sagactl::{args, run};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let parsed = match args::parse(std::env::args_os(), |name| std::env::var(name).ok()) {
        Ok(invocation) => invocation,
        // `--help` (exit 0) or a command line that is not understood (exit 2).
        Err(e) => e.exit(),
    };
    match run(&parsed).await {
        Ok(output) => {
            print!("{output}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sagactl: {e}");
            ExitCode::FAILURE
        }
    }
}
