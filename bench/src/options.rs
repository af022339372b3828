//! Command-line options of `loadgen`, parsed with clap's derive API into [`Options`].

use std::time::Duration;

use clap::{builder::RangedU64ValueParser, Parser, ValueEnum};

/// How checkouts are issued.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// A fixed number of clients, each sending its next checkout when the previous one is answered.
    Closed {
        /// Number of concurrent clients.
        clients: usize,
    },
    /// Checkouts at a fixed arrival rate, regardless of how fast the system answers.
    Rate {
        /// Checkouts per second.
        per_second: f64,
    },
}

/// Sizes of the data set, used both to create it and to know what it started with.
#[derive(Debug, Clone, Copy)]
pub struct DataSet {
    /// Number of items.
    pub items: u64,
    /// Number of users.
    pub users: u64,
    /// Number of orders.
    pub orders: u64,
    /// Starting stock of each item.
    pub stock: u64,
    /// Starting credit of each user.
    pub credit: u64,
    /// Price of each item.
    pub price: u64,
}

/// Everything `loadgen` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// Base URL of the gateway, without a trailing slash.
    pub url: String,
    /// Whether to batch_init the data set first.
    pub init: bool,
    /// Data set sizes.
    pub data: DataSet,
    /// How load is generated.
    pub mode: Mode,
    /// Measured duration; zero means no load phase.
    pub duration: Duration,
    /// Unmeasured time before the measurement.
    pub warmup: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Rate mode: how many requests may be outstanding before new arrivals are dropped.
    pub max_in_flight: usize,
    /// Whether to run the conservation check after the load.
    pub check: bool,
    /// Concurrent GETs of the check.
    pub check_concurrency: usize,
    /// Where the JSON result goes.
    pub out: String,
}

/// What the command line says, as clap reads it; [`Options::parse`] turns it into [`Options`].
#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    about = "loadgen: the WDM course's checkout stress test against a running system.",
    allow_negative_numbers = true
)]
struct Args {
    /// base URL of the gateway
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8000")]
    url: String,
    /// batch_init stock, users and orders before the run (resets paid orders)
    #[arg(long)]
    init: bool,
    /// items created by --init and read by --check
    #[arg(long, value_name = "N", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    items: u64,
    /// users
    #[arg(long, value_name = "N", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    users: u64,
    /// orders; checkouts pick a random one of 0..N
    #[arg(long, value_name = "N", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    orders: u64,
    /// starting stock per item
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    stock: u64,
    /// starting credit per user
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    credit: u64,
    /// price per item
    #[arg(long, value_name = "N", default_value_t = 1)]
    price: u64,
    /// closed loop of --clients, or open loop at --rate
    #[arg(long, value_enum, default_value_t = ModeName::Closed)]
    mode: ModeName,
    /// concurrent clients in closed mode
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = above_zero_count())]
    clients: usize,
    /// checkouts per second in rate mode
    #[arg(long, value_name = "R", required_if_eq("mode", "rate"), value_parser = above_zero)]
    rate: Option<f64>,
    /// measured time; 0 skips the load phase
    #[arg(long, value_name = "SECS", default_value_t = 30.0, value_parser = zero_or_more)]
    duration: f64,
    /// time before the measurement that is not counted
    #[arg(long, value_name = "SECS", default_value_t = 5.0, value_parser = zero_or_more)]
    warmup: f64,
    /// per-request timeout
    #[arg(long, value_name = "SECS", default_value_t = 30.0, value_parser = above_zero)]
    timeout: f64,
    /// rate mode: requests in flight before new ones are dropped and counted
    // Each request in flight holds two gateway connections (client and upstream); 2,000 stays within an nginx
    // of 2 workers with 4,096 connections each, so overload shows up as counted drops, not as gateway resets.
    #[arg(long, value_name = "N", default_value_t = 2_000, value_parser = above_zero_count())]
    max_in_flight: usize,
    /// after the run, check stock and credit conservation over all entities; exit 1 on FAIL
    #[arg(long)]
    check: bool,
    /// concurrent GETs of the check
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = above_zero_count())]
    check_concurrency: usize,
    /// JSON result file
    #[arg(long, value_name = "PATH", default_value = "bench-result.json")]
    out: String,
}

/// The values of `--mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ModeName {
    // No doc comments: clap would print them as a long list in `--help`.
    Closed,
    Rate,
}

impl Options {
    /// Parses the command line `args`, program name first. `--help` and a command line that is not understood
    /// come back as clap's error, which prints itself with the right exit status (`Error::exit`).
    pub fn parse<I, T>(args: I) -> Result<Options, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let args = Args::try_parse_from(args)?;
        let mode = match (args.mode, args.rate) {
            (ModeName::Rate, Some(per_second)) => Mode::Rate { per_second },
            // clap demands --rate with --mode rate.
            (ModeName::Closed, _) | (ModeName::Rate, None) => Mode::Closed { clients: args.clients },
        };
        let data = DataSet {
            items: args.items,
            users: args.users,
            orders: args.orders,
            stock: args.stock,
            credit: args.credit,
            price: args.price,
        };
        Ok(Options {
            url: args.url.trim_end_matches('/').to_owned(),
            init: args.init,
            data,
            mode,
            duration: Duration::from_secs_f64(args.duration),
            warmup: Duration::from_secs_f64(args.warmup),
            timeout: Duration::from_secs_f64(args.timeout),
            max_in_flight: args.max_in_flight,
            check: args.check,
            check_concurrency: args.check_concurrency,
            out: args.out,
        })
    }
}

/// A count above 0 that fits a `usize`.
fn above_zero_count() -> RangedU64ValueParser<usize> {
    RangedU64ValueParser::new().range(1..)
}

/// A finite number of seconds (or a rate) above 0.
fn above_zero(value: &str) -> Result<f64, String> {
    seconds(value, false)
}

/// A finite number of seconds of 0 or more.
fn zero_or_more(value: &str) -> Result<f64, String> {
    seconds(value, true)
}

/// A finite, non-negative number below 10^9; zero only when `zero_ok`.
fn seconds(value: &str, zero_ok: bool) -> Result<f64, String> {
    let parsed: f64 = value.parse().map_err(|_| "not a number".to_owned())?;
    let in_range = parsed.is_finite() && parsed < 1e9 && (parsed > 0.0 || (zero_ok && parsed == 0.0));
    if in_range {
        Ok(parsed)
    } else {
        Err(if zero_ok { "not a number >= 0" } else { "not a number > 0" }.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use clap::error::ErrorKind;

    use super::*;

    fn parse(args: &[&str]) -> Result<Options, clap::Error> {
        Options::parse(std::iter::once("loadgen").chain(args.iter().copied()))
    }

    fn refusal(args: &[&str]) -> ErrorKind {
        parse(args).expect_err("refused").kind()
    }

    #[test]
    fn defaults_are_the_course_stress_test() {
        let options = parse(&[]).unwrap();
        assert_eq!(options.url, "http://127.0.0.1:8000");
        assert_eq!(options.mode, Mode::Closed { clients: 64 });
        assert_eq!(options.data.orders, 100_000);
        assert_eq!(options.data.stock, 1_000_000);
        assert_eq!(options.duration, Duration::from_secs(30));
        assert_eq!(options.warmup, Duration::from_secs(5));
        assert_eq!(options.timeout, Duration::from_secs(30));
        assert_eq!((options.max_in_flight, options.check_concurrency), (2_000, 256));
        assert_eq!(options.out, "bench-result.json");
        assert!(!options.init && !options.check);
    }

    #[test]
    fn rate_mode_takes_its_rate() {
        let options = parse(&["--mode", "rate", "--rate", "500", "--duration", "10", "--url", "http://h:1/"]).unwrap();
        assert_eq!(options.mode, Mode::Rate { per_second: 500.0 });
        assert_eq!(options.duration, Duration::from_secs(10));
        assert_eq!(options.url, "http://h:1");
    }

    #[test]
    fn rate_mode_without_a_rate_is_refused() {
        assert_eq!(refusal(&["--mode", "rate"]), ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn bad_values_are_refused_with_the_flag_named() {
        let error = parse(&["--clients", "0"]).expect_err("refused");
        assert_eq!(error.kind(), ErrorKind::ValueValidation);
        assert!(error.to_string().contains("--clients"), "{error}");
        assert_eq!(refusal(&["--duration", "-1"]), ErrorKind::ValueValidation);
        assert_eq!(refusal(&["--rate", "NaN", "--mode", "rate"]), ErrorKind::ValueValidation);
        assert_eq!(refusal(&["--mode", "open"]), ErrorKind::InvalidValue);
        assert_eq!(refusal(&["--frobnicate"]), ErrorKind::UnknownArgument);
        assert_eq!(refusal(&["--out"]), ErrorKind::InvalidValue);
        assert_eq!(refusal(&["--help"]), ErrorKind::DisplayHelp);
    }
}
