//! The voter registry: who may vote on a law, who already has, and which of a
//! voter's attempts is the one that counts.
//!
//! The registry holds the eligible set, loaded from the shard files before polls
//! open, and for each voter who has voted the attempt counted so far: its
//! ingestion sequence and request id. Deciding a vote tests eligibility and
//! records the attempt in one indivisible step, a Lua script in Redis and one
//! write transaction in the embedded SQLite adapter, so two racing attempts yield
//! exactly one acceptance.
//!
//! **The earliest attempt counts, whatever the order of processing.** The API
//! gives each vote a sequence number before the publish that precedes its 202
//! ([`VoteMessage::sequence`]). After a crash, a requeue or with
//! several validators, a later attempt can be decided before an earlier one; when
//! the earlier one arrives, it takes the voter's place (accepted) and the later
//! one becomes the duplicate, both remembered outcomes changing in the same step.
//! The aggregator applies the same rule to `vote_audit` (the smallest sequence per
//! voter is the row, correcting the count in its transaction) and confirms what it
//! counted here with [`VoterRegistry::restore`], so registry and audit converge on
//! the same attempt. We chose this over per-voter ordered queues because it needs
//! nothing of the broker (any number of validators, any redelivery order) and is
//! proven by the state alone: the outcome is a function of the set of attempts.
//!
//! **Guessing codes is locked out.** Wrong codes are counted per NAS and law
//! ([`LockKey`]); once a limit is reached, every later attempt (by sequence) for
//! that NAS and law is answered `locked`, right code or not, until an
//! administrator lifts it. An attempt made before the lock, still in flight when
//! the guesses were decided, is decided on its own merits: a voter's vote cannot
//! be locked out by guesses sent after it.
//!
//! **A registry that lost its data says so.** Loading writes a marker (how many
//! hashes, when); the registry is *ready* once the voted state has also been
//! rebuilt from `vote_audit` (`referendum::rebuild`). Without a ready marker, deciding
//! fails with [`RegistryError::NotReady`] and nothing changes: validators keep
//! the votes queued and report it, so no voter is told `not_eligible` because
//! Redis restarted empty.
//!
//! The trait returns boxed futures rather than using `async fn` so that it
//! stays object-safe (`Arc<dyn VoterRegistry>`) without extra crates.

use std::future::Future;
use std::pin::Pin;

use crate::domain::vote_messages::{ReviewReason, VoteMessage};
use crate::domain::voter_hash::{LockKey, VoterHash};

/// A boxed, sendable future borrowing the registry.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The result of presenting a vote at the ballot box.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkOutcome {
    /// Eligible, and the voter's earliest attempt so far: counted.
    Accepted,
    /// The voter has an earlier attempt; `attempts` counts repeated attempts
    /// so far, this one included.
    Duplicate { attempts: u64 },
    /// Not in the eligible set (a wrong code, or no such voter).
    NotEligible,
    /// Too many wrong codes for this NAS and law; an administrator must lift it.
    Locked,
}

/// Outcome codes, as stored and as the Redis script returns them.
pub const NOT_ELIGIBLE: i64 = -1;
pub const LOCKED: i64 = -2;
/// The script's answer when the registry is not ready; never stored.
pub const NOT_READY: i64 = -3;

impl MarkOutcome {
    pub fn code(self) -> i64 {
        match self {
            MarkOutcome::Accepted => 0,
            MarkOutcome::Duplicate { attempts } => i64::try_from(attempts).unwrap_or(i64::MAX),
            MarkOutcome::NotEligible => NOT_ELIGIBLE,
            MarkOutcome::Locked => LOCKED,
        }
    }

    pub fn from_code(code: i64) -> Result<Self, RegistryError> {
        match code {
            NOT_ELIGIBLE => Ok(MarkOutcome::NotEligible),
            LOCKED => Ok(MarkOutcome::Locked),
            0 => Ok(MarkOutcome::Accepted),
            attempts if attempts > 0 => Ok(MarkOutcome::Duplicate {
                attempts: attempts.unsigned_abs(),
            }),
            NOT_READY => Err(RegistryError::NotReady),
            other => Err(RegistryError::UnexpectedReply(other)),
        }
    }

    /// The outcome a review message stands for.
    pub fn of_review(reason: ReviewReason, attempts: u64) -> Self {
        match reason {
            ReviewReason::Duplicate => MarkOutcome::Duplicate {
                attempts: attempts.max(1),
            },
            ReviewReason::NotEligible => MarkOutcome::NotEligible,
            ReviewReason::Locked => MarkOutcome::Locked,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The backend (Redis, the embedded database) failed; its detail is in the text.
    #[error("registry backend: {0}")]
    Backend(String),
    #[error("registry returned unexpected value {0}")]
    UnexpectedReply(i64),
    #[error(
        "the voter registry is not ready (lost, or loaded but not yet rebuilt from the audit \
         log): votes stay queued until it is"
    )]
    NotReady,
    #[error("registry: {0}")]
    Corrupt(String),
}

/// A vote as the registry decides it.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub request_id: String,
    pub voter_hash: VoterHash,
    pub lock_key: LockKey,
    pub law_id: String,
    pub sequence: u64,
}

impl From<&VoteMessage> for Attempt {
    fn from(vote: &VoteMessage) -> Self {
        Attempt {
            request_id: vote.request_id.clone(),
            voter_hash: vote.voter_hash,
            lock_key: vote.lock_key,
            law_id: vote.law_id.clone(),
            sequence: vote.sequence,
        }
    }
}

/// The attempt counted for a voter, as `vote_audit` holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted {
    pub voter_hash: VoterHash,
    pub sequence: u64,
    pub request_id: String,
}

/// Where the registry stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Readiness {
    /// No marker: never loaded, or lost (Redis restarted empty).
    Missing,
    /// Loaded, but the voted state is not yet rebuilt from the audit log.
    Loaded,
    /// Loaded and rebuilt: votes are decided.
    Ready,
}

/// The marker and what it says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct RegistryState {
    pub readiness: Readiness,
    /// Hashes loaded, as the loads reported them.
    pub loaded: u64,
}

/// A NAS locked out of one law for wrong codes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct CodeLock {
    pub lock_id: String,
    pub law_id: String,
    pub locked_at: i64,
}

/// How many wrong codes lock a NAS out of a law, by default.
pub const DEFAULT_CODE_ATTEMPTS: u32 = 5;
/// Most locks one listing returns.
pub const MAX_LOCKS_LISTED: usize = 1_000;

/// Storage for the eligible set, the counted attempts and the code locks.
pub trait VoterRegistry: Send + Sync + 'static {
    /// Adds hashes to the eligible set; returns how many were not already in it.
    /// The registry becomes usable only once [`VoterRegistry::finish_load`] says
    /// the load is complete.
    fn load(&self, hashes: Vec<VoterHash>) -> BoxFuture<'_, Result<u64, RegistryError>>;

    /// Writes the marker: a complete load happened now, leaving `loaded` hashes
    /// eligible. A marker written anew (after a loss) is a new generation.
    fn finish_load(&self, loaded: u64) -> BoxFuture<'_, Result<(), RegistryError>>;

    /// The marker's state.
    fn state(&self) -> BoxFuture<'_, Result<RegistryState, RegistryError>>;

    /// Decides each attempt in order, remembering each outcome under its request
    /// id; a request decided before gets its outcome back and changes nothing.
    /// `max_wrong_codes` wrong codes lock a NAS out of a law. Fails with
    /// [`RegistryError::NotReady`], changing nothing, unless the marker is ready.
    fn decide(
        &self,
        attempts: Vec<Attempt>,
        max_wrong_codes: u32,
    ) -> BoxFuture<'_, Result<Vec<MarkOutcome>, RegistryError>>;

    /// Records attempts the audit log counted, by the same earliest-wins rule,
    /// without eligibility checks: the aggregator's confirmation, and the rebuild.
    fn restore(&self, counted: Vec<Counted>) -> BoxFuture<'_, Result<(), RegistryError>>;

    /// Remembers outcomes decided elsewhere for requests that have none here.
    fn restore_outcomes(
        &self,
        outcomes: Vec<(String, MarkOutcome)>,
    ) -> BoxFuture<'_, Result<(), RegistryError>>;

    /// Takes the right to rebuild the marker's generation for a while; false if
    /// another process holds it or there is no marker.
    fn begin_rebuild(&self) -> BoxFuture<'_, Result<bool, RegistryError>>;

    /// Marks a loaded registry ready and ends the rebuild lease (no effect on a
    /// missing marker, or on one loaded anew since the lease was taken).
    fn mark_ready(&self) -> BoxFuture<'_, Result<(), RegistryError>>;

    /// The outcome remembered for a request, if any.
    fn outcome(
        &self,
        request_id: String,
    ) -> BoxFuture<'_, Result<Option<MarkOutcome>, RegistryError>>;

    /// [`VoterRegistry::outcome`] for many requests at once, in order.
    fn outcomes(
        &self,
        request_ids: Vec<String>,
    ) -> BoxFuture<'_, Result<Vec<Option<MarkOutcome>>, RegistryError>>;

    /// The size of the eligible set.
    fn eligible_count(&self) -> BoxFuture<'_, Result<u64, RegistryError>>;

    /// Locked NAS–law pairs (at most [`MAX_LOCKS_LISTED`]) and how many there are.
    fn locks(&self) -> BoxFuture<'_, Result<(Vec<CodeLock>, u64), RegistryError>>;

    /// Lifts a lock and forgets its wrong codes; false if there was none.
    fn lift_lock(&self, lock: LockKey) -> BoxFuture<'_, Result<bool, RegistryError>>;
}

/// How long a request's outcome stays answerable: the referendum, its recounts and
/// appeals (the audit and rejection logs keep them for good).
pub const OUTCOME_TTL_SECS: u64 = 60 * 24 * 3600;

impl From<&Counted> for Attempt {
    fn from(counted: &Counted) -> Self {
        Attempt {
            request_id: counted.request_id.clone(),
            voter_hash: counted.voter_hash,
            lock_key: LockKey(counted.voter_hash),
            law_id: String::new(),
            sequence: counted.sequence,
        }
    }
}

/// The marker's readiness from its `loaded` count (absent: no marker) and flag.
pub fn state_of(loaded: Option<u64>, ready: bool) -> RegistryState {
    let readiness = match (loaded, ready) {
        (None, _) => Readiness::Missing,
        (Some(_), false) => Readiness::Loaded,
        (Some(_), true) => Readiness::Ready,
    };
    RegistryState {
        readiness,
        loaded: loaded.unwrap_or(0),
    }
}
