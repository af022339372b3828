//! `sagactl`: list, inspect, retry and abort checkout sagas, and look at or replay dead letters, through the
//! coordinator's admin API. See `sagactl --help` and `docs/operations.md`.

use std::process::ExitCode;

use sagactl::{args, run};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let parsed = match args::parse(std::env::args().skip(1), |name| std::env::var(name).ok()) {
        Ok(args::Parsed::Help) => {
            print!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(args::Parsed::Run(invocation)) => invocation,
        Err(e) => {
            eprintln!("sagactl: {e}\n\n{}", args::USAGE);
            return ExitCode::from(2);
        }
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
