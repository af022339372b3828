//! The one thing payment-svc asks order-svc to do, over its REST API: cancel an order. `/payment/cancel` of an
//! order paid by a checkout does not refund the checkout's payment itself, which would leave the order paid and
//! its stock taken; it has order-svc run the cancellation saga, which refunds the payment, gives the stock back
//! and marks the order unpaid, each once, and answers when that is done.

use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;

/// How long order-svc may take to cancel an order. Longer than its own checkout timeout (30 s by default), which
/// bounds how long it waits for the cancellation saga, so that its answer, not ours, ends a slow cancel.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(40);

/// Why order-svc did not cancel the order.
#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    /// order-svc refused, with this client-error status and reason (the checkout is in progress, no such order).
    #[error("{error}")]
    Refused {
        /// order-svc's status, a 4xx.
        status: u16,
        /// order-svc's `error`.
        error: String,
    },
    /// order-svc could not be reached, or failed.
    #[error("order service: {0}")]
    Unavailable(String),
}

/// Asks order-svc to cancel orders.
#[derive(Debug, Clone)]
pub struct OrderClient {
    http: reqwest::Client,
    base: Url,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
}

impl OrderClient {
    /// A client of the order-svc at `base_url` (`http://host:port`, the gateway or the service itself).
    pub fn new(base_url: &str) -> anyhow::Result<Self> {
        let base = Url::parse(base_url).map_err(|e| anyhow::anyhow!("ORDER_URL {base_url:?} is not a URL: {e}"))?;
        if base.cannot_be_a_base() {
            anyhow::bail!("ORDER_URL {base_url:?} cannot be a base URL");
        }
        let http = reqwest::Client::builder().timeout(CANCEL_TIMEOUT).build()?;
        Ok(Self { http, base })
    }

    /// Has order-svc cancel `order_id` and waits until the cancellation is done.
    pub async fn cancel(&self, order_id: &str) -> Result<(), CancelError> {
        let url = self.cancel_url(order_id);
        let response = self.http.post(url).send().await.map_err(|e| CancelError::Unavailable(e.to_string()))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        if status.is_client_error() {
            let error = match response.json::<ErrorBody>().await {
                Ok(body) => body.error,
                Err(_) => format!("order-svc refused to cancel order {order_id} with {status}"),
            };
            return Err(CancelError::Refused { status: status.as_u16(), error });
        }
        Err(CancelError::Unavailable(format!("answered {status} to the cancel of order {order_id}")))
    }

    /// `{base}/orders/cancel/{order_id}`, with the ID percent-encoded as one path segment.
    fn cancel_url(&self, order_id: &str) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().extend(["orders", "cancel", order_id]);
        }
        url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_ids_become_one_encoded_path_segment() {
        let client = OrderClient::new("http://order:8001").unwrap();
        assert_eq!(client.cancel_url("42").as_str(), "http://order:8001/orders/cancel/42");
        assert_eq!(client.cancel_url("a/b?c").as_str(), "http://order:8001/orders/cancel/a%2Fb%3Fc");
        let behind_a_prefix = OrderClient::new("http://gateway/api/").unwrap();
        assert_eq!(behind_a_prefix.cancel_url("7").as_str(), "http://gateway/api/orders/cancel/7");
    }

    #[test]
    fn an_order_url_must_be_a_url() {
        assert!(OrderClient::new("not a url").is_err());
        assert!(OrderClient::new("mailto:order@example.com").is_err());
    }
}
