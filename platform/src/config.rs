//! Settings come from the environment, with defaults that suit a local run. Each service gathers its own in its
//! `config.rs` with these helpers, once at start, and logs them.

use std::{fmt::Display, str::FromStr};

use anyhow::{Context, Result};

/// The variable `name`, or `default` when it is unset or empty.
pub fn string(name: &str, default: &str) -> String {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => value,
        _ => default.to_owned(),
    }
}

/// The variable `name` parsed as `T`, or `default` when it is unset or empty. A value that does not parse is an
/// error naming the variable, so a typo stops the service at start instead of being ignored.
pub fn parse<T>(name: &str, default: T) -> Result<T>
where
    T: FromStr,
    T::Err: Display,
{
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => {
            value.parse().map_err(|e| anyhow::anyhow!("{e}")).with_context(|| format!("{name}={value:?} is not valid"))
        }
        _ => Ok(default),
    }
}

/// `url` with any password replaced, for logging.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.find(':') {
                Some(colon) => format!("{}{}:***{}", &url[..scheme_end + 3], &credentials[..colon], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden_from_logs() {
        assert_eq!(redact_url("postgres://app:secret@db:5432/stock"), "postgres://app:***@db:5432/stock");
        assert_eq!(redact_url("amqp://localhost:5672/%2f"), "amqp://localhost:5672/%2f");
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        std::env::set_var("PLATFORM_TEST_BAD_NUMBER", "twelve");
        let err = parse::<u32>("PLATFORM_TEST_BAD_NUMBER", 1).unwrap_err();
        assert!(format!("{err:#}").contains("PLATFORM_TEST_BAD_NUMBER"));
    }
}
