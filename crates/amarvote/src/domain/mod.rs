//! The service's vocabulary: elections, ballots, jobs and their chunks, as the store keeps
//! them; and the referendum's, a voter's keyed hash and the messages a vote travels as.

pub mod ids;
pub mod vote_messages;
pub mod voter_hash;

pub use ids::{check_id, hex, new_id, ElectionId, JobId};

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch: every timestamp the store keeps.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name { $(#[serde(rename = $text)] $variant),+ }

        /// In the API's contract: one of the texts it is written as.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some([$($text),+]))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// Where an election stands; each step is taken once, in this order.
    ElectionState { KeyCeremony = "key_ceremony", Open = "open", Closed = "closed", Tallied = "tallied", Decrypted = "decrypted", Published = "published" }
);

/// A backup of one guardian's polynomial at another's coordinate, encrypted to the
/// recipient (guardian-run key ceremony); `verified` is the recipient's verdict.
#[derive(Clone, Debug)]
pub struct KeyBackupRow {
    pub sender: String,
    pub recipient: String,
    pub body: String,
    pub verified: Option<bool>,
}

/// A sender's answer to a recipient's rejection of its backup: the coordinate in clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyChallengeRow {
    pub sender: String,
    pub recipient: String,
    pub body: String,
}

string_enum!(
    /// A stored ballot: encrypted for a voter who has not yet decided, cast, or challenged.
    BallotState { Pending = "pending", Cast = "cast", Spoiled = "spoiled" }
);

string_enum!(
    /// The kinds of job an administrator starts; each names the queue its chunks go to.
    JobKind { Tally = "tally", Decrypt = "decrypt", Combine = "combine", Verify = "verify" }
);

string_enum!(
    /// A job's life: running until every chunk is done (or dead), then finished or failed.
    JobState { Running = "running", Stopped = "stopped", Finalizing = "finalizing", Done = "done", Failed = "failed" }
);

string_enum!(
    /// A chunk's life. `Dead` chunks exhausted their retries and wait for an operator.
    ChunkState { Pending = "pending", Remote = "remote", Done = "done", Dead = "dead" }
);

string_enum!(
    /// The work queues, one per operation, as the original design names them.
    QueueName {
        Tally = "tally",
        Decryption = "decryption",
        CompensatedDecryption = "compensated.decryption",
        Combine = "combine",
        Verification = "verification",
    }
);

impl QueueName {
    pub const ALL: [QueueName; 5] = [
        QueueName::Tally,
        QueueName::Decryption,
        QueueName::CompensatedDecryption,
        QueueName::Combine,
        QueueName::Verification,
    ];
}

/// An election as stored; the ElectionGuard documents are kept as reference JSON.
#[derive(Clone, Debug)]
pub struct ElectionRow {
    pub id: ElectionId,
    pub title: String,
    pub state: ElectionState,
    pub guardians: u32,
    pub quorum: u32,
    pub manifest_json: String,
    pub context_json: String,
    pub device_json: String,
    /// Keys the permutation that assigns ballots to chunks, so chunks do not reveal casting order.
    pub shuffle_key: Vec<u8>,
    pub created_at: i64,
}

/// A guardian's public record and its sealed private part.
#[derive(Clone, Debug)]
pub struct GuardianRow {
    pub election_id: ElectionId,
    pub guardian_id: String,
    pub sequence_order: u64,
    pub public_json: String,
    pub sealed_secret: Vec<u8>,
    pub token_hash: String,
    /// The guardian's consent to decrypt: its secret sealed under the server key alone.
    pub decryption_grant: Option<Vec<u8>>,
}

/// A ballot as stored: the ElectionGuard ballot in compact binary (CBOR) form.
#[derive(Clone, Debug)]
pub struct BallotRow {
    pub election_id: ElectionId,
    pub ballot_id: String,
    pub state: BallotState,
    /// Position in the keyed permutation; chunks are ranges of it.
    pub shuffle: i64,
    pub code: Option<String>,
    pub body: Vec<u8>,
    /// Pending ballots only: the nonces, sealed, for the Benaloh challenge.
    pub sealed_nonces: Option<Vec<u8>>,
    pub voter_hash: Option<String>,
    pub created_at: i64,
}

/// A job as stored.
#[derive(Clone, Debug)]
pub struct JobRow {
    pub id: JobId,
    pub election_id: ElectionId,
    pub kind: JobKind,
    pub state: JobState,
    pub total_chunks: u64,
    /// Who decrypts (decryption and combine jobs; empty for the others).
    pub params: DecryptParams,
    pub created_at: i64,
    pub finished_at: Option<i64>,
    pub error: Option<String>,
}

/// One unit of work: what it covers and where it stands.
#[derive(Clone, Debug)]
pub struct ChunkRow {
    pub job_id: JobId,
    pub index: u64,
    pub queue: QueueName,
    pub spec: ChunkSpec,
    pub state: ChunkState,
    pub attempts: u64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub error: Option<String>,
}

/// What one chunk covers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "target", rename_all = "snake_case")]
pub enum Target {
    /// The encrypted tally (one chunk per guardian share).
    Tally,
    /// Ballots of one state, by position in the permutation.
    Ballots {
        state: BallotState,
        offset: u64,
        limit: u64,
    },
    /// The running products of the cast ballots kept at cast time: shards
    /// `first .. first + count` of [`TALLY_SHARDS`].
    Shards { first: u64, count: u64 },
}

/// How many running products of the cast ballots an election keeps: a cast ballot joins
/// the one its permutation position names, so a tally job has this much parallel work
/// whatever the number of ballots.
pub const TALLY_SHARDS: u64 = 16;

/// The running product a cast ballot at permutation position `shuffle` joins.
pub fn tally_shard(shuffle: i64) -> u64 {
    shuffle.rem_euclid(TALLY_SHARDS as i64) as u64
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChunkSpec {
    #[serde(flatten)]
    pub target: Target,
    /// Decryption: the guardian computing the share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guardian: Option<String>,
    /// Compensated decryption: the missing guardian it stands in for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing: Option<String>,
}

/// Who decrypts: fixed when the decryption job is planned.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DecryptParams {
    pub available: Vec<String>,
    pub missing: Vec<String>,
    /// The decryption job a combine job reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decrypt_job: Option<JobId>,
}

/// Counts of a job's chunks by state.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct ChunkCounts {
    pub total: u64,
    pub done: u64,
    pub dead: u64,
}

/// The message a queue carries: which chunk to do. Never a secret, never ballot data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkTask {
    pub job_id: JobId,
    pub chunk: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contract_names_each_state_as_it_is_written() {
        let schema = serde_json::to_value(<JobState as utoipa::PartialSchema>::schema()).unwrap();
        assert_eq!(
            schema["enum"],
            serde_json::json!(["running", "stopped", "finalizing", "done", "failed"])
        );
        let queue = serde_json::to_value(<QueueName as utoipa::PartialSchema>::schema()).unwrap();
        assert!(queue["enum"]
            .as_array()
            .unwrap()
            .contains(&"compensated.decryption".into()));
    }

    #[test]
    fn enums_round_trip_through_their_text() {
        for q in QueueName::ALL {
            assert_eq!(QueueName::parse(q.as_str()), Some(q));
        }
        assert_eq!(JobState::parse("finalizing"), Some(JobState::Finalizing));
        assert_eq!(JobKind::parse("nonsense"), None);
    }
}

/// The names under which jobs store what they produce (the store's artifacts), read back by
/// later jobs, the API and the record export.
pub mod artifacts {
    /// The merged encrypted tally (CBOR), written by the tally job.
    pub const ENCRYPTED_TALLY: &str = "encrypted_tally";
    /// The plaintext tally with its shares and proofs, written by the combine job.
    pub const PLAINTEXT_TALLY: &str = "tally";
    /// Each decrypted challenged ballot: this prefix, then the ballot's object id.
    pub const SPOILED_PREFIX: &str = "spoiled/";
    /// The Lagrange coefficients of the guardians present.
    pub const COEFFICIENTS: &str = "coefficients";
    /// The verification job's report (JSON).
    pub const VERIFICATION: &str = "verification";
}
