//! The store on SQL: one implementation over sqlx's `Any` driver for both deployment
//! scales — SQLite (the embedded default, one file in the data directory) and
//! PostgreSQL. The SQL is the common dialect of both (`$n` parameters, `ON CONFLICT`,
//! `RETURNING`); only the schema's binary type differs.

use sqlx::any::AnyRow;
use sqlx::{AnyPool, Executor, Row};

use super::sql_db::{is_transient, Backend, Schema, SqlDb, SqlDbError};
use super::sqlite::Durability;
use crate::domain::{
    now_ms, BallotRow, BallotState, ChunkCounts, ChunkRow, ChunkState, ElectionRow, ElectionState,
    GuardianRow, JobKind, JobRow, JobState, KeyBackupRow, KeyChallengeRow, QueueName,
};
use crate::ports::store::{
    ArtifactStore, BallotBox, CastError, CastRules, CeremonyStore, ChainLink, DeviceError,
    DeviceRow, ElectionStore, ImportError, JobStore, StoreError, TallyContribution, TallyShardRow,
    VoterStatus,
};

/// The election's tables.
const SCHEMA: Schema = Schema {
    system: "election",
    sql: include_str!("schema.sql"),
    postgres_only: &[],
    version_table: "schema_version",
    // Raised with every change to `schema.sql` (a database at this version gets no DDL).
    version: 4,
    // Version 4 added `tally_shards`; a ballot box cast under version 3 has no running
    // products, and its tally reads the ballots themselves (`service::jobs`).
    upgrades_from: &[3],
    data_table: "elections",
    adopt: None,
};

#[derive(Clone)]
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
}

impl SqlStore {
    /// Connects and brings the schema up to date.
    pub async fn connect(url: &str) -> Result<SqlStore, StoreError> {
        // Ballots with receipts live here.
        let db = SqlDb::connect(url, Durability::Acknowledged).await?;
        db.apply(&SCHEMA).await?;
        Ok(SqlStore {
            pool: db.pool,
            backend: db.backend,
        })
    }
}

type Tx<'c> = sqlx::Transaction<'c, sqlx::Any>;

async fn insert_device(
    tx: &mut Tx<'_>,
    election_id: &str,
    d: &DeviceRow,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO devices (election_id, device_id, device_hash, body, registered_by, last_code, ballots)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(election_id)
    .bind(d.device_id as i64)
    .bind(&d.device_hash)
    .bind(&d.body)
    .bind(&d.registered_by)
    .bind(&d.last_code)
    .bind(d.ballots as i64)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Uses up the credential (a cast ballot) or counts one more challenge (a spoiled one).
async fn use_credential(
    tx: &mut Tx<'_>,
    b: &BallotRow,
    voter: &str,
    max_challenges: u64,
) -> Result<(), CastError> {
    let used = if b.state == BallotState::Cast {
        sqlx::query("UPDATE voters SET ballot_id = $1 WHERE election_id = $2 AND credential_hash = $3 AND ballot_id IS NULL")
            .bind(&b.ballot_id)
            .bind(b.election_id.as_str())
            .bind(voter)
    } else {
        sqlx::query("UPDATE voters SET challenges = challenges + 1 WHERE election_id = $2 AND credential_hash = $3 AND challenges < $1")
            .bind(max_challenges as i64)
            .bind(b.election_id.as_str())
            .bind(voter)
    }
    .execute(&mut **tx)
    .await
    .map_err(StoreError::from)?
    .rows_affected();
    if used > 0 {
        return Ok(());
    }
    let exists =
        sqlx::query("SELECT 1 FROM voters WHERE election_id = $1 AND credential_hash = $2")
            .bind(b.election_id.as_str())
            .bind(voter)
            .fetch_optional(&mut **tx)
            .await
            .map_err(StoreError::from)?;
    Err(match (exists, b.state) {
        (None, _) => CastError::NotEligible,
        (Some(_), BallotState::Cast) => CastError::AlreadyVoted,
        (Some(_), _) => CastError::TooManyChallenges(max_challenges),
    })
}

/// The code a device's next ballot continues: its last ballot's, or its own hash.
async fn device_chain_end(
    tx: &mut Tx<'_>,
    election_id: &str,
    device_id: u64,
) -> Result<String, CastError> {
    let row = sqlx::query(
        "SELECT device_hash, last_code FROM devices WHERE election_id = $1 AND device_id = $2",
    )
    .bind(election_id)
    .bind(device_id as i64)
    .fetch_optional(&mut **tx)
    .await
    .map_err(StoreError::from)?
    .ok_or_else(|| {
        StoreError::Corrupt(format!("election {election_id} has no device {device_id}"))
    })?;
    let last: Option<String> = row.try_get("last_code").map_err(StoreError::from)?;
    match last {
        Some(code) => Ok(code),
        None => Ok(row.try_get("device_hash").map_err(StoreError::from)?),
    }
}

/// The device whose chain a ballot seeded with `seed` continues: the voter's own device of
/// that hash with no ballot yet, or the voter's device whose last ballot has that code.
/// Seeds are public (codes and device hashes are published), so the device must be the
/// submitting voter's: nobody else can extend, and so break, its chain.
async fn device_continued_by(
    tx: &mut Tx<'_>,
    election_id: &str,
    seed: &str,
    voter: Option<&str>,
) -> Result<u64, CastError> {
    let device: Option<i64> = sqlx::query_scalar(
        "SELECT device_id FROM devices WHERE election_id = $1 AND registered_by = $3
         AND ((last_code IS NULL AND device_hash = $2) OR last_code = $2)",
    )
    .bind(election_id)
    .bind(seed)
    .bind(voter)
    .fetch_optional(&mut **tx)
    .await
    .map_err(StoreError::from)?;
    device.map(|d| d as u64).ok_or(CastError::BrokenChain)
}

async fn extend_chain(
    tx: &mut Tx<'_>,
    election_id: &str,
    device_id: u64,
    code: &str,
) -> Result<(), CastError> {
    sqlx::query("UPDATE devices SET last_code = $1, ballots = ballots + 1 WHERE election_id = $2 AND device_id = $3")
        .bind(code)
        .bind(election_id)
        .bind(device_id as i64)
        .execute(&mut **tx)
        .await
        .map_err(StoreError::from)?;
    Ok(())
}

/// Takes a contribution into its shard's running product. The caller holds the election's
/// row lock, so no other transaction reads the same product meanwhile.
async fn fold_into_shard(
    tx: &mut Tx<'_>,
    election_id: &str,
    c: &TallyContribution<'_>,
) -> Result<(), StoreError> {
    let stored: Option<Vec<u8>> = sqlx::query_scalar(
        "SELECT product FROM tally_shards WHERE election_id = $1 AND shard = $2",
    )
    .bind(election_id)
    .bind(c.shard as i64)
    .fetch_optional(&mut **tx)
    .await?;
    let product = (c.fold)(stored.as_deref()).map_err(|e| {
        StoreError::Corrupt(format!(
            "election {election_id}: tally shard {}: {e}",
            c.shard
        ))
    })?;
    let statement = match stored {
        Some(_) => "UPDATE tally_shards SET product = $3, ballots = ballots + $4 WHERE election_id = $1 AND shard = $2",
        None => "INSERT INTO tally_shards (election_id, shard, product, ballots) VALUES ($1, $2, $3, $4)",
    };
    sqlx::query(statement)
        .bind(election_id)
        .bind(c.shard as i64)
        .bind(product)
        .bind(c.ballots as i64)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

fn is_unique_violation<T>(result: &Result<T, sqlx::Error>) -> bool {
    matches!(result, Err(sqlx::Error::Database(d)) if d.is_unique_violation())
}

/// A tracking code that is already in the ballot box: the device chained a copy.
fn map_code_conflict(e: sqlx::Error) -> CastError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => CastError::DuplicateBallot,
        _ => StoreError::from(e).into(),
    }
}

fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("unknown {what} {value:?}"))
}

fn election_row(row: &AnyRow) -> Result<ElectionRow, StoreError> {
    let state: String = row.try_get("state")?;
    Ok(ElectionRow {
        id: id_column(row, "id")?,
        title: row.try_get("title")?,
        state: ElectionState::parse(&state).ok_or_else(|| corrupt("election state", &state))?,
        guardians: row.try_get::<i64, _>("guardians")? as u32,
        quorum: row.try_get::<i64, _>("quorum")? as u32,
        manifest_json: row.try_get("manifest")?,
        context_json: row.try_get("context")?,
        device_json: row.try_get("device")?,
        shuffle_key: row.try_get("shuffle_key")?,
        created_at: row.try_get("created_at")?,
    })
}

fn guardian_row(row: &AnyRow) -> Result<GuardianRow, StoreError> {
    Ok(GuardianRow {
        election_id: id_column(row, "election_id")?,
        guardian_id: row.try_get("guardian_id")?,
        sequence_order: row.try_get::<i64, _>("sequence_order")? as u64,
        public_json: row.try_get("public_record")?,
        sealed_secret: row.try_get("sealed_secret")?,
        token_hash: row.try_get("token_hash")?,
        decryption_grant: row.try_get("decryption_grant")?,
    })
}

fn ballot_row(row: &AnyRow) -> Result<BallotRow, StoreError> {
    let state: String = row.try_get("state")?;
    Ok(BallotRow {
        election_id: id_column(row, "election_id")?,
        ballot_id: row.try_get("ballot_id")?,
        state: BallotState::parse(&state).ok_or_else(|| corrupt("ballot state", &state))?,
        shuffle: row.try_get("shuffle")?,
        code: row.try_get("code")?,
        body: row.try_get("body")?,
        sealed_nonces: row.try_get("sealed_nonces")?,
        voter_hash: row.try_get("voter_hash")?,
        created_at: row.try_get("created_at")?,
    })
}

/// A column that holds one of the service's ids: anything else is refused as corrupt.
fn id_column<T: TryFrom<String>>(row: &AnyRow, column: &str) -> Result<T, StoreError> {
    let text: String = row.try_get(column)?;
    T::try_from(text.clone()).map_err(|_| corrupt(column, &text))
}

/// A column that holds JSON, as the type it was written from.
fn parse_json<T: serde::de::DeserializeOwned>(row: &AnyRow, column: &str) -> Result<T, StoreError> {
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text)
        .map_err(|e| StoreError::Corrupt(format!("the {column} column holds {text:?}: {e}")))
}

/// The JSON a typed column is written as.
fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("plain data serializes")
}

fn job_row(row: &AnyRow) -> Result<JobRow, StoreError> {
    let kind: String = row.try_get("kind")?;
    let state: String = row.try_get("state")?;
    Ok(JobRow {
        id: id_column(row, "id")?,
        election_id: id_column(row, "election_id")?,
        kind: JobKind::parse(&kind).ok_or_else(|| corrupt("job kind", &kind))?,
        state: JobState::parse(&state).ok_or_else(|| corrupt("job state", &state))?,
        total_chunks: row.try_get::<i64, _>("total_chunks")? as u64,
        params: parse_json(row, "params")?,
        created_at: row.try_get("created_at")?,
        finished_at: row.try_get("finished_at")?,
        error: row.try_get("error")?,
    })
}

fn chunk_row(row: &AnyRow) -> Result<ChunkRow, StoreError> {
    let queue: String = row.try_get("queue")?;
    let state: String = row.try_get("state")?;
    Ok(ChunkRow {
        job_id: id_column(row, "job_id")?,
        index: row.try_get::<i64, _>("chunk_index")? as u64,
        queue: QueueName::parse(&queue).ok_or_else(|| corrupt("queue", &queue))?,
        spec: parse_json(row, "spec")?,
        state: ChunkState::parse(&state).ok_or_else(|| corrupt("chunk state", &state))?,
        attempts: row.try_get::<i64, _>("attempts")? as u64,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        error: row.try_get("error")?,
    })
}

const BALLOT_COLUMNS: &str =
    "election_id, ballot_id, state, shuffle, code, body, sealed_nonces, voter_hash, created_at";
const CHUNK_COLUMNS: &str =
    "job_id, chunk_index, queue, spec, state, attempts, started_at, finished_at, error";
const JOB_COLUMNS: &str =
    "id, election_id, kind, state, total_chunks, params, created_at, finished_at, error";

mod artifacts;
mod ballot_box;
mod ceremony;
mod elections;
mod jobs;

impl From<SqlDbError> for StoreError {
    fn from(err: SqlDbError) -> Self {
        match err {
            SqlDbError::Database(err) => err.into(),
            refused => StoreError::Corrupt(refused.to_string()),
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        StoreError::Backend {
            transient: is_transient(&err),
            message: err.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::domain::{ElectionId, JobId};
    use crate::ports::store::CodeChainer;

    fn election(id: &str) -> ElectionRow {
        ElectionRow {
            id: ElectionId::parse(id).unwrap(),
            title: "t".into(),
            state: ElectionState::Open,
            guardians: 1,
            quorum: 1,
            manifest_json: String::new(),
            context_json: String::new(),
            device_json: String::new(),
            shuffle_key: vec![1],
            created_at: 0,
        }
    }

    fn device(id: u64, hash: &str, voter: Option<&str>) -> DeviceRow {
        DeviceRow {
            device_id: id,
            device_hash: hash.into(),
            body: format!("device {id} {hash}"),
            registered_by: voter.map(str::to_string),
            last_code: None,
            ballots: 0,
        }
    }

    async fn store_with_election(dir: &tempfile::TempDir) -> SqlStore {
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("s.db").display());
        let store = SqlStore::connect(&url).await.unwrap();
        store
            .insert_election(&election("e"), &device(0, "h0", None), &[])
            .await
            .unwrap();
        let voters: Vec<String> = (0..10).map(|i| format!("v{i}")).collect();
        store.insert_voters("e", &voters).await.unwrap();
        store
    }

    fn ballot(i: i64, state: BallotState) -> BallotRow {
        BallotRow {
            election_id: ElectionId::parse("e").unwrap(),
            ballot_id: format!("b{i}"),
            state,
            shuffle: (i * 7) % 4,
            code: None,
            body: vec![i as u8],
            sealed_nonces: None,
            voter_hash: Some(format!("v{i}")),
            created_at: 0,
        }
    }

    /// A stand-in for the product of ciphertexts: one byte more per ballot taken in, so
    /// a shard's product says how many ballots it took in.
    fn appending(stored: Option<&[u8]>) -> Result<Vec<u8>, String> {
        let mut product = stored.unwrap_or_default().to_vec();
        product.push(1);
        Ok(product)
    }

    fn rules<'a>(fingerprints: &'a [String], b: &BallotRow) -> CastRules<'a> {
        CastRules {
            fingerprints,
            max_challenges: 2,
            tally: Some(TallyContribution {
                shard: crate::domain::tally_shard(b.shuffle),
                ballots: 1,
                fold: &appending,
            }),
        }
    }

    /// Cast ballots the shards say they hold, by their counts and by their products.
    async fn held_by_shards(store: &SqlStore) -> (u64, usize) {
        let shards = store
            .tally_shards("e", 0, crate::domain::TALLY_SHARDS)
            .await
            .unwrap();
        (
            shards.iter().map(|s| s.ballots).sum(),
            shards.iter().map(|s| s.product.len()).sum(),
        )
    }

    async fn counted_rows(store: &SqlStore, state: BallotState) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM ballots WHERE election_id = 'e' AND state = $1")
            .bind(state.as_str())
            .fetch_one(&store.pool)
            .await
            .unwrap()
    }

    /// Casts or challenges pending ballot `i` through the server's chain.
    async fn decide(store: &SqlStore, b: &BallotRow) -> Result<String, CastError> {
        let chain: CodeChainer = &|previous: &str| (format!("{previous}+"), vec![0]);
        let fingerprints = [format!("f{}", b.ballot_id)];
        let link = ChainLink::Server {
            device_id: 0,
            chain,
        };
        store.record_ballot(b, link, &rules(&fingerprints, b)).await
    }

    fn tally_job(id: &str) -> JobRow {
        JobRow {
            id: JobId::parse(id).unwrap(),
            election_id: ElectionId::parse("e").unwrap(),
            kind: JobKind::Tally,
            state: JobState::Running,
            total_chunks: 0,
            params: Default::default(),
            created_at: 0,
            finished_at: None,
            error: None,
        }
    }

    /// Four tally starts raced on an empty election: the first job finished (election
    /// tallied, job done) before a second start reached the store. The second must be
    /// refused although no tally job is running any more.
    #[tokio::test]
    async fn a_job_is_refused_once_one_of_its_kind_moved_the_election_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_election(&dir).await;
        let closed = Some(ElectionState::Closed);
        store
            .set_election_state("e", ElectionState::Open, ElectionState::Closed)
            .await
            .unwrap();
        assert!(store
            .insert_job(&tally_job("j1"), &[], closed)
            .await
            .unwrap());
        assert!(
            !store
                .insert_job(&tally_job("j2"), &[], closed)
                .await
                .unwrap(),
            "one running"
        );
        store
            .set_election_state("e", ElectionState::Closed, ElectionState::Tallied)
            .await
            .unwrap();
        store
            .set_job_state("j1", &[JobState::Running], JobState::Done, None)
            .await
            .unwrap();
        assert!(
            !store
                .insert_job(&tally_job("j3"), &[], closed)
                .await
                .unwrap(),
            "moved on"
        );
        assert!(store.job("j3").await.unwrap().is_none(), "nothing stored");
        let verify = JobRow {
            kind: JobKind::Verify,
            ..tally_job("j4")
        };
        assert!(
            store.insert_job(&verify, &[], None).await.unwrap(),
            "any state"
        );
    }

    #[tokio::test]
    async fn kept_ballot_counts_equal_the_rows_after_casts_spoils_pending_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_election(&dir).await;
        for i in 0..9 {
            store
                .insert_pending_ballot(&ballot(i, BallotState::Pending))
                .await
                .unwrap();
        }
        for i in 0..7 {
            let state = if i % 3 == 0 {
                BallotState::Spoiled
            } else {
                BallotState::Cast
            };
            decide(&store, &ballot(i, state)).await.unwrap();
        }
        let again = decide(&store, &ballot(1, BallotState::Cast)).await;
        assert!(matches!(again, Err(CastError::AlreadyVoted)), "{again:?}");
        let theirs = BallotRow {
            voter_hash: Some("v9".into()),
            ..ballot(8, BallotState::Cast)
        };
        let stolen = decide(&store, &theirs).await;
        assert!(matches!(stolen, Err(CastError::NotPending)), "{stolen:?}");
        decide(&store, &ballot(7, BallotState::Cast)).await.unwrap();
        for (state, expected) in [
            (BallotState::Cast, 5),
            (BallotState::Spoiled, 3),
            (BallotState::Pending, 1),
        ] {
            let kept = store.count_ballots("e", state).await.unwrap();
            assert_eq!(
                (kept, counted_rows(&store, state).await),
                (expected, expected as i64),
                "{state}"
            );
        }
        let server = &store.devices("e").await.unwrap()[0];
        assert_eq!(server.ballots, 8);
        assert_eq!(server.last_code.as_deref(), Some("h0++++++++"));
        assert_eq!(
            held_by_shards(&store).await,
            (5, 5),
            "the cast ballots and no other"
        );
    }

    #[tokio::test]
    async fn an_import_continues_the_chain_counts_and_folds_or_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_election(&dir).await;
        let linked = |i: i64, previous: &str| BallotRow {
            code: Some(format!("{previous}+")),
            voter_hash: None,
            ..ballot(i, BallotState::Cast)
        };
        let batch = [linked(0, "h0"), linked(1, "h0+")];
        let tally = |ballots| TallyContribution {
            shard: 3,
            ballots,
            fold: &appending,
        };
        let import = |chain_start: &'static str, rows: Vec<BallotRow>| {
            let store = &store;
            async move {
                store
                    .import_cast_ballots("e", 0, chain_start, &rows, &[tally(rows.len() as u64)])
                    .await
            }
        };
        let broken = import("elsewhere", batch.to_vec()).await;
        assert!(
            matches!(broken, Err(ImportError::BrokenChain(0))),
            "{broken:?}"
        );
        let pending = import("h0", vec![ballot(5, BallotState::Pending)]).await;
        assert!(matches!(pending, Err(ImportError::NotCast)), "{pending:?}");
        let short = store
            .import_cast_ballots("e", 0, "h0", &batch, &[tally(1)])
            .await;
        assert!(
            matches!(
                short,
                Err(ImportError::TallyMismatch {
                    held: 1,
                    imported: 2
                })
            ),
            "{short:?}"
        );
        assert_eq!(
            held_by_shards(&store).await,
            (0, 0),
            "a refused import changes nothing"
        );
        import("h0", batch.to_vec()).await.unwrap();
        let again = import("h0++", vec![linked(1, "h0++")]).await;
        assert!(
            matches!(again, Err(ImportError::Store(_))),
            "a ballot id is imported once: {again:?}"
        );
        assert_eq!(
            store.count_ballots("e", BallotState::Cast).await.unwrap(),
            2
        );
        assert_eq!(
            held_by_shards(&store).await,
            (2, 1),
            "one contribution of two ballots"
        );
        let server = &store.devices("e").await.unwrap()[0];
        assert_eq!(
            (server.ballots, server.last_code.as_deref()),
            (2, Some("h0++"))
        );
        store
            .set_election_state("e", ElectionState::Open, ElectionState::Closed)
            .await
            .unwrap();
        let closed = import("h0++", vec![linked(2, "h0++")]).await;
        assert!(matches!(closed, Err(ImportError::NotOpen)), "{closed:?}");
    }

    #[tokio::test]
    async fn device_ballots_are_insert_only_chained_unique_and_challenges_are_capped() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_election(&dir).await;
        assert!(store
            .register_device("e", &device(7, "h7", Some("v1")), 1)
            .await
            .unwrap());
        assert!(!store
            .register_device("e", &device(7, "h7", Some("v1")), 1)
            .await
            .unwrap());
        let taken = store
            .register_device("e", &device(7, "other", Some("v2")), 1)
            .await;
        assert!(matches!(taken, Err(DeviceError::Taken(7))));
        let many = store
            .register_device("e", &device(8, "h8", Some("v1")), 1)
            .await;
        assert!(matches!(many, Err(DeviceError::TooMany(1))));
        let submit = |i: i64, state, seed: &'static str, code: &'static str, fingerprint: &str| {
            let store = &store;
            let fingerprints = [fingerprint.to_string()];
            async move {
                let b = BallotRow {
                    voter_hash: Some("v1".into()),
                    ..ballot(i, state)
                };
                let link = ChainLink::Device {
                    seed,
                    code,
                    body: &[1],
                };
                store
                    .record_ballot(&b, link, &rules(&fingerprints, &b))
                    .await
            }
        };
        let spoiled = BallotState::Spoiled;
        assert_eq!(submit(1, spoiled, "h7", "c1", "f1").await.unwrap(), "c1");
        let fork = submit(2, spoiled, "h7", "c2", "f2").await;
        assert!(matches!(fork, Err(CastError::BrokenChain)), "{fork:?}");
        let unknown = submit(2, spoiled, "nowhere", "c2", "f2").await;
        assert!(
            matches!(unknown, Err(CastError::BrokenChain)),
            "{unknown:?}"
        );
        let same_id = submit(1, spoiled, "c1", "c2", "f2").await;
        assert!(
            matches!(same_id, Err(CastError::DuplicateBallot)),
            "{same_id:?}"
        );
        let copy = submit(2, spoiled, "c1", "c2", "f1").await;
        assert!(matches!(copy, Err(CastError::CopiedBallot)), "{copy:?}");
        assert_eq!(submit(2, spoiled, "c1", "c2", "f2").await.unwrap(), "c2");
        let third = submit(3, spoiled, "c2", "c3", "f3").await;
        assert!(
            matches!(third, Err(CastError::TooManyChallenges(2))),
            "{third:?}"
        );
        assert_eq!(
            submit(3, BallotState::Cast, "c2", "c3", "f3")
                .await
                .unwrap(),
            "c3"
        );
        let devices = store.devices("e").await.unwrap();
        assert_eq!(
            (devices[1].ballots, devices[1].last_code.as_deref()),
            (3, Some("c3"))
        );
        assert_eq!(counted_rows(&store, spoiled).await, 2);
        assert_eq!(store.count_ballots("e", spoiled).await.unwrap(), 2);
        let status = store.voter("e", "v1").await.unwrap().unwrap();
        assert_eq!(
            (status.cast_ballot.as_deref(), status.challenges),
            (Some("b3"), 2)
        );
    }

    #[tokio::test]
    async fn reading_after_the_last_ballot_pages_through_the_permutation_ties_included() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_election(&dir).await;
        for i in 0..10i64 {
            store
                .insert_pending_ballot(&ballot(i, BallotState::Pending))
                .await
                .unwrap();
        }
        let all = store
            .ballots_page("e", BallotState::Pending, 0, 100)
            .await
            .unwrap();
        let mut paged = store
            .ballots_page("e", BallotState::Pending, 0, 3)
            .await
            .unwrap();
        loop {
            let last = paged.last().unwrap();
            let next = store
                .ballots_after(
                    "e",
                    BallotState::Pending,
                    (last.shuffle, &last.ballot_id.clone()),
                    3,
                )
                .await
                .unwrap();
            if next.is_empty() {
                break;
            }
            paged.extend(next);
        }
        let ids = |rows: &[BallotRow]| rows.iter().map(|r| r.ballot_id.clone()).collect::<Vec<_>>();
        assert_eq!(all.len(), 10);
        assert_eq!(ids(&paged), ids(&all));
        for offset in 0..=11 {
            let page = store
                .ballots_page("e", BallotState::Pending, offset, 3)
                .await
                .unwrap();
            let start = (offset as usize).min(all.len());
            let end = (start + 3).min(all.len());
            assert_eq!(ids(&page), ids(&all[start..end]), "offset {offset}");
        }
    }

    #[tokio::test]
    async fn an_answered_challenge_settles_a_backup_against_later_verdicts() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_election(&dir).await;
        let backup = KeyBackupRow {
            sender: "g1".into(),
            recipient: "g2".into(),
            body: "{}".into(),
            verified: None,
        };
        store.insert_key_backups("e", &[backup]).await.unwrap();
        let verified = || async { store.key_backups("e", Some("g2")).await.unwrap()[0].verified };
        store
            .set_key_backup_verified("e", "g1", "g2", false)
            .await
            .unwrap();
        assert_eq!(verified().await, Some(false));
        let answer = KeyChallengeRow {
            sender: "g1".into(),
            recipient: "g2".into(),
            body: "{\"value\": 1}".into(),
        };
        store
            .answer_key_backup_challenge("e", &answer)
            .await
            .unwrap();
        assert_eq!(verified().await, Some(true));
        store
            .set_key_backup_verified("e", "g1", "g2", false)
            .await
            .unwrap();
        assert_eq!(
            verified().await,
            Some(true),
            "a late verdict does not undo the answer"
        );
        store
            .answer_key_backup_challenge("e", &answer)
            .await
            .unwrap();
        assert_eq!(
            store.key_backup_challenges("e", None).await.unwrap(),
            vec![answer]
        );
        assert!(store
            .key_backup_challenges("e", Some("g1"))
            .await
            .unwrap()
            .is_empty());
    }
}
