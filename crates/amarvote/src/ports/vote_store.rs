//! The referendum's vote store: the count, the audit of the attempt that stands for each
//! voter, the logs of rejected and duplicate attempts, the laws, and the ingestion
//! sequence. One adapter (`adapters::vote_tables`) keeps them in SQL tables on SQLite or
//! PostgreSQL.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;

use crate::domain::vote_messages::{ReviewMessage, VoteMessage};
use crate::domain::voter_hash::{Choice, VoterHash};
use crate::ports::voter_registry::{Counted, MarkOutcome};

/// A failure of the store's backend, its detail opaque to the stages.
#[derive(Debug, thiserror::Error)]
#[error("vote store: {message}")]
pub struct VoteStoreError {
    pub message: String,
    /// True when trying again later may succeed (the database was unreachable, busy or
    /// aborted the transaction); false for a refusal that will not change.
    pub transient: bool,
}

/// One law's tally.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct LawCounts {
    pub oui: u64,
    pub non: u64,
}

/// One law's count beside the number of voters its audit holds, read together so that
/// a batch committing meanwhile shows in both or in neither.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LawTally {
    pub counts: LawCounts,
    pub audited: u64,
}

/// A law as the public totals page lists it.
pub struct LawTotals {
    pub law_id: String,
    pub title: String,
    pub counts: LawCounts,
}

/// What one aggregation batch changed.
#[derive(Debug, Default)]
pub struct Recorded {
    /// Votes newly counted per law and choice (an overturned attempt's choice
    /// counts -1).
    pub counted: BTreeMap<(String, Choice), i64>,
    /// The attempts that now stand for their voters, for the registry.
    pub standing: Vec<Counted>,
}

/// One newly recorded duplicate attempt series, merged per voter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DuplicateSeen {
    pub attempts: u64,
    pub first_at: i64,
    pub last_at: i64,
}

#[async_trait]
pub trait VoteStore: Send + Sync + 'static {
    /// Records each vote that is its voter's earliest attempt so far and corrects the
    /// count to match, in one transaction. Every vote of the batch that does not stand
    /// (a later attempt of a voter already counted) is logged as a duplicate, so its
    /// status survives the loss of the registry.
    async fn record_votes(&self, votes: &[VoteMessage]) -> Result<Recorded, VoteStoreError>;

    /// Logs rejected attempts by request id (a replay changes nothing), so their
    /// statuses survive the loss of the registry.
    async fn record_rejections(&self, rejected: &[ReviewMessage]) -> Result<(), VoteStoreError>;

    /// Reserves `n` consecutive ingestion sequence numbers; returns the first. Every
    /// caller of one store gets numbers larger than any reserved before its call began.
    async fn reserve_sequences(&self, n: u64) -> Result<u64, VoteStoreError>;

    /// Adds duplicate attempt series, merged per voter with what is already there.
    async fn record_duplicates(
        &self,
        seen: &BTreeMap<VoterHash, DuplicateSeen>,
    ) -> Result<(), VoteStoreError>;

    /// One law's count so far and its audited voters, from one snapshot.
    async fn results(&self, law_id: &str) -> Result<LawTally, VoteStoreError>;

    /// Voters with duplicate attempts, and the attempts in all.
    async fn duplicate_totals(&self) -> Result<(u64, u64), VoteStoreError>;

    /// Audit rows after voter hash `after` (all of them from `None`), in order, one page
    /// at a time.
    async fn audited_after(&self, after: Option<&str>) -> Result<Vec<Counted>, VoteStoreError>;

    /// Logged rejections after request id `after`, with their outcomes, one page at a time.
    async fn rejections_after(
        &self,
        after: Option<&str>,
    ) -> Result<Vec<(String, MarkOutcome)>, VoteStoreError>;

    /// Adds a law; returns false if it already existed.
    async fn create_law(&self, law_id: &str, title: &str) -> Result<bool, VoteStoreError>;

    /// Every law with its title and counts so far, in creation order.
    async fn laws(&self) -> Result<Vec<LawTotals>, VoteStoreError>;

    async fn law_exists(&self, law_id: &str) -> Result<bool, VoteStoreError>;
}

/// Merges duplicate review messages per voter, ready for
/// [`VoteStore::record_duplicates`].
pub fn merge_duplicates(
    seen: impl IntoIterator<Item = (VoterHash, u64, i64)>,
) -> BTreeMap<VoterHash, DuplicateSeen> {
    let mut merged: HashMap<VoterHash, DuplicateSeen> = HashMap::new();
    for (hash, attempts, at) in seen {
        let series = merged.entry(hash).or_insert(DuplicateSeen {
            attempts,
            first_at: at,
            last_at: at,
        });
        series.attempts = series.attempts.max(attempts);
        series.first_at = series.first_at.min(at);
        series.last_at = series.last_at.max(at);
    }
    merged.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_merge_to_the_highest_count_and_widest_window() {
        let hash = VoterHash::from_bytes([1; 32]);
        let merged = merge_duplicates([(hash, 2, 50), (hash, 1, 10), (hash, 3, 90)]);
        assert_eq!(
            merged[&hash],
            DuplicateSeen {
                attempts: 3,
                first_at: 10,
                last_at: 90
            }
        );
    }
}
