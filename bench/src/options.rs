//! Command-line options of `loadgen`, parsed by hand (the tool has few flags and we avoid a parser dependency).

use std::time::Duration;

/// Text printed for `--help`.
pub const USAGE: &str = "\
loadgen: the WDM course's checkout stress test against a running system.

USAGE: loadgen [OPTIONS]

  --url URL              base URL of the gateway (default http://127.0.0.1:8000)
  --init                 batch_init stock, users and orders before the run (resets paid orders)
  --items N              items created by --init and read by --check (default 100000)
  --users N              users (default 100000)
  --orders N             orders; checkouts pick a random one of 0..N (default 100000)
  --stock N              starting stock per item (default 1000000)
  --credit N             starting credit per user (default 1000000)
  --price N              price per item (default 1)
  --mode closed|rate     closed loop of --clients, or open loop at --rate (default closed)
  --clients N            concurrent clients in closed mode (default 64)
  --rate R               checkouts per second in rate mode
  --duration SECS        measured time; 0 skips the load phase (default 30)
  --warmup SECS          time before the measurement that is not counted (default 5)
  --timeout SECS         per-request timeout (default 30)
  --max-in-flight N      rate mode: requests in flight before new ones are dropped and counted (default 2000)
  --check                after the run, check stock and credit conservation over all entities; exit 1 on FAIL
  --check-concurrency N  concurrent GETs of the check (default 256)
  --out PATH             JSON result file (default bench-result.json)
  --help                 this text
";

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

/// Why the command line was not understood.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum OptionsError {
    /// `--help` was given; not an error, but parsing stops.
    #[error("help requested")]
    Help,
    /// A flag nobody knows.
    #[error("unknown option '{0}' (see --help)")]
    Unknown(String),
    /// A flag that needs a value came last.
    #[error("option {0} needs a value")]
    MissingValue(String),
    /// A value that does not parse or is out of range.
    #[error("invalid value '{value}' for {flag}: {reason}")]
    Invalid {
        /// The flag.
        flag: String,
        /// What was given.
        value: String,
        /// What was expected.
        reason: &'static str,
    },
}

impl Options {
    /// Parses the arguments after the program name.
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Options, OptionsError> {
        let mut url = "http://127.0.0.1:8000".to_owned();
        let mut init = false;
        let mut data =
            DataSet { items: 100_000, users: 100_000, orders: 100_000, stock: 1_000_000, credit: 1_000_000, price: 1 };
        let mut mode_name = "closed".to_owned();
        let mut clients = 64usize;
        let mut rate: Option<f64> = None;
        let mut duration = 30.0;
        let mut warmup = 5.0;
        let mut timeout = 30.0;
        // Each request in flight holds two gateway connections (client and upstream); 2,000 stays within an nginx
        // of 2 workers with 4,096 connections each, so overload shows up as counted drops, not as gateway resets.
        let mut max_in_flight = 2_000usize;
        let mut check = false;
        let mut check_concurrency = 256usize;
        let mut out = "bench-result.json".to_owned();

        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or_else(|| OptionsError::MissingValue(flag.clone()));
            match flag.as_str() {
                "--help" | "-h" => return Err(OptionsError::Help),
                "--init" => init = true,
                "--check" => check = true,
                "--url" => url = value()?.trim_end_matches('/').to_owned(),
                "--out" => out = value()?,
                "--mode" => mode_name = value()?,
                "--items" => data.items = positive(&flag, &value()?)?,
                "--users" => data.users = positive(&flag, &value()?)?,
                "--orders" => data.orders = positive(&flag, &value()?)?,
                "--stock" => data.stock = whole(&flag, &value()?)?,
                "--credit" => data.credit = whole(&flag, &value()?)?,
                "--price" => data.price = whole(&flag, &value()?)?,
                "--clients" => clients = to_usize(&flag, positive(&flag, &value()?)?)?,
                "--max-in-flight" => max_in_flight = to_usize(&flag, positive(&flag, &value()?)?)?,
                "--check-concurrency" => check_concurrency = to_usize(&flag, positive(&flag, &value()?)?)?,
                "--rate" => rate = Some(seconds(&flag, &value()?, false)?),
                "--duration" => duration = seconds(&flag, &value()?, true)?,
                "--warmup" => warmup = seconds(&flag, &value()?, true)?,
                "--timeout" => timeout = seconds(&flag, &value()?, false)?,
                _ => return Err(OptionsError::Unknown(flag)),
            }
        }

        let mode = match (mode_name.as_str(), rate) {
            ("closed", _) => Mode::Closed { clients },
            ("rate", Some(per_second)) => Mode::Rate { per_second },
            ("rate", None) => return Err(OptionsError::MissingValue("--rate (needed by --mode rate)".to_owned())),
            _ => {
                return Err(OptionsError::Invalid {
                    flag: "--mode".to_owned(),
                    value: mode_name,
                    reason: "closed or rate",
                })
            }
        };
        Ok(Options {
            url,
            init,
            data,
            mode,
            duration: Duration::from_secs_f64(duration),
            warmup: Duration::from_secs_f64(warmup),
            timeout: Duration::from_secs_f64(timeout),
            max_in_flight,
            check,
            check_concurrency,
            out,
        })
    }
}

fn whole(flag: &str, value: &str) -> Result<u64, OptionsError> {
    value.parse().map_err(|_| invalid(flag, value, "a non-negative whole number"))
}

fn positive(flag: &str, value: &str) -> Result<u64, OptionsError> {
    match whole(flag, value)? {
        0 => Err(invalid(flag, value, "a number above 0")),
        n => Ok(n),
    }
}

fn to_usize(flag: &str, n: u64) -> Result<usize, OptionsError> {
    usize::try_from(n).map_err(|_| invalid(flag, &n.to_string(), "a smaller number"))
}

/// A finite, non-negative number of seconds (or a rate); zero only when `zero_ok`.
fn seconds(flag: &str, value: &str, zero_ok: bool) -> Result<f64, OptionsError> {
    let parsed: f64 = value.parse().map_err(|_| invalid(flag, value, "a number"))?;
    let in_range = parsed.is_finite() && parsed < 1e9 && (parsed > 0.0 || (zero_ok && parsed == 0.0));
    if in_range {
        Ok(parsed)
    } else {
        Err(invalid(flag, value, if zero_ok { "a number >= 0" } else { "a number > 0" }))
    }
}

fn invalid(flag: &str, value: &str, reason: &'static str) -> OptionsError {
    OptionsError::Invalid { flag: flag.to_owned(), value: value.to_owned(), reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options, OptionsError> {
        Options::parse(args.iter().map(|s| s.to_string()))
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
        assert!(matches!(parse(&["--mode", "rate"]), Err(OptionsError::MissingValue(_))));
    }

    #[test]
    fn bad_values_are_refused_with_the_flag_named() {
        assert!(
            matches!(parse(&["--clients", "0"]), Err(OptionsError::Invalid { ref flag, .. }) if flag == "--clients")
        );
        assert!(matches!(parse(&["--duration", "-1"]), Err(OptionsError::Invalid { .. })));
        assert!(matches!(parse(&["--rate", "NaN", "--mode", "rate"]), Err(OptionsError::Invalid { .. })));
        assert!(matches!(parse(&["--mode", "open"]), Err(OptionsError::Invalid { .. })));
        assert_eq!(parse(&["--frobnicate"]).unwrap_err(), OptionsError::Unknown("--frobnicate".to_owned()));
        assert_eq!(parse(&["--out"]).unwrap_err(), OptionsError::MissingValue("--out".to_owned()));
    }
}
