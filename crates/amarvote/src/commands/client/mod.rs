//! The HTTP client of the commands that talk to a server (`demo --server`, `guardian`,
//! `record`, `bench election`) and of the tests: JSON in and out, the bearer token, 429s
//! waited out, reads sent again while they get no answer, a write that got none an
//! [`Unanswered`] error, and every other non-2xx answer a [`Refused`] that keeps its status.
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

/// A request the server may never have acted on: the connection failed or was cut, or the
/// answer was 502/503/504 (a proxy without a live server behind it, or a server waiting for
/// its database). Reads are tried again by [`Client`] itself; a caller that writes decides
/// whether sending again is safe.
#[derive(Debug, thiserror::Error)]
#[error("{what}: no answer from {base}: {reason}")]
pub struct Unanswered {
    pub what: String,
    pub base: String,
    pub reason: String,
}

/// How long a read is tried again while it gets no answer.
const READ_PATIENCE: Duration = Duration::from_secs(60);

/// A thin JSON client that turns every non-2xx answer into an error quoting the server.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    /// A client of the server at `base`; it trusts the public roots and the CA that
    /// `AMARVOTE_CA_FILE` names, if any (panics naming the file when it cannot be read).
    pub fn new(base: &str) -> Client {
        let mut http = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .timeout(Duration::from_secs(120));
        if let Some(root) = extra_root().unwrap_or_else(|e| panic!("{e:#}")) {
            http = http.add_root_certificate(root);
        }
        let http = http.build().expect("client");
        Client {
            http,
            base: base.trim_end_matches('/').to_string(),
        }
    }

    /// Sends a request, with the bearer token if any; a non-2xx answer is a [`Refused`]
    /// quoting the server's message. A 429 is retried after the server's `Retry-After` (or
    /// a growing pause when it names none), up to `MAX_THROTTLED_RETRIES` times. A request
    /// that gets no answer (see [`no_answer`]) is sent again if it is a `read`, for up to
    /// `READ_PATIENCE`; otherwise it is an [`Unanswered`] error.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        token: Option<&str>,
        what: &str,
        read: bool,
    ) -> Result<reqwest::Response> {
        let request = match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let started = std::time::Instant::now();
        let mut unanswered = 0;
        loop {
            let again = request_of(request.try_clone(), &self.base)?;
            let (reason, pause) = match self.send_once(again).await {
                Ok(response) if no_answer(&response) => {
                    let pause = throttled_pause(&response, unanswered);
                    (refusal(response, what).await.message, pause)
                }
                Ok(response) if response.status().is_success() => return Ok(response),
                Ok(response) => return Err(refusal(response, what).await.into()),
                Err(e) if is_lost(&e) => (
                    format!("{e:#}"),
                    Duration::from_millis(250 << unanswered.min(4)),
                ),
                Err(e) => return Err(e).with_context(|| format!("cannot reach {}", self.base)),
            };
            if !read || started.elapsed() + pause > READ_PATIENCE {
                let base = self.base.clone();
                return Err(Unanswered {
                    what: what.to_owned(),
                    base,
                    reason,
                }
                .into());
            }
            if unanswered == 0 {
                let base = &self.base;
                tracing::warn!(%what, %reason, "no answer from {base}; trying again for up to {READ_PATIENCE:?}");
            }
            tokio::time::sleep(pause).await;
            unanswered += 1;
        }
    }

    /// One request, with 429s waited out.
    async fn send_once(
        &self,
        request: reqwest::RequestBuilder,
    ) -> reqwest::Result<reqwest::Response> {
        let mut throttled = 0;
        loop {
            let again = request
                .try_clone()
                .expect("the request was cloned once already");
            let response = again.send().await?;
            if response.status() != reqwest::StatusCode::TOO_MANY_REQUESTS
                || throttled == MAX_THROTTLED_RETRIES
            {
                return Ok(response);
            }
            tokio::time::sleep(throttled_pause(&response, throttled)).await;
            throttled += 1;
        }
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
        let response = self.send(request, token, path, false).await?;
        Ok(response.json().await.unwrap_or(Value::Null))
    }

    /// Posts a body that is already JSON text (reference-format ballots, key-ceremony records).
    pub async fn post_text(&self, path: &str, token: &str, body: String) -> Result<Value> {
        let request = self
            .http
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body);
        let response = self.send(request, Some(token), path, false).await?;
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
            .send(self.http.get(self.url(path)), token, path, true)
            .await?;
        Ok(response.json().await.unwrap_or(Value::Null))
    }

    /// The body as text (reference JSON, kept exactly as the server wrote it).
    pub async fn get_text(&self, path: &str, token: Option<&str>) -> Result<String> {
        let response = self
            .send(self.http.get(self.url(path)), token, path, true)
            .await?;
        Ok(response.text().await?)
    }
}

/// The CA named by `AMARVOTE_CA_FILE`, for a client to trust besides the public roots.
pub fn extra_root() -> Result<Option<reqwest::Certificate>> {
    let Some(path) = std::env::var_os("AMARVOTE_CA_FILE") else {
        return Ok(None);
    };
    let pem = std::fs::read(&path)
        .with_context(|| format!("cannot read AMARVOTE_CA_FILE {}", path.to_string_lossy()))?;
    let root = reqwest::Certificate::from_pem(&pem).with_context(|| {
        format!(
            "AMARVOTE_CA_FILE {} is not a PEM certificate",
            path.to_string_lossy()
        )
    })?;
    Ok(Some(root))
}

/// How often a client waits out a 429 before it gives up.
const MAX_THROTTLED_RETRIES: u32 = 10;

/// 502, 503 and 504: a proxy with no live server behind it, a gateway that timed out, or a
/// server that cannot reach its database or is still starting. Nothing was refused.
fn no_answer(response: &reqwest::Response) -> bool {
    matches!(response.status().as_u16(), 502..=504)
}

/// A transport failure a later try may not meet: the connection could not be made, was
/// cut, or timed out. (An unusable URL, say, is not one.)
fn is_lost(error: &reqwest::Error) -> bool {
    error.is_connect() || error.is_timeout() || error.is_request() || error.is_body()
}

/// The server's refusal, with its message when it gave one in the one error shape.
async fn refusal(response: reqwest::Response, what: &str) -> Refused {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    Refused {
        what: what.to_owned(),
        status,
        message: body["error"]
            .as_str()
            .map_or_else(|| format!("HTTP {status}"), str::to_owned),
        field: body["field"].as_str().map(str::to_owned),
    }
}

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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A server on loopback that answers its first `failures` requests 502 (as a proxy with
    /// no live server behind it does), then 200 `{}`; returns its address and a counter.
    async fn flaky_server(failures: usize) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(AtomicUsize::new(0));
        let counter = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                read_request(&mut socket).await;
                let (status, body) = if counter.fetch_add(1, Ordering::SeqCst) < failures {
                    ("502 Bad Gateway", "")
                } else {
                    ("200 OK", "{}")
                };
                let answer = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            }
        });
        (base, seen)
    }

    /// Reads one whole request (headers and `content-length` bytes of body), so that the
    /// answer never races the client's writing.
    async fn read_request(socket: &mut tokio::net::TcpStream) {
        let mut seen = Vec::new();
        let mut buffer = [0u8; 1024];
        loop {
            if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&seen[..end]).to_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                if seen.len() >= end + 4 + length {
                    return;
                }
            }
            match socket.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buffer[..n]),
            }
        }
    }

    #[tokio::test]
    async fn a_read_without_answer_is_sent_again_and_a_write_is_not() {
        let (base, seen) = flaky_server(2).await;
        let client = Client::new(&base);
        client.get("/anything").await.unwrap();
        assert_eq!(seen.load(Ordering::SeqCst), 3, "two 502s, then the answer");

        let (base, seen) = flaky_server(1).await;
        let error = Client::new(&base)
            .post("/cast", None, &serde_json::json!({}))
            .await
            .unwrap_err();
        let unanswered = error.downcast::<Unanswered>().unwrap();
        assert_eq!(unanswered.reason, "HTTP 502");
        assert_eq!(
            seen.load(Ordering::SeqCst),
            1,
            "a write is never sent twice by itself"
        );
    }

    #[tokio::test]
    async fn nobody_listening_is_unanswered_not_refused() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let error = Client::new(&format!("http://127.0.0.1:{port}"))
            .post("/cast", None, &serde_json::json!({}))
            .await
            .unwrap_err();
        assert!(error.is::<Unanswered>(), "{error:#}");
    }
}
