//! Per-client rate limiting of the ballot endpoints (GCRA, the `governor` crate): at most
//! `ballot_rate_limit` requests per second from one client, with bursts of as many,
//! answered 429 with `Retry-After` beyond it, so one client cannot crowd out the others or
//! guess credentials quickly. A polling place puts many voters behind one address: the
//! limit is a setting, and behind a reverse proxy the client is the address the proxy
//! names in `X-Forwarded-For` — believed only from the configured trusted proxies. An IPv6
//! client is counted per /64 (one subscriber's block). Limits are per process: N API
//! replicas behind a balancer allow N times the rate.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use super::edge::{ApiError, AppState};

/// Requests per client address, by the generic cell rate algorithm.
pub struct RateLimiter {
    limiter: DefaultKeyedRateLimiter<Option<IpAddr>>,
    clock: DefaultClock,
    checks: AtomicU64,
}

/// Forget idle clients once this many are tracked, looking every so many requests
/// (a sweep walks the whole table: not on every request).
const SWEEP_ABOVE: usize = 100_000;
const SWEEP_EVERY: u64 = 4_096;

/// The address a client is counted under: itself, or its IPv6 /64.
fn subscriber(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => {
            let mut segments = v6.segments();
            segments[4..].fill(0);
            IpAddr::from(segments)
        }
    }
}

impl RateLimiter {
    /// `per_second` requests a second per client (0 is taken as 1).
    pub fn new(per_second: u32) -> RateLimiter {
        let rate = NonZeroU32::new(per_second.max(1)).expect("at least 1");
        RateLimiter {
            limiter: DefaultKeyedRateLimiter::keyed(Quota::per_second(rate)),
            clock: DefaultClock::default(),
            checks: AtomicU64::new(0),
        }
    }

    /// Counts a request; Err(how long to wait) if the client is over its rate.
    /// IPv6 clients are counted per /64, the smallest block one subscriber gets.
    pub fn check(&self, client: Option<IpAddr>) -> Result<(), Duration> {
        let checks = self.checks.fetch_add(1, Ordering::Relaxed);
        if checks.is_multiple_of(SWEEP_EVERY) && self.limiter.len() > SWEEP_ABOVE {
            self.limiter.retain_recent();
        }
        self.limiter
            .check_key(&client.map(subscriber))
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

/// The client's address: the peer's, or, when the peer is a trusted proxy, the last
/// address in `X-Forwarded-For` that is not itself a trusted proxy.
pub fn client_address(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    trusted_proxies: &[IpAddr],
) -> Option<IpAddr> {
    let peer = peer?;
    if !trusted_proxies.contains(&peer) {
        return Some(peer);
    }
    let forwarded: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    // From the right: each trusted proxy names the one before it. An entry that is not an
    // address ends the walk (what lies left of it may be the client's own invention).
    let mut client = peer;
    for entry in forwarded.into_iter().rev() {
        let Ok(address) = entry.parse::<IpAddr>() else {
            break;
        };
        client = address;
        if !trusted_proxies.contains(&address) {
            break;
        }
    }
    Some(client)
}

/// A 429 in the one error shape, saying when to come back.
pub fn too_many_requests(wait: Duration, message: &str) -> Response {
    ApiError {
        status: StatusCode::TOO_MANY_REQUESTS,
        retry_after: Some(wait),
        message: message.into(),
        field: None,
    }
    .into_response()
}

/// The ballot routes' middleware state: the service, and the limiter the HTTP edge keeps
/// (a use case never sees it).
pub type BallotLimit = (AppState, std::sync::Arc<RateLimiter>);

pub async fn limit_ballots(
    State((app, limiter)): State<BallotLimit>,
    request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let client = client_address(peer, request.headers(), &app.settings.trusted_proxies);
    match limiter.check(client) {
        Ok(()) => next.run(request).await,
        Err(wait) => {
            app.metrics.ballot_rejected("rate_limited");
            too_many_requests(wait, "too many ballot requests from this client; slow down")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_the_limit_is_refused_per_client_with_a_time_to_wait() {
        let limiter = RateLimiter::new(3);
        let a = Some(IpAddr::from([10, 0, 0, 1]));
        let b = Some(IpAddr::from([10, 0, 0, 2]));
        assert!((0..3).all(|_| limiter.check(a).is_ok()));
        let wait = limiter.check(a).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(334),
            "{wait:?}"
        );
        assert!(
            limiter.check(b).is_ok(),
            "another client has its own budget"
        );
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_subscriber: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert!((0..3).all(|_| limiter.check(Some(one)).is_ok()));
        assert!(
            limiter.check(Some(same_subscriber)).is_err(),
            "an IPv6 /64 is one client"
        );
    }

    #[test]
    fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
        let proxy = IpAddr::from([10, 0, 0, 9]);
        let voter = IpAddr::from([203, 0, 113, 7]);
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            "198.51.100.1, 203.0.113.7".parse().unwrap(),
        );
        assert_eq!(client_address(Some(proxy), &headers, &[proxy]), Some(voter));
        let stranger = IpAddr::from([192, 0, 2, 1]);
        assert_eq!(
            client_address(Some(stranger), &headers, &[proxy]),
            Some(stranger),
            "a client cannot pick its own address"
        );
        assert_eq!(
            client_address(Some(proxy), &HeaderMap::new(), &[proxy]),
            Some(proxy)
        );
    }
}
