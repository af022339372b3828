//! The client of stock-svc's REST API that order-svc needs: the current price of an item, read when the item is
//! added to an order. Stock itself is not looked at here; the checkout saga takes it.

use std::time::Duration;

use reqwest::{StatusCode, Url};
use serde::Deserialize;

/// How long a price lookup may take before the addItem request fails with 503.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Why no price could be had.
#[derive(Debug, thiserror::Error)]
pub enum PriceError {
    /// stock-svc does not know the item.
    #[error("item {0} does not exist")]
    UnknownItem(String),
    /// stock-svc could not be reached or gave an answer that is not a price.
    #[error("stock service: {0}")]
    Unavailable(String),
}

/// Reads item prices from stock-svc.
#[derive(Debug, Clone)]
pub struct StockClient {
    http: reqwest::Client,
    base: Url,
}

#[derive(Deserialize)]
struct FoundItem {
    price: u64,
}

impl StockClient {
    /// A client of the stock-svc at `base_url` (`http://host:port`, the gateway or the service itself).
    pub fn new(base_url: &str) -> anyhow::Result<Self> {
        let base = Url::parse(base_url).map_err(|e| anyhow::anyhow!("STOCK_URL {base_url:?} is not a URL: {e}"))?;
        if base.cannot_be_a_base() {
            anyhow::bail!("STOCK_URL {base_url:?} cannot be a base URL");
        }
        let http = reqwest::Client::builder().timeout(LOOKUP_TIMEOUT).build()?;
        Ok(Self { http, base })
    }

    /// The current price of one unit of `item_id`.
    pub async fn price(&self, item_id: &str) -> Result<u64, PriceError> {
        let url = self.find_url(item_id);
        let response = self.http.get(url).send().await.map_err(|e| PriceError::Unavailable(e.to_string()))?;
        match response.status() {
            StatusCode::OK => {
                let item: FoundItem = response
                    .json()
                    .await
                    .map_err(|e| PriceError::Unavailable(format!("unreadable answer for item {item_id}: {e}")))?;
                Ok(item.price)
            }
            StatusCode::NOT_FOUND => Err(PriceError::UnknownItem(item_id.to_owned())),
            status => Err(PriceError::Unavailable(format!("answered {status} for item {item_id}"))),
        }
    }

    /// `{base}/stock/find/{item_id}`, with the ID percent-encoded as one path segment.
    fn find_url(&self, item_id: &str) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().extend(["stock", "find", item_id]);
        }
        url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_ids_become_one_encoded_path_segment() {
        let client = StockClient::new("http://stock:8003").unwrap();
        assert_eq!(client.find_url("42").as_str(), "http://stock:8003/stock/find/42");
        assert_eq!(client.find_url("a/b?c").as_str(), "http://stock:8003/stock/find/a%2Fb%3Fc");
        let behind_a_prefix = StockClient::new("http://gateway/api/").unwrap();
        assert_eq!(behind_a_prefix.find_url("7").as_str(), "http://gateway/api/stock/find/7");
    }

    #[test]
    fn a_stock_url_must_be_a_url() {
        assert!(StockClient::new("not a url").is_err());
        assert!(StockClient::new("mailto:stock@example.com").is_err());
    }
}
