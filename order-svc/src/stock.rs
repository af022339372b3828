//! The client of stock-svc's REST API that order-svc needs: the current price of an item, read when the item is
//! added to an order. Stock itself is not looked at here; the checkout saga takes it.

use reqwest::StatusCode;
use serde::Deserialize;

use crate::peer::Peer;

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
    peer: Peer,
}

#[derive(Deserialize)]
struct FoundItem {
    price: u64,
}

impl StockClient {
    /// A client of the stock-svc at `base_url` (`http://host:port`, the gateway or the service itself).
    pub fn new(base_url: &str) -> anyhow::Result<Self> {
        Ok(Self { peer: Peer::new("STOCK_URL", base_url)? })
    }

    /// The current price of one unit of `item_id`.
    pub async fn price(&self, item_id: &str) -> Result<u64, PriceError> {
        let url = self.peer.url(&["stock", "find", item_id]);
        let response = self.peer.http.get(url).send().await.map_err(|e| PriceError::Unavailable(e.to_string()))?;
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
}
