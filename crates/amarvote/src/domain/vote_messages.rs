//! The messages that travel on the vote streams, as JSON.
//!
//! They carry the keyed voter hash, never the NAS or code: a queue is exactly
//! the kind of place (dumps, dead letters, broker UI) where a clear identity
//! would leak.

use serde::{Deserialize, Serialize};

use super::voter_hash::{Choice, LockKey, VoterHash};

/// A submitted vote, on the validation stream and, once accepted, on the
/// aggregation stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteMessage {
    pub request_id: String,
    pub voter_hash: VoterHash,
    /// Wrong codes are counted under this key (the NAS and law, keyed).
    pub lock_key: LockKey,
    pub law_id: String,
    pub vote: Choice,
    /// The ingestion order: allocated before the publish that precedes the
    /// request's 202, so an attempt made after another's 202 has a larger one.
    /// Of one voter's attempts, the smallest is the one counted.
    pub sequence: u64,
    /// When the API accepted it, in milliseconds since the epoch.
    pub received_at: i64,
}

/// Why an attempt went to the review stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewReason {
    Duplicate,
    NotEligible,
    /// Too many wrong codes for this NAS and law: locked until an administrator lifts it.
    Locked,
}

/// A rejected attempt, on the review stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewMessage {
    pub request_id: String,
    pub voter_hash: VoterHash,
    pub law_id: String,
    pub reason: ReviewReason,
    /// The voter's repeated attempts so far, for duplicates.
    pub attempts: u64,
    pub received_at: i64,
}

/// Encodes a message for a stream.
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    serde_json::to_vec(message).expect("vote messages always serialize")
}
