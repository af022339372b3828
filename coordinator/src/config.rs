//! The coordinator's settings, read once from the environment.

use std::{fmt, time::Duration};

use anyhow::{bail, Result};
use platform::{
    amqp::ConsumerSettings,
    config::{parse, string, Defaults, ServiceSettings},
};

/// Everything the coordinator needs to start.
#[derive(Clone)]
pub struct Config {
    /// What every service reads: the admin API's address, the database, the broker and the saga consumer.
    pub service: ServiceSettings,
    /// How long a command may go unanswered before it is sent again (`RETRY_AFTER_MS`); doubles per retry.
    pub retry_after: Duration,
    /// The longest pause between two retries of one saga (`RETRY_MAX_MS`).
    pub retry_max: Duration,
    /// How long a checkout may run before it gives up and compensates (`SAGA_DEADLINE_MS`).
    pub saga_deadline: Duration,
    /// How long a compensation may go without progress before its saga needs attention
    /// (`COMPENSATION_DEADLINE_MS`).
    pub compensation_deadline: Duration,
    /// The bearer token the admin API demands (`ADMIN_TOKEN`); without one, it answers loopback callers only.
    pub admin_token: Option<String>,
    /// A second token that may only read (`ADMIN_READ_TOKEN`): every GET of the admin API and the pages.
    pub admin_read_token: Option<String>,
    /// The names (optionally `name:port`) the admin surface answers to in the `Host` header
    /// (`ADMIN_ALLOWED_HOSTS`, comma-separated; default `127.0.0.1,localhost,[::1]`). The bind address of
    /// `HTTP_ADDR` is always added; see [`Config::admin_hosts`].
    pub admin_allowed_hosts: Vec<String>,
    /// How long a saga that ended (completed, failed, cancelled) is kept after its last change before it is
    /// pruned with its history (`SAGA_RETENTION_HOURS`, default 168; 0 keeps sagas for ever).
    pub saga_retention: Option<Duration>,
    /// How often the pruning runs (`RETENTION_INTERVAL_MS`); a run that pruned a full batch is followed at once
    /// by the next.
    pub retention_interval: Duration,
    /// The most sagas one pruning run deletes, in one short transaction (`RETENTION_BATCH`).
    pub retention_batch: i64,
    /// How long an unfinished saga must go unchanged to count as stuck on the `coordinator_saga_stuck` gauge
    /// (`STUCK_AFTER_SECS`).
    pub stuck_after: Duration,
    /// How often the saga and dead-letter gauges are refreshed (`GAUGE_INTERVAL_MS`).
    pub gauge_interval: Duration,
}

/// The `Host` names the admin surface answers to unless `ADMIN_ALLOWED_HOSTS` says otherwise: loopback only, as
/// a browser names it through `kubectl port-forward` or on the machine itself.
pub const DEFAULT_ADMIN_HOSTS: &str = "127.0.0.1,localhost,[::1]";

impl Config {
    /// When the sagas' unanswered commands are sent again and when the sagas give up.
    pub fn retry_policy(&self) -> crate::engine::RetryPolicy {
        crate::engine::RetryPolicy {
            first: self.retry_after,
            max: self.retry_max,
            deadline: self.saga_deadline,
            compensation_deadline: self.compensation_deadline,
        }
    }

    /// The `Host` allow-list of the admin surface: [`Config::admin_allowed_hosts`] plus the host part of the bind
    /// address (`HTTP_ADDR`), so that a caller naming the address the coordinator listens on is let in.
    pub fn admin_hosts(&self) -> Vec<String> {
        let mut hosts = self.admin_allowed_hosts.clone();
        let addr = &self.service.http_addr;
        let bind = match addr.strip_prefix('[') {
            Some(rest) => rest.split_once(']').map(|(ip, _)| format!("[{ip}]")),
            None => addr.rsplit_once(':').map(|(host, _)| host.to_owned()),
        };
        hosts.extend(bind.map(|host| host.to_ascii_lowercase()).filter(|host| !hosts.contains(host)));
        hosts
    }

    /// Reads the environment, with defaults for a local run.
    pub fn from_env() -> Result<Self> {
        let defaults = Defaults {
            http_port: 8004,
            database: "coordinator",
            http_workers: 1,
            consumer: ConsumerSettings { prefetch: 1024, max_batch: 256, parallel: 1 },
        };
        Self {
            service: ServiceSettings::from_env(defaults)?,
            retry_after: Duration::from_millis(parse("RETRY_AFTER_MS", 2000)?),
            retry_max: Duration::from_millis(parse("RETRY_MAX_MS", 5000)?),
            saga_deadline: Duration::from_millis(parse("SAGA_DEADLINE_MS", 20_000)?),
            compensation_deadline: Duration::from_millis(parse("COMPENSATION_DEADLINE_MS", 300_000)?),
            admin_token: optional("ADMIN_TOKEN"),
            admin_read_token: optional("ADMIN_READ_TOKEN"),
            admin_allowed_hosts: parse_hosts(&string("ADMIN_ALLOWED_HOSTS", DEFAULT_ADMIN_HOSTS))?,
            saga_retention: retention(parse("SAGA_RETENTION_HOURS", 168)?)?,
            retention_interval: Duration::from_millis(parse("RETENTION_INTERVAL_MS", 60_000)?),
            retention_batch: positive("RETENTION_BATCH", parse("RETENTION_BATCH", 1000)?)?,
            stuck_after: Duration::from_secs(parse("STUCK_AFTER_SECS", 60)?),
            gauge_interval: Duration::from_millis(parse("GAUGE_INTERVAL_MS", 15_000)?),
        }
        .checked()
    }

    /// Refuses settings that would make the read-only token an operator one.
    fn checked(self) -> Result<Self> {
        if self.admin_read_token.is_some() && self.admin_read_token == self.admin_token {
            bail!("ADMIN_READ_TOKEN must differ from ADMIN_TOKEN, or it could do everything ADMIN_TOKEN can");
        }
        Ok(self)
    }
}

/// The value of `name`, or none when it is unset or empty.
fn optional(name: &str) -> Option<String> {
    Some(string(name, "")).filter(|value| !value.is_empty())
}

/// `ADMIN_ALLOWED_HOSTS`: comma-separated host names or IP addresses (IPv6 in brackets), each optionally with
/// `:port`, lower-cased; empty means the default.
fn parse_hosts(raw: &str) -> Result<Vec<String>> {
    let raw = if raw.trim().is_empty() { DEFAULT_ADMIN_HOSTS } else { raw };
    raw.split(',')
        .map(str::trim)
        .map(|host| {
            let usable = !host.is_empty()
                && host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
                && !host.starts_with(':');
            if !usable {
                bail!("ADMIN_ALLOWED_HOSTS: {host:?} is not a host name or address (with an optional :port)");
            }
            Ok(host.to_ascii_lowercase())
        })
        .collect()
}

/// `value` of setting `name` if it is at least 1.
/// The longest `SAGA_RETENTION_HOURS` taken: 100 years. PostgreSQL could not subtract a much longer age from now,
/// and every pruning run would fail.
const MAX_RETENTION_HOURS: u64 = 100 * 366 * 24;

/// `SAGA_RETENTION_HOURS` as an age, `None` for 0 (keep every saga).
fn retention(hours: u64) -> Result<Option<Duration>> {
    anyhow::ensure!(
        hours <= MAX_RETENTION_HOURS,
        "SAGA_RETENTION_HOURS={hours} is more than {MAX_RETENTION_HOURS} (100 years); 0 keeps sagas for ever"
    );
    Ok(Some(Duration::from_secs(hours * 3600)).filter(|age| !age.is_zero()))
}

fn positive(name: &str, value: i64) -> Result<i64> {
    anyhow::ensure!(value >= 1, "{name}={value} must be at least 1");
    Ok(value)
}

/// The settings as they may be logged: passwords in URLs and the admin token are hidden.
impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} retry_after={:?} retry_max={:?} saga_deadline={:?} compensation_deadline={:?} admin_token={} \
             admin_read_token={} admin_allowed_hosts={} saga_retention={:?} retention_interval={:?} retention_batch={} \
             stuck_after={:?} gauge_interval={:?}",
            self.service,
            self.retry_after,
            self.retry_max,
            self.saga_deadline,
            self.compensation_deadline,
            if self.admin_token.is_some() { "***" } else { "none" },
            if self.admin_read_token.is_some() { "***" } else { "none" },
            self.admin_allowed_hosts.join(","),
            self.saga_retention,
            self.retention_interval,
            self.retention_batch,
            self.stuck_after,
            self.gauge_interval,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retention_is_hours_up_to_a_hundred_years_and_zero_keeps_everything() {
        assert_eq!(retention(0).unwrap(), None);
        assert_eq!(retention(168).unwrap(), Some(Duration::from_secs(168 * 3600)));
        assert!(retention(MAX_RETENTION_HOURS).is_ok());
        let refused = retention(MAX_RETENTION_HOURS + 1).unwrap_err().to_string();
        assert!(refused.contains("SAGA_RETENTION_HOURS"), "{refused}");
    }

    #[test]
    fn allowed_hosts_are_names_with_an_optional_port() {
        assert_eq!(parse_hosts("").unwrap(), ["127.0.0.1", "localhost", "[::1]"]);
        assert_eq!(parse_hosts(" Admin.Example:8443 , [::1]").unwrap(), ["admin.example:8443", "[::1]"]);
        for bad in ["http://admin.example", "a b", "admin.example/ui", "a,,b", ":8004"] {
            assert!(parse_hosts(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_bind_address_is_always_an_allowed_host() {
        let mut config = Config::from_env().expect("the default configuration");
        config.admin_allowed_hosts = vec!["admin.example".into()];
        for (addr, added) in [("0.0.0.0:8004", "0.0.0.0"), ("[::]:8004", "[::]"), ("Coordinator:8004", "coordinator")] {
            config.service.http_addr = addr.into();
            assert_eq!(config.admin_hosts(), ["admin.example", added], "{addr}");
        }
        config.service.http_addr = "admin.example:8004".into();
        assert_eq!(config.admin_hosts(), ["admin.example"]);
    }
}
