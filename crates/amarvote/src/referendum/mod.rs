//! The referendum pipeline's stages and use cases: national votes where each law is
//! answered `oui` or `non`, at a scale (millions of voters) where ElectionGuard's
//! per-ballot encryption is not needed and a simpler design suffices.
//!
//! Eligibility is proven with a NAS and a one-time mailed code per law. Those are
//! reduced to keyed [`VoterHash`]es at the HTTP edge (`api::referendum`); the
//! [`hashgen`] step turns the mailing list into shard files of hashes, and the voter
//! registry ([`crate::ports::voter_registry`]) records, atomically, which eligible
//! hashes have voted.
//!
//! A vote flows API → validation stream → [`validate`] → aggregation stream →
//! [`aggregate`] → the vote store's count and audit; rejected attempts take the review
//! stream to [`review`]. The streams are the vote-queue port
//! ([`crate::ports::vote_queue`]), on SQLite in the single-process embedded mode and on
//! RabbitMQ when each stage runs as its own scaled role (both assembled in
//! `commands::referendum`).
//!
//! [`VoterHash`]: crate::domain::voter_hash::VoterHash

pub mod aggregate;
pub mod hashgen;
pub mod laws;
pub mod rebuild;
pub mod review;
pub mod stage;
pub mod validate;

/// The referendum's limits against floods and code guessing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoteLimits {
    /// Requests per second, and burst, from one client address on every
    /// referendum route (a polling place behind one address needs more).
    pub per_client: u32,
    /// Reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Wrong codes after which a NAS is locked out of a law.
    pub max_wrong_codes: u32,
}

/// A voter needs a handful of requests (a vote, a few status polls); 20 a second
/// leaves room for retries and stops a guesser or a flood at once.
pub const DEFAULT_PER_CLIENT_RATE: u32 = 20;

impl Default for VoteLimits {
    fn default() -> Self {
        VoteLimits {
            per_client: DEFAULT_PER_CLIENT_RATE,
            trusted_proxies: Vec::new(),
            max_wrong_codes: crate::ports::voter_registry::DEFAULT_CODE_ATTEMPTS,
        }
    }
}
