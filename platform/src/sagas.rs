//! The one question the participants (stock-svc, payment-svc) ask the coordinator over HTTP: how many checkout
//! sagas have not ended. `batch_init` asks it before it overwrites stock or credit, because a saga still running
//! would later take from, or give back to, levels that are no longer the ones it started from.

use std::time::Duration;

use reqwest::{StatusCode, Url};
use serde::Deserialize;

/// How long the coordinator may take to answer before `batch_init` gives up with 503. `batch_init` holds its
/// rows locked meanwhile, so this is kept short.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a `batch_init` waits for unfinished sagas to end before it locks its rows and asks for the last time:
/// sagas end within seconds, so a `batch_init` right after a burst of checkouts succeeds instead of answering 409.
pub const BATCH_INIT_PATIENCE: Duration = Duration::from_secs(10);
/// How often the count is asked again while waiting.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The coordinator could not say how many sagas are unfinished.
#[derive(Debug, thiserror::Error)]
#[error("the coordinator cannot tell whether checkout sagas are unfinished: {0}")]
pub struct Unanswered(String);

impl From<Unanswered> for crate::http::ApiError {
    fn from(e: Unanswered) -> Self {
        tracing::warn!(error = %e, "batch_init cannot ask the coordinator");
        Self::Unavailable(e.to_string())
    }
}

/// Asks the coordinator about its sagas.
#[derive(Debug, Clone)]
pub struct CoordinatorClient {
    http: reqwest::Client,
    unfinished_url: Url,
}

#[derive(Deserialize)]
struct Unfinished {
    unfinished: u64,
}

impl CoordinatorClient {
    /// A client of the coordinator at `base_url` (`http://host:port`).
    pub fn new(base_url: &str) -> anyhow::Result<Self> {
        let mut url =
            Url::parse(base_url).map_err(|e| anyhow::anyhow!("COORDINATOR_URL {base_url:?} is not a URL: {e}"))?;
        url.path_segments_mut()
            .map_err(|()| anyhow::anyhow!("COORDINATOR_URL {base_url:?} cannot be a base URL"))?
            .pop_if_empty()
            .extend(["internal", "sagas", "unfinished"]);
        let http = reqwest::Client::builder().timeout(ASK_TIMEOUT).build()?;
        Ok(Self { http, unfinished_url: url })
    }

    /// Waits, up to `patience`, until no checkout saga is unfinished, and returns how many are left (0, or the
    /// count when the patience ran out). Holds no lock: the caller asks again under its locks before it writes.
    pub async fn wait_until_none_unfinished(&self, patience: Duration) -> Result<u64, Unanswered> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let unfinished = self.unfinished_sagas().await?;
            if unfinished == 0 || tokio::time::Instant::now() >= deadline {
                return Ok(unfinished);
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// How many checkout sagas are not yet in a terminal state.
    pub async fn unfinished_sagas(&self) -> Result<u64, Unanswered> {
        let response =
            self.http.get(self.unfinished_url.clone()).send().await.map_err(|e| Unanswered(e.to_string()))?;
        match response.status() {
            StatusCode::OK => {
                let answer: Unfinished =
                    response.json().await.map_err(|e| Unanswered(format!("unreadable answer: {e}")))?;
                Ok(answer.unfinished)
            }
            status => Err(Unanswered(format!("it answered {status}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_question_goes_to_the_internal_route_under_the_base_url() {
        let client = CoordinatorClient::new("http://coordinator:8004").unwrap();
        assert_eq!(client.unfinished_url.as_str(), "http://coordinator:8004/internal/sagas/unfinished");
        let behind_a_prefix = CoordinatorClient::new("http://gateway/saga/").unwrap();
        assert_eq!(behind_a_prefix.unfinished_url.as_str(), "http://gateway/saga/internal/sagas/unfinished");
    }

    #[test]
    fn a_coordinator_url_must_be_a_url() {
        assert!(CoordinatorClient::new("not a url").is_err());
        assert!(CoordinatorClient::new("mailto:coordinator@example.com").is_err());
    }
}
