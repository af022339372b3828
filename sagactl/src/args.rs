//! The command line, parsed with clap's derive API into an [`Invocation`].

use std::ffi::OsString;

use clap::{Args, Parser, Subcommand, ValueEnum};

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
    /// the name the audit log records for what you do (default $SAGACTL_OPERATOR, else $USER)
    #[arg(long, value_name = "NAME")]
    operator: Option<String>,
    /// how to print answers: tables for people, or the API's JSON for scripts
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table, global = true)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

/// How answers are printed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned tables and key/value blocks.
    #[default]
    Table,
    /// The admin API's JSON answer, unchanged (pretty-printed), for scripts.
    Json,
}

/// Where to send which command.
#[derive(Debug, PartialEq, Eq)]
pub struct Invocation {
    /// The coordinator's base URL, without a trailing slash.
    pub url: String,
    /// The bearer token, if any.
    pub token: Option<String>,
    /// Who the audit log should say acted (sent as `X-Operator`), if anyone.
    pub operator: Option<String>,
    /// How to print the answer.
    pub output: Output,
    /// What to do.
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// sagas, filtered, sorted (newest first unless asked otherwise) and paged, with the total
    List(Box<ListFilter>),
    /// one saga: request, state, failure reason, attempts, trace ID, allowed actions and timeline
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
    /// retry or abort every saga a filter matches, after a dry run and a confirmation
    Bulk {
        /// what to do
        #[command(subcommand)]
        action: BulkAction,
    },
    /// failed and needs-attention sagas grouped by reason
    Failures,
    /// what operators did, newest first
    Audit(AuditFilter),
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

/// Which sagas: the filter flags `list` and `bulk` share, passed to the server as they are (it validates them).
#[derive(Debug, Default, PartialEq, Eq, Args)]
pub struct Selection {
    /// only sagas in this status, or in any of several separated by commas (needs_attention, executing,
    /// compensating, completed, failed, cancelling, cancelled)
    #[arg(long, value_name = "S[,S...]")]
    pub status: Option<String>,
    /// only sagas failing or failed for this reason (out_of_stock, unknown_item, insufficient_credit,
    /// unknown_user, cancelled, aborted, timed_out; see `sagactl failures`)
    #[arg(long, value_name = "KIND")]
    pub reason: Option<String>,
    /// only unfinished sagas unchanged for at least SECS seconds
    #[arg(long, value_name = "SECS")]
    pub stuck: Option<u64>,
    /// only the sagas of this order
    #[arg(long, value_name = "ID")]
    pub order: Option<String>,
    /// only the sagas of this user
    #[arg(long, value_name = "ID")]
    pub user: Option<String>,
    /// only sagas created at or after this (RFC 3339, e.g. 2026-12-02T04:00:00Z)
    #[arg(long, value_name = "TIME")]
    pub created_after: Option<String>,
    /// only sagas created before this (RFC 3339)
    #[arg(long, value_name = "TIME")]
    pub created_before: Option<String>,
}

impl Selection {
    /// The flags given, by the admin API's names (`stuck_for`, `order_id`, `user_id`, ...).
    fn given(&self) -> Vec<(&'static str, String)> {
        let texts = [
            ("status", &self.status),
            ("reason", &self.reason),
            ("stuck_for", &self.stuck.map(|s| s.to_string())),
            ("order_id", &self.order),
            ("user_id", &self.user),
            ("created_after", &self.created_after),
            ("created_before", &self.created_before),
        ];
        texts.into_iter().filter_map(|(key, value)| value.clone().map(|v| (key, v))).collect()
    }
}

/// The flags of `list`, passed to the server as they are: it validates them.
#[derive(Debug, Default, PartialEq, Eq, Args)]
pub struct ListFilter {
    #[command(flatten)]
    pub selection: Selection,
    /// only sagas last changed at or after this (RFC 3339)
    #[arg(long, value_name = "TIME")]
    pub updated_after: Option<String>,
    /// only sagas last changed before this (RFC 3339)
    #[arg(long, value_name = "TIME")]
    pub updated_before: Option<String>,
    /// sort by created_at (default) or updated_at
    #[arg(long, value_name = "KEY")]
    pub sort: Option<String>,
    /// desc (default, newest first) or asc
    #[arg(long, value_name = "DIR")]
    pub direction: Option<String>,
    /// at most this many (default 100, at most 1000)
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// skip this many first
    #[arg(long, value_name = "N")]
    pub offset: Option<u64>,
}

impl ListFilter {
    /// The filter as the query of `GET /admin/sagas`.
    pub fn query(&self) -> Vec<(&'static str, String)> {
        let mut query = self.selection.given();
        let mut add = |key, value: Option<String>| query.extend(value.map(|v| (key, v)));
        add("updated_after", self.updated_after.clone());
        add("updated_before", self.updated_before.clone());
        add("sort", self.sort.clone());
        add("order", self.direction.clone());
        add("limit", self.limit.map(|l| l.to_string()));
        add("offset", self.offset.map(|o| o.to_string()));
        query
    }
}

/// What a bulk command does, to which sagas.
#[derive(Debug, PartialEq, Eq, Subcommand)]
pub enum BulkAction {
    /// re-send the unanswered commands of every matching saga
    Retry(BulkArgs),
    /// undo whatever every matching saga did, then fail it
    Abort(BulkArgs),
}

impl BulkAction {
    /// The action's name in the admin API's path, and its flags.
    pub fn parts(&self) -> (&'static str, &BulkArgs) {
        match self {
            Self::Retry(args) => ("retry", args),
            Self::Abort(args) => ("abort", args),
        }
    }
}

/// The filter and safety flags of `bulk retry|abort`; the server validates the filter (and refuses an empty one).
#[derive(Debug, Default, PartialEq, Eq, Args)]
pub struct BulkArgs {
    #[command(flatten)]
    pub selection: Selection,
    /// at most this many sagas, oldest first (server default 100, at most 1000)
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// only show which sagas would be touched
    #[arg(long)]
    pub dry_run: bool,
    /// do not ask for confirmation
    #[arg(long, short = 'y')]
    pub yes: bool,
}

impl BulkArgs {
    /// The body of `POST /admin/sagas/bulk/{action}`.
    pub fn body(&self, dry_run: bool) -> serde_json::Value {
        let mut filter: serde_json::Map<String, serde_json::Value> =
            self.selection.given().into_iter().map(|(key, value)| (key.to_owned(), value.into())).collect();
        // A number in the body, where the query has it as text.
        if let Some(stuck) = self.selection.stuck {
            filter.insert("stuck_for".into(), stuck.into());
        }
        let mut body = serde_json::json!({ "filter": filter, "dry_run": dry_run });
        if let Some(limit) = self.limit {
            body["limit"] = limit.into();
        }
        body
    }
}

/// The flags of `audit`, passed to the server as they are: it validates them.
#[derive(Debug, Default, PartialEq, Eq, Args)]
pub struct AuditFilter {
    /// only actions on this saga
    #[arg(long, value_name = "ID")]
    pub saga: Option<String>,
    /// only this operator's
    #[arg(long, value_name = "NAME")]
    pub actor: Option<String>,
    /// only this action (retry, abort, bulk_retry, bulk_abort)
    #[arg(long, value_name = "A")]
    pub action: Option<String>,
    /// at most this many
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// skip this many first
    #[arg(long, value_name = "N")]
    pub offset: Option<u64>,
}

impl AuditFilter {
    /// The filter as the query of `GET /admin/audit`.
    pub fn query(&self) -> Vec<(&'static str, String)> {
        let mut query = Vec::new();
        let mut add = |key, value: Option<String>| query.extend(value.map(|v| (key, v)));
        add("saga_id", self.saga.clone());
        add("actor", self.actor.clone());
        add("action", self.action.clone());
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
    let operator =
        cli.operator.or_else(|| env("SAGACTL_OPERATOR")).or_else(|| env("USER")).filter(|name| !name.is_empty());
    Ok(Invocation {
        url: url.trim_end_matches('/').to_owned(),
        token,
        operator,
        output: cli.output,
        command: cli.command,
    })
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
        let invocation = parse_line(
            "--url http://h:1/ list --status failed,needs_attention --reason timed_out --stuck 30 --order o --user u \
             --created-after 2026-12-02T04:00:00Z --created-before c --updated-after ua --updated-before ub \
             --sort updated_at --direction asc --limit 5 --offset 2",
        )
        .unwrap();
        assert_eq!(invocation.url, "http://h:1");
        assert_eq!(invocation.token.as_deref(), Some("from-env"));
        assert_eq!(invocation.output, Output::Table);
        let Command::List(filter) = invocation.command else { panic!("not a list") };
        let expected = [
            ("status", "failed,needs_attention"),
            ("reason", "timed_out"),
            ("stuck_for", "30"),
            ("order_id", "o"),
            ("user_id", "u"),
            ("created_after", "2026-12-02T04:00:00Z"),
            ("created_before", "c"),
            ("updated_after", "ua"),
            ("updated_before", "ub"),
            ("sort", "updated_at"),
            ("order", "asc"),
            ("limit", "5"),
            ("offset", "2"),
        ];
        assert_eq!(filter.query(), expected.map(|(k, v)| (k, v.to_owned())));
    }

    #[test]
    fn json_output_is_asked_for_before_or_after_the_command() {
        for line in ["-o json stats", "--output json stats", "stats -o json", "list --output=json"] {
            assert_eq!(parse_line(line).unwrap().output, Output::Json, "{line}");
        }
        assert_eq!(refusal("-o yaml stats"), ErrorKind::InvalidValue);
    }

    #[test]
    fn defaults_and_flags_before_the_command() {
        let parsed = parse_line("--token t --operator olga abort 42").unwrap();
        assert_eq!(
            parsed,
            Invocation {
                url: DEFAULT_URL.into(),
                token: Some("t".into()),
                operator: Some("olga".into()),
                output: Output::Table,
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

    #[test]
    fn a_bulk_abort_with_its_filter_and_flags() {
        let parsed = parse_line("bulk abort --status executing --stuck 60 --limit 5 --yes").unwrap();
        let Command::Bulk { action } = parsed.command else { panic!("not a bulk command") };
        let (name, args) = action.parts();
        assert_eq!((name, args.yes, args.dry_run), ("abort", true, false));
        assert_eq!(
            args.body(true),
            serde_json::json!({"filter": {"status": "executing", "stuck_for": 60}, "dry_run": true, "limit": 5})
        );
        assert_eq!(refusal("bulk"), ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand);
        assert_eq!(refusal("bulk delete"), ErrorKind::InvalidSubcommand);
        assert_eq!(refusal("bulk retry --stuck soon"), ErrorKind::ValueValidation);
    }
}
