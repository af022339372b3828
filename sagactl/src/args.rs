//! The command line, parsed with clap's derive API into an [`Invocation`].

use std::ffi::OsString;

use clap::{Args, Parser, Subcommand};

/// The coordinator when neither `--url` nor `SAGACTL_URL` says otherwise.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8004";

/// The command line as clap reads it; [`parse`] adds what the environment says.
#[derive(Debug, Parser)]
#[command(
    name = "sagactl",
    about = "List, inspect, retry and abort checkout sagas through the coordinator's admin API."
)]
struct Cli {
    /// the coordinator (default $SAGACTL_URL, else http://127.0.0.1:8004)
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// the admin token (default $ADMIN_TOKEN; none: loopback access)
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
    #[command(subcommand)]
    command: Command,
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
#[derive(Debug, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// sagas, newest first
    List(ListFilter),
    /// one saga: request, state and timeline
    Show {
        /// the saga
        saga_id: String,
    },
    /// re-send the saga's unanswered commands now
    Retry {
        /// the saga
        saga_id: String,
    },
    /// undo whatever the saga did, then fail it
    Abort {
        /// the saga
        saga_id: String,
    },
    /// how many sagas are in each status
    Stats,
    /// messages waiting in the dead-letter queue, decoded (they stay there); or replay or discard one
    DeadLetters {
        /// at most this many
        #[arg(long, value_name = "N")]
        limit: Option<u64>,
        #[command(subcommand)]
        action: Option<DeadLetterAction>,
    },
    /// send every dead letter back to the queue it died in
    ReplayDeadLetters,
}

/// What `dead-letters` does to one message, named by the ID its listing shows.
#[derive(Debug, PartialEq, Eq, Subcommand)]
pub enum DeadLetterAction {
    /// send this dead letter back to the queue it died in; the others stay
    Replay {
        /// the message's ID, as listed
        id: String,
    },
    /// remove this dead letter for good (it is kept in the audit log)
    Discard {
        /// the message's ID, as listed
        id: String,
    },
}

/// The flags of `list`, passed to the server as they are: it validates them.
#[derive(Debug, Default, PartialEq, Eq, Args)]
pub struct ListFilter {
    /// only sagas in this status (needs_attention, executing, compensating, completed, failed, cancelling,
    /// cancelled)
    #[arg(long, value_name = "S")]
    pub status: Option<String>,
    /// only unfinished sagas unchanged for at least SECS seconds
    #[arg(long, value_name = "SECS")]
    pub stuck: Option<u64>,
    /// only the sagas of this order
    #[arg(long, value_name = "ID")]
    pub order: Option<String>,
    /// only the sagas of this user
    #[arg(long, value_name = "ID")]
    pub user: Option<String>,
    /// at most this many
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// skip this many first
    #[arg(long, value_name = "N")]
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

/// Parses the command line `args`, program name first; `env` looks up `SAGACTL_URL` and `ADMIN_TOKEN`. `--help`
/// and a command line that is not understood come back as clap's error, which prints itself with the right exit
/// status (`Error::exit`).
pub fn parse<I, T>(args: I, env: impl Fn(&str) -> Option<String>) -> Result<Invocation, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = Cli::try_parse_from(args)?;
    let url = cli.url.or_else(|| env("SAGACTL_URL")).unwrap_or_else(|| DEFAULT_URL.to_owned());
    let token = cli.token.or_else(|| env("ADMIN_TOKEN")).filter(|t| !t.is_empty());
    Ok(Invocation { url: url.trim_end_matches('/').to_owned(), token, command: cli.command })
}

#[cfg(test)]
mod tests {
    use clap::error::ErrorKind;

    use super::*;

    fn parse_line(line: &str) -> Result<Invocation, clap::Error> {
        let args = std::iter::once("sagactl").chain(line.split_whitespace());
        parse(args, |name| match name {
            "ADMIN_TOKEN" => Some("from-env".to_owned()),
            _ => None,
        })
    }

    fn refusal(line: &str) -> ErrorKind {
        parse_line(line).expect_err("refused").kind()
    }

    #[test]
    fn a_list_with_every_filter() {
        let invocation =
            parse_line("--url http://h:1/ list --status executing --stuck 30 --order o --user u --limit 5 --offset 2")
                .unwrap();
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
            Invocation {
                url: DEFAULT_URL.into(),
                token: Some("t".into()),
                command: Command::Abort { saga_id: "42".into() }
            }
        );
        assert_eq!(refusal("--help"), ErrorKind::DisplayHelp);
        assert_eq!(refusal("help"), ErrorKind::DisplayHelp);
    }

    #[test]
    fn bad_command_lines_say_what_is_wrong() {
        assert_eq!(refusal(""), ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand);
        assert_eq!(refusal("frobnicate"), ErrorKind::InvalidSubcommand);
        assert_eq!(refusal("show"), ErrorKind::MissingRequiredArgument);
        assert_eq!(refusal("list --colour"), ErrorKind::UnknownArgument);
        assert_eq!(refusal("list --stuck soon"), ErrorKind::ValueValidation);
        assert_eq!(refusal("stats now"), ErrorKind::UnknownArgument);
        assert_eq!(refusal("dead-letters replay"), ErrorKind::MissingRequiredArgument);
        assert_eq!(refusal("dead-letters burn m-1"), ErrorKind::InvalidSubcommand);
    }

    #[test]
    fn dead_letters_are_listed_replayed_or_discarded_one_by_one() {
        let command = |line| parse_line(line).unwrap().command;
        assert_eq!(command("dead-letters"), Command::DeadLetters { limit: None, action: None });
        assert_eq!(command("dead-letters --limit 3"), Command::DeadLetters { limit: Some(3), action: None });
        assert_eq!(
            command("dead-letters replay sha256:ab"),
            Command::DeadLetters { limit: None, action: Some(DeadLetterAction::Replay { id: "sha256:ab".into() }) }
        );
        assert_eq!(
            command("dead-letters discard m-1"),
            Command::DeadLetters { limit: None, action: Some(DeadLetterAction::Discard { id: "m-1".into() }) }
        );
    }
}
