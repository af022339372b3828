//! The client of payment-svc's REST API that order-svc needs: whether a user exists, asked when an order is
//! created for them. Credit is not looked at here; the checkout saga charges it.

use reqwest::StatusCode;

use crate::peer::Peer;

/// Why a user could not be confirmed.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// payment-svc does not know the user.
    #[error("user {0} does not exist")]
    UnknownUser(String),
    /// payment-svc could not be reached or gave an answer that says neither.
    #[error("payment service: {0}")]
    Unavailable(String),
}

/// Asks payment-svc about users.
#[derive(Debug, Clone)]
pub struct PaymentClient {
    peer: Peer,
}

impl PaymentClient {
    /// A client of the payment-svc at `base_url` (`http://host:port`, the gateway or the service itself).
    pub fn new(base_url: &str) -> anyhow::Result<Self> {
        Ok(Self { peer: Peer::new("PAYMENT_URL", base_url)? })
    }

    /// Succeeds when payment-svc knows `user_id`.
    pub async fn check_user(&self, user_id: &str) -> Result<(), UserError> {
        let url = self.peer.url(&["payment", "find_user", user_id]);
        let response = self.peer.http.get(url).send().await.map_err(|e| UserError::Unavailable(e.to_string()))?;
        match response.status() {
            StatusCode::OK => Ok(()),
            StatusCode::NOT_FOUND => Err(UserError::UnknownUser(user_id.to_owned())),
            status => Err(UserError::Unavailable(format!("answered {status} for user {user_id}"))),
        }
    }
}
