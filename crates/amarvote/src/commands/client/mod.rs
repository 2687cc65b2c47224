//! The HTTP client of the commands that talk to a server (`demo --server`, `guardian`,
//! `record`, `bench election`) and of the tests: JSON in and out, the bearer token, 429s
//! waited out, and every other non-2xx answer an error that keeps its status.
//! [`election`] adds the election API's operations, typed with the server's own request and
//! response types.

mod election;

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;

/// An answer other than 2xx, with the server's error (the one `ErrorBody` shape).
#[derive(Debug, thiserror::Error)]
#[error("{what}: HTTP {status}: {message}")]
pub struct Refused {
    /// The path asked.
    pub what: String,
    pub status: u16,
    pub message: String,
    /// The request field at fault, when the server named one.
    pub field: Option<String>,
}

impl Refused {
    /// The refusal inside an error from this client; panics on any other error (for tests,
    /// which assert on the status rather than on words).
    pub fn of(error: anyhow::Error) -> Refused {
        error
            .downcast::<Refused>()
            .unwrap_or_else(|other| panic!("not a refusal by the server: {other:#}"))
    }
}

/// A thin JSON client that turns every non-2xx answer into an error quoting the server.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    pub fn new(base: &str) -> Client {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .timeout(Duration::from_secs(120))
            .build()
            .expect("client");
        Client {
            http,
            base: base.trim_end_matches('/').to_string(),
        }
    }

    /// Sends a request, with the bearer token if any; a non-2xx answer is an error
    /// quoting the server's message. A 429 is retried after the server's `Retry-After`
    /// (or a growing pause when it names none), up to `MAX_THROTTLED_RETRIES` times.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        token: Option<&str>,
        what: &str,
    ) -> Result<reqwest::Response> {
        let request = match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let mut attempt = 0;
        let response = loop {
            let again = request.try_clone();
            let response = request_of(again, &self.base)?
                .send()
                .await
                .with_context(|| format!("cannot reach {}", self.base))?;
            if response.status() != reqwest::StatusCode::TOO_MANY_REQUESTS
                || attempt == MAX_THROTTLED_RETRIES
            {
                break response;
            }
            tokio::time::sleep(throttled_pause(&response, attempt)).await;
            attempt += 1;
        };
        let status = response.status();
        if !status.is_success() {
            let body: Value = response.json().await.unwrap_or(Value::Null);
            return Err(Refused {
                what: what.to_owned(),
                status: status.as_u16(),
                message: body["error"]
                    .as_str()
                    .unwrap_or("no error message")
                    .to_owned(),
                field: body["field"].as_str().map(str::to_owned),
            }
            .into());
        }
        Ok(response)
    }

    /// The server's address.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Result<Value> {
        let request = self.http.post(self.url(path)).json(body);
        let response = self.send(request, token, path).await?;
        Ok(response.json().await.unwrap_or(Value::Null))
    }

    /// Posts a body that is already JSON text (reference-format ballots, key-ceremony records).
    pub async fn post_text(&self, path: &str, token: &str, body: String) -> Result<Value> {
        let request = self
            .http
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body);
        let response = self.send(request, Some(token), path).await?;
        Ok(response.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> Result<Value> {
        self.get_json(path, None).await
    }

    pub async fn get_authorized(&self, path: &str, token: &str) -> Result<Value> {
        self.get_json(path, Some(token)).await
    }

    async fn get_json(&self, path: &str, token: Option<&str>) -> Result<Value> {
        let response = self
            .send(self.http.get(self.url(path)), token, path)
            .await?;
        Ok(response.json().await.unwrap_or(Value::Null))
    }

    /// The body as text (reference JSON, kept exactly as the server wrote it).
    pub async fn get_text(&self, path: &str, token: Option<&str>) -> Result<String> {
        let response = self
            .send(self.http.get(self.url(path)), token, path)
            .await?;
        Ok(response.text().await?)
    }
}

/// How often a client waits out a 429 before it gives up.
const MAX_THROTTLED_RETRIES: u32 = 10;

fn request_of(
    request: Option<reqwest::RequestBuilder>,
    base: &str,
) -> Result<reqwest::RequestBuilder> {
    request.with_context(|| format!("a request to {base} has a body that cannot be sent twice"))
}

/// The server's `Retry-After` (seconds, at most 30), or 0.5 s doubling per attempt (at
/// most 8 s); a random tenth is added so throttled clients do not return in step.
fn throttled_pause(response: &reqwest::Response, attempt: u32) -> Duration {
    let asked = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s.min(30)));
    let base = asked.unwrap_or_else(|| Duration::from_millis(500 << attempt.min(4)));
    let mut jitter = [0u8; 1];
    openssl::rand::rand_bytes(&mut jitter).expect("the system random generator works");
    base + base.mul_f64(f64::from(jitter[0]) / 2550.0)
}
