//! The few calls of the course API that the benchmark makes, over one shared HTTP client.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::options::DataSet;

/// Why a call to the system did not give the answer we needed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Connection, timeout or body decoding failure.
    #[error("{url}: {source}")]
    Transport {
        /// The URL called.
        url: String,
        /// What went wrong.
        source: reqwest::Error,
    },
    /// The system answered with a status we did not expect.
    #[error("{url}: HTTP {status}: {body}")]
    Status {
        /// The URL called.
        url: String,
        /// The status received.
        status: u16,
        /// The start of the response body.
        body: String,
    },
}

/// Outcome of one checkout as the client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The system answered with this HTTP status.
    Status(u16),
    /// No HTTP answer.
    Failed(Failure),
}

/// Why a checkout got no HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No answer within `--timeout`.
    Timeout,
    /// The connection could not be opened.
    Connect,
    /// Anything else: reset connection, broken body.
    Other,
}

impl From<&reqwest::Error> for Failure {
    fn from(error: &reqwest::Error) -> Failure {
        if error.is_timeout() {
            Failure::Timeout
        } else if error.is_connect() {
            Failure::Connect
        } else {
            Failure::Other
        }
    }
}

/// An item as `GET /stock/find/{id}` shows it.
#[derive(Debug, Deserialize)]
pub struct Item {
    /// Units in stock.
    pub stock: u64,
}

/// A user as `GET /payment/find_user/{id}` shows it.
#[derive(Debug, Deserialize)]
pub struct User {
    /// Credit left.
    pub credit: u64,
}

/// An order as `GET /orders/find/{id}` shows it.
#[derive(Debug, Deserialize)]
pub struct Order {
    /// Whether its checkout completed.
    pub paid: bool,
    /// `(item_id, quantity)` lines.
    pub items: Vec<(String, u64)>,
    /// Sum of the lines' prices.
    pub total_cost: u64,
}

/// Client of one deployment of the system, reached through its gateway.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
}

/// `batch_init` of 100,000 entities is one large transaction per service; give it far longer than a checkout.
const INIT_TIMEOUT: Duration = Duration::from_secs(600);

impl Api {
    /// A client for the gateway at `base`, keeping up to `connections` idle connections open so that every
    /// concurrent client reuses its own connection instead of reconnecting.
    pub fn new(base: &str, connections: usize, timeout: Duration) -> Result<Api, reqwest::Error> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(connections)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .timeout(timeout)
            .build()?;
        Ok(Api { http, base: base.to_owned() })
    }

    /// Creates items, users and orders `0..n` with the given sizes (stock first, since orders refer to items).
    pub async fn batch_init(&self, data: &DataSet) -> Result<(), ApiError> {
        let DataSet { items, users, orders, stock, credit, price } = *data;
        for path in [
            format!("/stock/batch_init/{items}/{stock}/{price}"),
            format!("/payment/batch_init/{users}/{credit}"),
            format!("/orders/batch_init/{orders}/{items}/{users}/{price}"),
        ] {
            let url = format!("{}{path}", self.base);
            let response = self
                .http
                .post(&url)
                .timeout(INIT_TIMEOUT)
                .send()
                .await
                .map_err(|source| ApiError::Transport { url: url.clone(), source })?;
            expect_success(url, response).await?;
        }
        Ok(())
    }

    /// Checks out an order and reports only the status; the body is drained so that the connection can be reused.
    pub async fn checkout(&self, order_id: u64) -> Answer {
        let url = format!("{}/orders/checkout/{order_id}", self.base);
        match self.http.post(url).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                match response.bytes().await {
                    Ok(_) => Answer::Status(status),
                    Err(error) => Answer::Failed(Failure::from(&error)),
                }
            }
            Err(error) => Answer::Failed(Failure::from(&error)),
        }
    }

    /// `GET /stock/find/{id}`.
    pub async fn item(&self, id: u64) -> Result<Item, ApiError> {
        self.get(format!("/stock/find/{id}")).await
    }

    /// `GET /payment/find_user/{id}`.
    pub async fn user(&self, id: u64) -> Result<User, ApiError> {
        self.get(format!("/payment/find_user/{id}")).await
    }

    /// `GET /orders/find/{id}`.
    pub async fn order(&self, id: u64) -> Result<Order, ApiError> {
        self.get(format!("/orders/find/{id}")).await
    }

    async fn get<T: DeserializeOwned>(&self, path: String) -> Result<T, ApiError> {
        let url = format!("{}{path}", self.base);
        let response =
            self.http.get(&url).send().await.map_err(|source| ApiError::Transport { url: url.clone(), source })?;
        let response = expect_success(url.clone(), response).await?;
        response.json().await.map_err(|source| ApiError::Transport { url, source })
    }
}

async fn expect_success(url: String, response: reqwest::Response) -> Result<reqwest::Response, ApiError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response.text().await.unwrap_or_default();
    Err(ApiError::Status { url, status: status.as_u16(), body: body.chars().take(200).collect() })
}
