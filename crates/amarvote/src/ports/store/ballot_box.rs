//! The ballot box: the eligibility list, encryption devices and their code chains, pending, cast and challenged ballots, read back in permutation order.

use async_trait::async_trait;

use super::error::StoreError;
use crate::domain::{BallotRow, BallotState};

/// Why a ballot could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum CastError {
    #[error("this voting credential has already been used")]
    AlreadyVoted,
    #[error("the voting credential is not on the eligibility list")]
    NotEligible,
    #[error("a ballot with this id already exists")]
    DuplicateBallot,
    #[error("this ballot is not pending for this voting credential")]
    NotPending,
    #[error("this ballot repeats the ciphertexts of a ballot already in the ballot box (ballot copying)")]
    CopiedBallot,
    #[error("this voting credential has challenged {0} ballots, the most allowed")]
    TooManyChallenges(u64),
    #[error("the ballot's code seed continues the chain of no device this credential registered: register the device, and chain each ballot to that device's last one")]
    BrokenChain,
    #[error("voting is not open for this election")]
    NotOpen,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the chain of ballot codes needs to seal one more ballot: the previous code.
pub type CodeChainer<'a> = &'a (dyn Fn(&str) -> (String, Vec<u8>) + Send + Sync);

/// How a ballot joins the ballot box's code chains.
pub enum ChainLink<'a> {
    /// A ballot the server encrypted, pending until now: the server's own device links it
    /// (`chain` turns its previous code into this ballot's code and final body). Only the
    /// credential that made the pending ballot can record it.
    Server {
        device_id: u64,
        chain: CodeChainer<'a>,
    },
    /// A ballot the voter's device linked itself: its seed must be the hash of a device the
    /// same voter registered (its first ballot) or that device's last code. Insert-only.
    Device {
        seed: &'a str,
        code: &'a str,
        body: &'a [u8],
    },
}

/// What the store checks and keeps up to date when it records a ballot, besides its chain.
pub struct CastRules<'a> {
    /// Per contest, a digest of its ciphertexts: none may repeat in the election.
    pub fingerprints: &'a [String],
    /// The most ballots one credential may challenge.
    pub max_challenges: u64,
    /// A cast ballot's part in the running tally (required for a cast ballot, ignored for
    /// a spoiled one).
    pub tally: Option<TallyContribution<'a>>,
}

/// Given a shard's stored product (none before its first ballot), the product with this
/// contribution taken in; an error says the stored product is corrupt.
pub type TallyFolder<'a> = &'a (dyn Fn(Option<&[u8]>) -> Result<Vec<u8>, String> + Send + Sync);

/// Cast ballots joining one running product of the tally, in the transaction that records them.
pub struct TallyContribution<'a> {
    /// Which product ([`crate::domain::tally_shard`]).
    pub shard: u64,
    /// How many cast ballots the contribution holds.
    pub ballots: u64,
    pub fold: TallyFolder<'a>,
}

/// One running product of the cast ballots (a compact tally input, see
/// `electionguard::tally::TallyLayout`) and how many ballots it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TallyShardRow {
    pub shard: u64,
    pub ballots: u64,
    pub product: Vec<u8>,
}

/// Why cast ballots could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("voting is not open for this election")]
    NotOpen,
    #[error("the first ballot does not continue device {0}'s chain of codes")]
    BrokenChain(u64),
    #[error("only cast ballots with codes are imported")]
    NotCast,
    #[error("the tally contributions hold {held} ballots, the import {imported}")]
    TallyMismatch { held: u64, imported: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A voter on the eligibility list, as the ballot box sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoterStatus {
    /// The ballot this credential cast, if it has.
    pub cast_ballot: Option<String>,
    pub challenges: u64,
    /// Ballots encrypted for it on the server and neither cast nor challenged yet.
    pub pending: u64,
}

/// An encryption device: the server's own, or one a voter or an administrator registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRow {
    pub device_id: u64,
    pub device_hash: String,
    /// The device's reference JSON (`EncryptionDevice`).
    pub body: String,
    /// The voter (credential hash) that registered it; None for the server's and an administrator's.
    pub registered_by: Option<String>,
    pub last_code: Option<String>,
    pub ballots: u64,
}

/// Why a device could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("device {0} is already registered with other parameters")]
    Taken(u64),
    #[error("this voting credential has registered {0} devices, the most allowed")]
    TooMany(u64),
    #[error("voting is not open for this election")]
    NotOpen,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[async_trait]
pub trait BallotBox: Send + Sync + 'static {
    /// Adds voters by the hash of their one-time credential; returns how many were new.
    async fn insert_voters(
        &self,
        election_id: &str,
        credential_hashes: &[String],
    ) -> Result<u64, StoreError>;
    async fn voter(
        &self,
        election_id: &str,
        credential_hash: &str,
    ) -> Result<Option<VoterStatus>, StoreError>;

    /// Registers an encryption device, once: the same device again is accepted (returns
    /// false), another device under a taken id is refused; a voter may register at most
    /// `max_per_voter`.
    async fn register_device(
        &self,
        election_id: &str,
        device: &DeviceRow,
        max_per_voter: u64,
    ) -> Result<bool, DeviceError>;
    /// Every device of the election, with its chain's last code and length, by id.
    async fn devices(&self, election_id: &str) -> Result<Vec<DeviceRow>, StoreError>;

    /// Stores a ballot the voter has not cast yet (server-side encryption, before the Benaloh choice).
    async fn insert_pending_ballot(&self, ballot: &BallotRow) -> Result<(), StoreError>;
    /// Removes pending ballots made before `before` (ms); returns how many.
    async fn expire_pending_ballots(&self, before: i64) -> Result<u64, StoreError>;
    /// Records a cast or spoiled ballot in one transaction: uses up the voter's credential
    /// (cast) or counts its challenge (spoiled, at most `rules.max_challenges`), links the
    /// ballot into its device's code chain, refuses repeated ciphertexts, and stores the
    /// ballot. Returns the code.
    async fn record_ballot(
        &self,
        ballot: &BallotRow,
        link: ChainLink<'_>,
        rules: &CastRules<'_>,
    ) -> Result<String, CastError>;
    /// Stores cast ballots already linked into one device's chain, in bulk and in one
    /// transaction: the first continues the device's last code (`chain_start`), each next
    /// one the one before, and the device's chain ends at the last. For ballots whose
    /// eligibility and copies were checked elsewhere (no credential is used, no fingerprint
    /// kept): how the election bench fills a ballot box of a million.
    async fn import_cast_ballots(
        &self,
        election_id: &str,
        device_id: u64,
        chain_start: &str,
        ballots: &[BallotRow],
        tally: &[TallyContribution<'_>],
    ) -> Result<(), ImportError>;
    /// The running products of shards `first .. first + count` that hold ballots.
    async fn tally_shards(
        &self,
        election_id: &str,
        first: u64,
        count: u64,
    ) -> Result<Vec<TallyShardRow>, StoreError>;
    async fn ballot(
        &self,
        election_id: &str,
        ballot_id: &str,
    ) -> Result<Option<BallotRow>, StoreError>;
    async fn ballot_by_code(
        &self,
        election_id: &str,
        code: &str,
    ) -> Result<Option<BallotRow>, StoreError>;
    async fn count_ballots(&self, election_id: &str, state: BallotState)
        -> Result<u64, StoreError>;
    /// Brings the database's view of the ballot table up to date once the ballot box is
    /// closed (PostgreSQL: statistics and the visibility map, which autovacuum may never
    /// set), so that counting and paging ballots read the index alone.
    async fn refresh_ballot_statistics(&self) -> Result<(), StoreError>;
    /// Ballots in permutation order: the `offset`-th to the `offset + limit`-th.
    async fn ballots_page(
        &self,
        election_id: &str,
        state: BallotState,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<BallotRow>, StoreError>;
    /// The next `limit` ballots in permutation order after `after` (a ballot's shuffle
    /// position and id): how a chunk reads its range page by page without re-skipping
    /// everything before it.
    async fn ballots_after(
        &self,
        election_id: &str,
        state: BallotState,
        after: (i64, &str),
        limit: u64,
    ) -> Result<Vec<BallotRow>, StoreError>;
    async fn ballot_codes(&self, election_id: &str) -> Result<Vec<(String, String)>, StoreError>;
}
