//! The store port: elections, guardians, voters, ballots, jobs and their chunks.
//!
//! Every write that the exactly-once guarantees rest on is a single conditional
//! statement or one transaction, so several API instances and workers may share a store.

use async_trait::async_trait;

use crate::domain::{
    BallotRow, BallotState, ChunkCounts, ChunkRow, ChunkState, ElectionRow, ElectionState,
    GuardianRow, JobRow, JobState, KeyBackupRow, KeyChallengeRow,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed; `transient` when trying again later may succeed (it was
    /// unreachable, busy, or aborted the transaction).
    #[error("database error: {message}")]
    Backend { message: String, transient: bool },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

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

/// What the store checks when it records a ballot, besides its chain.
pub struct CastRules<'a> {
    /// Per contest, a digest of its ciphertexts: none may repeat in the election.
    pub fingerprints: &'a [String],
    /// The most ballots one credential may challenge.
    pub max_challenges: u64,
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
pub trait Store: Send + Sync + 'static {
    /// Stores a new election with its guardians and the server's own encryption device.
    async fn insert_election(
        &self,
        election: &ElectionRow,
        server_device: &DeviceRow,
        guardians: &[GuardianRow],
    ) -> Result<(), StoreError>;
    async fn election(&self, id: &str) -> Result<Option<ElectionRow>, StoreError>;
    /// The newest elections, at most `limit` of them.
    async fn recent_elections(&self, limit: u64) -> Result<Vec<ElectionRow>, StoreError>;
    async fn set_election_state(
        &self,
        id: &str,
        from: ElectionState,
        to: ElectionState,
    ) -> Result<bool, StoreError>;
    async fn guardians(&self, election_id: &str) -> Result<Vec<GuardianRow>, StoreError>;

    /// Records a guardian's public key record, once; false if it already had one.
    async fn announce_guardian(
        &self,
        election_id: &str,
        guardian_id: &str,
        public_json: &str,
    ) -> Result<bool, StoreError>;
    /// Stores a sender's backups, all or none; false if the sender had sent them already.
    async fn insert_key_backups(
        &self,
        election_id: &str,
        backups: &[KeyBackupRow],
    ) -> Result<bool, StoreError>;
    /// The election's backups: all of them, or those sent to one recipient.
    async fn key_backups(
        &self,
        election_id: &str,
        recipient: Option<&str>,
    ) -> Result<Vec<KeyBackupRow>, StoreError>;
    /// Records a recipient's verdict, unless an answered challenge settled that backup.
    async fn set_key_backup_verified(
        &self,
        election_id: &str,
        sender: &str,
        recipient: &str,
        verified: bool,
    ) -> Result<(), StoreError>;
    /// Stores a sender's answer to a rejected backup (the coordinate in clear, checked by
    /// the caller) unless one is stored, and marks the backup verified, in one transaction.
    async fn answer_key_backup_challenge(
        &self,
        election_id: &str,
        answer: &KeyChallengeRow,
    ) -> Result<(), StoreError>;
    /// The answered challenges: all of them, or those for backups to one recipient.
    async fn key_backup_challenges(
        &self,
        election_id: &str,
        recipient: Option<&str>,
    ) -> Result<Vec<KeyChallengeRow>, StoreError>;
    /// Ends a key ceremony: stores the context and opens voting, once.
    async fn open_after_ceremony(
        &self,
        election_id: &str,
        context_json: &str,
    ) -> Result<bool, StoreError>;
    async fn set_decryption_grant(
        &self,
        election_id: &str,
        guardian_id: &str,
        grant: &[u8],
    ) -> Result<(), StoreError>;

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

    async fn put_artifact(
        &self,
        election_id: &str,
        name: &str,
        body: &[u8],
    ) -> Result<(), StoreError>;
    async fn artifact(&self, election_id: &str, name: &str) -> Result<Option<Vec<u8>>, StoreError>;
    async fn artifact_names(
        &self,
        election_id: &str,
        prefix: &str,
    ) -> Result<Vec<String>, StoreError>;

    /// Creates a job with its chunks, none published yet, in one transaction; false (and
    /// nothing stored) if a job of the same kind is running for the election, or the
    /// election is no longer in the state `election_in` (a job of the kind just finished).
    async fn insert_job(
        &self,
        job: &JobRow,
        chunks: &[ChunkRow],
        election_in: Option<ElectionState>,
    ) -> Result<bool, StoreError>;
    async fn job(&self, id: &str) -> Result<Option<JobRow>, StoreError>;
    async fn jobs_in_state(&self, state: JobState) -> Result<Vec<JobRow>, StoreError>;
    /// An election's jobs, newest first.
    async fn election_jobs(&self, election_id: &str) -> Result<Vec<JobRow>, StoreError>;
    async fn latest_job(
        &self,
        election_id: &str,
        kind: crate::domain::JobKind,
    ) -> Result<Option<JobRow>, StoreError>;
    async fn set_job_state(
        &self,
        id: &str,
        from: &[JobState],
        to: JobState,
        error: Option<&str>,
    ) -> Result<bool, StoreError>;
    async fn chunks(&self, job_id: &str) -> Result<Vec<ChunkRow>, StoreError>;
    async fn chunk(&self, job_id: &str, index: u64) -> Result<Option<ChunkRow>, StoreError>;
    async fn chunk_counts(&self, job_id: &str) -> Result<ChunkCounts, StoreError>;
    /// The results of every done chunk, in chunk order.
    async fn chunk_results(&self, job_id: &str) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;
    async fn chunk_result(&self, job_id: &str, index: u64) -> Result<Option<Vec<u8>>, StoreError>;
    async fn mark_published(&self, job_id: &str, indexes: &[u64]) -> Result<(), StoreError>;
    /// Pending chunks of running jobs that no queue has been given yet (a crash between
    /// commit and publish) or whose publication is older than `before`.
    async fn unpublished_chunks(&self, published_before: i64) -> Result<Vec<ChunkRow>, StoreError>;
    async fn start_chunk(&self, job_id: &str, index: u64) -> Result<(), StoreError>;
    /// Stores a chunk's result unless it is already done; true if this call completed it.
    async fn complete_chunk(
        &self,
        job_id: &str,
        index: u64,
        result: &[u8],
    ) -> Result<bool, StoreError>;
    async fn fail_chunk(
        &self,
        job_id: &str,
        index: u64,
        error: &str,
        state: ChunkState,
    ) -> Result<(), StoreError>;
    /// Dead chunks back to pending (unpublished), for an operator's retry; returns how many.
    async fn revive_dead_chunks(&self, job_id: &str) -> Result<u64, StoreError>;
}
