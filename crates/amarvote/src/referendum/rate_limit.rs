//! Per-client rate limiting: a token bucket per client IP address.
//!
//! A bucket holds up to `burst` tokens and refills at `per_second`; each
//! request takes one, and a request finding the bucket empty is answered 429.
//! The default is generous, so a load generator on loopback is not throttled
//! unless asked to be. Buckets that have refilled completely carry no state
//! worth keeping and are swept when the table grows, bounding its memory
//! under a flood of distinct addresses.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

/// Sweep full buckets once the table has this many clients.
const SWEEP_AT: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: f64,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            per_second: 1_000_000.0,
            burst: 1_000_000.0,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

pub struct RateLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<Option<IpAddr>, Bucket>>,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> Self {
        RateLimiter {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `client` (`None` when the address is unknown, which
    /// then shares one bucket); false means the request must be refused.
    pub fn allow(&self, client: Option<IpAddr>, now: Instant) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() >= SWEEP_AT {
            buckets.retain(|_, bucket| self.refilled(*bucket, now) < self.limit.burst);
        }
        let bucket = buckets.entry(client).or_insert(Bucket {
            tokens: self.limit.burst,
            at: now,
        });
        let tokens = self.refilled(*bucket, now);
        let allowed = tokens >= 1.0;
        *bucket = Bucket {
            tokens: if allowed { tokens - 1.0 } else { tokens },
            at: now,
        };
        allowed
    }

    fn refilled(&self, bucket: Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        (bucket.tokens + elapsed * self.limit.per_second).min(self.limit.burst)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_client_gets_its_burst_then_the_refill_rate() {
        let limiter = RateLimiter::new(RateLimit {
            per_second: 10.0,
            burst: 3.0,
        });
        let client = Some(IpAddr::from([10, 0, 0, 1]));
        let other = Some(IpAddr::from([10, 0, 0, 2]));
        let start = Instant::now();
        assert!((0..3).all(|_| limiter.allow(client, start)));
        assert!(!limiter.allow(client, start));
        assert!(limiter.allow(other, start), "buckets are per client");
        assert!(limiter.allow(client, start + Duration::from_millis(100)));
        assert!(!limiter.allow(client, start + Duration::from_millis(100)));
    }
}
