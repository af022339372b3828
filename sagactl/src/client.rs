//! The admin API over HTTP: a bearer token when there is one, JSON answers, and every 4xx/5xx turned into an
//! error that carries the server's own message.

use serde_json::Value;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The coordinator could not be reached, or answered something that is not JSON.
    #[error("cannot talk to the coordinator at {url}: {source}")]
    Transport {
        /// Where.
        url: String,
        /// What went wrong.
        source: reqwest::Error,
    },
    /// The coordinator refused: the status and its `error` message.
    #[error("the coordinator answered {status}: {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The server's message.
        message: String,
    },
}

/// A client of one coordinator.
pub struct Client {
    base: String,
    token: Option<String>,
    operator: Option<String>,
    http: reqwest::Client,
}

impl Client {
    /// A client of the coordinator at `base`, presenting `token` if given, and naming itself `operator` (the
    /// `X-Operator` header the audit log records) if given.
    pub fn new(base: &str, token: Option<&str>, operator: Option<&str>) -> Self {
        Self {
            base: base.to_owned(),
            token: token.map(str::to_owned),
            operator: operator.map(str::to_owned),
            http: reqwest::Client::new(),
        }
    }

    /// `GET path?query`.
    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, Error> {
        self.send(self.http.get(format!("{}{path}", self.base)).query(query)).await
    }

    /// `POST path`.
    pub async fn post(&self, path: &str) -> Result<Value, Error> {
        self.send(self.http.post(format!("{}{path}", self.base))).await
    }

    /// `POST path` with a JSON `body`.
    pub async fn post_json(&self, path: &str, body: &Value) -> Result<Value, Error> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body)).await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value, Error> {
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let request = match &self.operator {
            Some(name) => request.header("x-operator", name),
            None => request,
        };
        let transport = |source| Error::Transport { url: self.base.clone(), source };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let text = response.text().await.map_err(transport)?;
        let body: Option<Value> = serde_json::from_str(&text).ok();
        if status.is_success() {
            return body
                .ok_or_else(|| Error::Refused { status: status.as_u16(), message: format!("not JSON: {text}") });
        }
        let message =
            body.as_ref().and_then(|b| b["error"].as_str()).map_or_else(|| text.trim().to_owned(), str::to_owned);
        Err(Error::Refused { status: status.as_u16(), message })
    }
}

/// What a path segment may hold as it is; everything else is percent-encoded.
const SEGMENT: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b':');

/// `text` percent-encoded for one segment of a URL path (a dead letter's ID may hold any character).
pub fn path_segment(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, SEGMENT).to_string()
}
