//! The command line. Parsed by hand: a handful of subcommands and flags do not need a parser library.

/// What `--help` prints.
pub const USAGE: &str = "\
usage: sagactl [--url URL] [--token TOKEN] COMMAND

commands:
  list [--status S] [--stuck SECS] [--order ID] [--user ID] [--limit N] [--offset N]
                          sagas, newest first (S: needs_attention, executing, compensating,
                          completed, failed, cancelling, cancelled;
                          --stuck: unfinished and unchanged for at least SECS seconds)
  show SAGA_ID            one saga: request, state and timeline
  retry SAGA_ID           re-send the saga's unanswered commands now
  abort SAGA_ID           undo whatever the saga did, then fail it
  stats                   how many sagas are in each status
  dead-letters [--limit N]
                          messages waiting in the dead-letter queue (they stay there)
  replay-dead-letters     send every dead letter back to the queue it died in

options:
  --url URL               the coordinator (default $SAGACTL_URL, else http://127.0.0.1:8004)
  --token TOKEN           the admin token (default $ADMIN_TOKEN; none: loopback access)
  -h, --help              this text
";

/// The coordinator when neither `--url` nor `SAGACTL_URL` says otherwise.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8004";

/// A parsed command line.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Print the usage.
    Help,
    /// Call the coordinator.
    Run(Invocation),
}

/// Where to send which command.
#[derive(Debug, PartialEq, Eq)]
pub struct Invocation {
    /// The coordinator's base URL, without a trailing slash.
    pub url: String,
    /// The bearer token, if any.
    pub token: Option<String>,
    /// What to do.
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// `list`.
    List(ListFilter),
    /// `show ID`.
    Show(String),
    /// `retry ID`.
    Retry(String),
    /// `abort ID`.
    Abort(String),
    /// `stats`.
    Stats,
    /// `dead-letters`.
    DeadLetters {
        /// `--limit`.
        limit: Option<u64>,
    },
    /// `replay-dead-letters`.
    ReplayDeadLetters,
}

/// The flags of `list`, passed to the server as they are: it validates them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// `--status`.
    pub status: Option<String>,
    /// `--stuck`, seconds.
    pub stuck: Option<u64>,
    /// `--order`.
    pub order: Option<String>,
    /// `--user`.
    pub user: Option<String>,
    /// `--limit`.
    pub limit: Option<u64>,
    /// `--offset`.
    pub offset: Option<u64>,
}

impl ListFilter {
    /// The filter as the query of `GET /admin/sagas`.
    pub fn query(&self) -> Vec<(&'static str, String)> {
        let mut query = Vec::new();
        let mut add = |key, value: Option<String>| query.extend(value.map(|v| (key, v)));
        add("status", self.status.clone());
        add("stuck_for", self.stuck.map(|s| s.to_string()));
        add("order_id", self.order.clone());
        add("user_id", self.user.clone());
        add("limit", self.limit.map(|l| l.to_string()));
        add("offset", self.offset.map(|o| o.to_string()));
        query
    }
}

/// What is wrong with a command line.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UsageError {
    /// No subcommand.
    #[error("no command given")]
    NoCommand,
    /// An unknown subcommand.
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
    /// A flag this command does not take.
    #[error("unknown option {0:?}")]
    UnknownOption(String),
    /// A flag or command without its value.
    #[error("{0} needs a value")]
    MissingValue(String),
    /// A number that is not one.
    #[error("{flag} must be a non-negative integer, got {value:?}")]
    NotANumber {
        /// The flag.
        flag: String,
        /// What was given.
        value: String,
    },
    /// Words after a complete command.
    #[error("unexpected argument {0:?}")]
    Unexpected(String),
}

/// Parses the arguments after the program name; `env` looks up `SAGACTL_URL` and `ADMIN_TOKEN`.
pub fn parse(
    args: impl IntoIterator<Item = String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Parsed, UsageError> {
    let mut args = args.into_iter().peekable();
    let mut url = None;
    let mut token = None;
    let command = loop {
        let Some(arg) = args.next() else { return Err(UsageError::NoCommand) };
        match arg.as_str() {
            "-h" | "--help" | "help" => return Ok(Parsed::Help),
            "--url" => url = Some(value(&mut args, "--url")?),
            "--token" => token = Some(value(&mut args, "--token")?),
            flag if flag.starts_with('-') => return Err(UsageError::UnknownOption(arg)),
            _ => break arg,
        }
    };
    let command = match command.as_str() {
        "list" => Command::List(list_filter(&mut args)?),
        "show" => Command::Show(value(&mut args, "show")?),
        "retry" => Command::Retry(value(&mut args, "retry")?),
        "abort" => Command::Abort(value(&mut args, "abort")?),
        "stats" => Command::Stats,
        "dead-letters" => {
            let mut limit = None;
            while let Some(flag) = args.next() {
                match flag.as_str() {
                    "--limit" => limit = Some(number(&mut args, "--limit")?),
                    _ => return Err(UsageError::UnknownOption(flag)),
                }
            }
            Command::DeadLetters { limit }
        }
        "replay-dead-letters" => Command::ReplayDeadLetters,
        _ => return Err(UsageError::UnknownCommand(command)),
    };
    if let Some(extra) = args.next() {
        return Err(UsageError::Unexpected(extra));
    }
    let url = url.or_else(|| env("SAGACTL_URL")).unwrap_or_else(|| DEFAULT_URL.to_owned());
    let token = token.or_else(|| env("ADMIN_TOKEN")).filter(|t| !t.is_empty());
    Ok(Parsed::Run(Invocation { url: url.trim_end_matches('/').to_owned(), token, command }))
}

fn list_filter(args: &mut impl Iterator<Item = String>) -> Result<ListFilter, UsageError> {
    let mut filter = ListFilter::default();
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--status" => filter.status = Some(value(args, "--status")?),
            "--stuck" => filter.stuck = Some(number(args, "--stuck")?),
            "--order" => filter.order = Some(value(args, "--order")?),
            "--user" => filter.user = Some(value(args, "--user")?),
            "--limit" => filter.limit = Some(number(args, "--limit")?),
            "--offset" => filter.offset = Some(number(args, "--offset")?),
            _ => return Err(UsageError::UnknownOption(flag)),
        }
    }
    Ok(filter)
}

fn value(args: &mut impl Iterator<Item = String>, flag: &str) -> Result<String, UsageError> {
    args.next().ok_or_else(|| UsageError::MissingValue(flag.to_owned()))
}

fn number(args: &mut impl Iterator<Item = String>, flag: &str) -> Result<u64, UsageError> {
    let raw = value(args, flag)?;
    raw.parse().map_err(|_| UsageError::NotANumber { flag: flag.to_owned(), value: raw })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_line(line: &str) -> Result<Parsed, UsageError> {
        parse(line.split_whitespace().map(str::to_owned), |name| match name {
            "ADMIN_TOKEN" => Some("from-env".to_owned()),
            _ => None,
        })
    }

    #[test]
    fn a_list_with_every_filter() {
        let Ok(Parsed::Run(invocation)) =
            parse_line("--url http://h:1/ list --status executing --stuck 30 --order o --user u --limit 5 --offset 2")
        else {
            panic!("did not parse")
        };
        assert_eq!(invocation.url, "http://h:1");
        assert_eq!(invocation.token.as_deref(), Some("from-env"));
        let Command::List(filter) = invocation.command else { panic!("not a list") };
        assert_eq!(
            filter.query(),
            [
                ("status", "executing".to_owned()),
                ("stuck_for", "30".to_owned()),
                ("order_id", "o".to_owned()),
                ("user_id", "u".to_owned()),
                ("limit", "5".to_owned()),
                ("offset", "2".to_owned())
            ]
        );
    }

    #[test]
    fn defaults_and_flags_before_the_command() {
        let parsed = parse_line("--token t abort 42").unwrap();
        assert_eq!(
            parsed,
            Parsed::Run(Invocation {
                url: DEFAULT_URL.into(),
                token: Some("t".into()),
                command: Command::Abort("42".into())
            })
        );
        assert_eq!(parse_line("--help").unwrap(), Parsed::Help);
    }

    #[test]
    fn bad_command_lines_say_what_is_wrong() {
        assert_eq!(parse_line(""), Err(UsageError::NoCommand));
        assert_eq!(parse_line("frobnicate"), Err(UsageError::UnknownCommand("frobnicate".into())));
        assert_eq!(parse_line("show"), Err(UsageError::MissingValue("show".into())));
        assert_eq!(parse_line("list --colour"), Err(UsageError::UnknownOption("--colour".into())));
        assert_eq!(
            parse_line("list --stuck soon"),
            Err(UsageError::NotANumber { flag: "--stuck".into(), value: "soon".into() })
        );
        assert_eq!(parse_line("stats now"), Err(UsageError::Unexpected("now".into())));
    }
}
