//! What the clients of the other services' REST APIs ([`crate::stock`], [`crate::payment`]) share: the base URL,
//! checked once at start, the HTTP client with its timeout, and building a request URL from path segments, each
//! percent-encoded, so that an ID taken from a client's request stays one segment whatever it holds.

use std::time::Duration;

use reqwest::Url;

/// How long a call to another service may take before the request that needed it fails with 503.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Another service, reached over HTTP.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    /// The client every call goes through (one connection pool per service).
    pub(crate) http: reqwest::Client,
    base: Url,
}

impl Peer {
    /// The service at `base_url` (`http://host:port`, the gateway or the service itself), configured as
    /// `variable`, which a bad value's error names.
    pub(crate) fn new(variable: &str, base_url: &str) -> anyhow::Result<Self> {
        let base = Url::parse(base_url).map_err(|e| anyhow::anyhow!("{variable} {base_url:?} is not a URL: {e}"))?;
        if base.cannot_be_a_base() {
            anyhow::bail!("{variable} {base_url:?} cannot be a base URL");
        }
        let http = reqwest::Client::builder().timeout(CALL_TIMEOUT).build()?;
        Ok(Self { http, base })
    }

    /// `{base}/{segments…}`, each segment percent-encoded as one.
    pub(crate) fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_become_one_encoded_path_segment() {
        let peer = Peer::new("STOCK_URL", "http://stock:8003").unwrap();
        assert_eq!(peer.url(&["stock", "find", "42"]).as_str(), "http://stock:8003/stock/find/42");
        assert_eq!(peer.url(&["stock", "find", "a/b?c"]).as_str(), "http://stock:8003/stock/find/a%2Fb%3Fc");
        let behind_a_prefix = Peer::new("STOCK_URL", "http://gateway/api/").unwrap();
        assert_eq!(behind_a_prefix.url(&["stock", "find", "7"]).as_str(), "http://gateway/api/stock/find/7");
    }

    #[test]
    fn a_base_url_must_be_a_url() {
        let err = Peer::new("PAYMENT_URL", "not a url").unwrap_err();
        assert!(err.to_string().contains("PAYMENT_URL"), "{err}");
        assert!(Peer::new("STOCK_URL", "mailto:stock@example.com").is_err());
    }
}
