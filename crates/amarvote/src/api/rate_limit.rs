//! Per-client rate limiting of the ballot endpoints: at most `ballot_rate_limit`
//! requests per second from one client address (fixed one-second windows), answered
//! 429 beyond it, so one client cannot crowd out the others or guess credentials quickly.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};

/// Requests seen per client in the current window.
#[derive(Default)]
pub struct RateLimiter {
    windows: Mutex<HashMap<Option<IpAddr>, (Instant, u32)>>,
}

impl RateLimiter {
    /// Counts a request; false if the client is over `limit` this second.
    pub fn allow(&self, client: Option<IpAddr>, limit: u32) -> bool {
        let now = Instant::now();
        let mut windows = self.windows.lock().expect("not poisoned");
        if windows.len() > 100_000 {
            windows.retain(|_, (start, _)| now.duration_since(*start).as_secs() < 1);
        }
        let (start, count) = windows.entry(client).or_insert((now, 0));
        if now.duration_since(*start).as_secs() >= 1 {
            *start = now;
            *count = 0;
        }
        *count += 1;
        *count <= limit
    }
}

pub async fn limit_ballots(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if app
        .rate_limiter
        .allow(client, app.settings.ballot_rate_limit)
    {
        next.run(request).await
    } else {
        app.metrics.ballot_rejected("rate_limited");
        ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: "too many ballot requests from this client; slow down".into(),
        }
        .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_the_limit_within_a_second_is_refused_per_client() {
        let limiter = RateLimiter::default();
        let a = Some(IpAddr::from([10, 0, 0, 1]));
        let b = Some(IpAddr::from([10, 0, 0, 2]));
        assert!((0..3).all(|_| limiter.allow(a, 3)));
        assert!(!limiter.allow(a, 3));
        assert!(limiter.allow(b, 3), "another client has its own budget");
    }
}
