//! The store on SQL: one implementation over sqlx's `Any` driver for both deployment
//! scales — SQLite (the embedded default, one file in the data directory) and
//! PostgreSQL. The SQL is the common dialect of both (`$n` parameters, `ON CONFLICT`,
//! `RETURNING`); only the schema's binary type differs.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};

use crate::domain::{
    now_ms, BallotRow, BallotState, ChunkCounts, ChunkRow, ChunkState, ElectionRow, ElectionState,
    GuardianRow, JobKind, JobRow, JobState, KeyBackupRow, KeyChallengeRow, QueueName,
};
use crate::ports::store::{
    CastError, CastRules, ChainLink, DeviceError, DeviceRow, Store, StoreError, VoterStatus,
};

const SCHEMA: &str = include_str!("schema.sql");
/// Raised whenever `schema.sql` changes in a way an existing database cannot follow.
const SCHEMA_VERSION: i64 = 3;

/// Which database a URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of(url: &str) -> Result<Backend, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Backend::Postgres)
        } else {
            Err(StoreError::Corrupt(format!(
                "unsupported database URL (sqlite: or postgres:): {url}"
            )))
        }
    }
}

#[derive(Clone)]
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
}

impl SqlStore {
    /// Connects and brings the schema up to date.
    pub async fn connect(url: &str) -> Result<SqlStore, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of(url)?;
        let options = AnyConnectOptions::from_str(url)?;
        let pool = match backend {
            Backend::Sqlite => AnyPoolOptions::new()
                .max_connections(4)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=10000;").await?;
                        Ok(())
                    })
                })
                .connect_with(options)
                .await?,
            Backend::Postgres => AnyPoolOptions::new().max_connections(16).acquire_timeout(Duration::from_secs(30)).connect_with(options).await?,
        };
        let store = SqlStore { pool, backend };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let blob = if self.backend == Backend::Postgres {
            "BYTEA"
        } else {
            "BLOB"
        };
        for statement in SCHEMA.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            let statement = statement.replace(" BLOB", &format!(" {blob}"));
            if let Err(e) = self.pool.execute(statement.as_str()).await {
                // Two processes migrating at once may race on CREATE … IF NOT EXISTS in PostgreSQL.
                if !e.to_string().contains("already exists") {
                    return Err(e.into());
                }
            }
        }
        self.check_schema_version().await
    }

    /// Refuses a database made by an earlier schema (no in-place migration exists yet):
    /// better a clear message at start than failing queries later.
    async fn check_schema_version(&self) -> Result<(), StoreError> {
        let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_version")
            .fetch_all(&self.pool)
            .await?;
        if versions.is_empty() {
            let elections: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM elections")
                .fetch_one(&self.pool)
                .await?;
            if elections == 0 {
                sqlx::query("INSERT INTO schema_version (version) VALUES ($1)")
                    .bind(SCHEMA_VERSION)
                    .execute(&self.pool)
                    .await?;
                return Ok(());
            }
        }
        match versions.as_slice() {
            [.., last] if versions.iter().all(|v| v == last) && *last == SCHEMA_VERSION => Ok(()),
            _ => Err(StoreError::Corrupt(format!(
                "this database was made by another amarvote version (schema {versions:?}, this one \
                 needs {SCHEMA_VERSION}); export its records (amarvote record) and start on a new \
                 data directory or database"
            ))),
        }
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
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
            .bind(&b.election_id)
            .bind(voter)
    } else {
        sqlx::query("UPDATE voters SET challenges = challenges + 1 WHERE election_id = $2 AND credential_hash = $3 AND challenges < $1")
            .bind(max_challenges as i64)
            .bind(&b.election_id)
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
            .bind(&b.election_id)
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
        id: row.try_get("id")?,
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
        election_id: row.try_get("election_id")?,
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
        election_id: row.try_get("election_id")?,
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

fn job_row(row: &AnyRow) -> Result<JobRow, StoreError> {
    let kind: String = row.try_get("kind")?;
    let state: String = row.try_get("state")?;
    Ok(JobRow {
        id: row.try_get("id")?,
        election_id: row.try_get("election_id")?,
        kind: JobKind::parse(&kind).ok_or_else(|| corrupt("job kind", &kind))?,
        state: JobState::parse(&state).ok_or_else(|| corrupt("job state", &state))?,
        total_chunks: row.try_get::<i64, _>("total_chunks")? as u64,
        params_json: row.try_get("params")?,
        created_at: row.try_get("created_at")?,
        finished_at: row.try_get("finished_at")?,
        error: row.try_get("error")?,
    })
}

fn chunk_row(row: &AnyRow) -> Result<ChunkRow, StoreError> {
    let queue: String = row.try_get("queue")?;
    let state: String = row.try_get("state")?;
    Ok(ChunkRow {
        job_id: row.try_get("job_id")?,
        index: row.try_get::<i64, _>("chunk_index")? as u64,
        queue: QueueName::parse(&queue).ok_or_else(|| corrupt("queue", &queue))?,
        spec_json: row.try_get("spec")?,
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

#[async_trait]
impl Store for SqlStore {
    async fn insert_election(
        &self,
        e: &ElectionRow,
        server_device: &DeviceRow,
        guardians: &[GuardianRow],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO elections (id, title, state, guardians, quorum, manifest, context, device, shuffle_key, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&e.id)
        .bind(&e.title)
        .bind(e.state.as_str())
        .bind(i64::from(e.guardians))
        .bind(i64::from(e.quorum))
        .bind(&e.manifest_json)
        .bind(&e.context_json)
        .bind(&e.device_json)
        .bind(&e.shuffle_key)
        .bind(e.created_at)
        .execute(&mut *tx)
        .await?;
        insert_device(&mut tx, &e.id, server_device).await?;
        for g in guardians {
            sqlx::query(
                "INSERT INTO guardians (election_id, guardian_id, sequence_order, public_record, sealed_secret, token_hash)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&g.election_id)
            .bind(&g.guardian_id)
            .bind(g.sequence_order as i64)
            .bind(&g.public_json)
            .bind(&g.sealed_secret)
            .bind(&g.token_hash)
            .execute(&mut *tx)
            .await?;
        }
        // Counted as ballots are cast, so that planning a job never counts the ballot table.
        for state in [BallotState::Cast, BallotState::Spoiled] {
            sqlx::query("INSERT INTO ballot_counts (election_id, state, n) VALUES ($1, $2, 0)")
                .bind(&e.id)
                .bind(state.as_str())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn election(&self, id: &str) -> Result<Option<ElectionRow>, StoreError> {
        let row = sqlx::query("SELECT * FROM elections WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(election_row).transpose()
    }

    async fn recent_elections(&self, limit: u64) -> Result<Vec<ElectionRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM elections ORDER BY created_at DESC, id LIMIT $1")
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(election_row).collect()
    }

    async fn set_election_state(
        &self,
        id: &str,
        from: ElectionState,
        to: ElectionState,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE elections SET state = $1 WHERE id = $2 AND state = $3")
            .bind(to.as_str())
            .bind(id)
            .bind(from.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn guardians(&self, election_id: &str) -> Result<Vec<GuardianRow>, StoreError> {
        let rows =
            sqlx::query("SELECT * FROM guardians WHERE election_id = $1 ORDER BY sequence_order")
                .bind(election_id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(guardian_row).collect()
    }

    async fn announce_guardian(
        &self,
        election_id: &str,
        guardian_id: &str,
        public_json: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE guardians SET public_record = $1 WHERE election_id = $2 AND guardian_id = $3 AND public_record = ''",
        )
        .bind(public_json)
        .bind(election_id)
        .bind(guardian_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_key_backups(
        &self,
        election_id: &str,
        backups: &[KeyBackupRow],
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        for backup in backups {
            let done = sqlx::query(
                "INSERT INTO key_backups (election_id, sender, recipient, body, verified) VALUES ($1, $2, $3, $4, NULL)
                 ON CONFLICT (election_id, sender, recipient) DO NOTHING",
            )
            .bind(election_id)
            .bind(&backup.sender)
            .bind(&backup.recipient)
            .bind(&backup.body)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                tx.rollback().await?;
                return Ok(false);
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn key_backups(
        &self,
        election_id: &str,
        recipient: Option<&str>,
    ) -> Result<Vec<KeyBackupRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT sender, recipient, body, verified FROM key_backups
             WHERE election_id = $1 AND ($2 = '' OR recipient = $2) ORDER BY sender, recipient",
        )
        .bind(election_id)
        .bind(recipient.unwrap_or(""))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(KeyBackupRow {
                    sender: row.try_get("sender")?,
                    recipient: row.try_get("recipient")?,
                    body: row.try_get("body")?,
                    verified: row.try_get::<Option<i64>, _>("verified")?.map(|v| v == 1),
                })
            })
            .collect()
    }

    async fn set_key_backup_verified(
        &self,
        election_id: &str,
        sender: &str,
        recipient: &str,
        verified: bool,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE key_backups SET verified = $1 WHERE election_id = $2 AND sender = $3 AND recipient = $4
             AND NOT EXISTS (SELECT 1 FROM key_backup_challenges c WHERE c.election_id = $2 AND c.sender = $3 AND c.recipient = $4)",
        )
        .bind(i64::from(verified))
        .bind(election_id)
        .bind(sender)
        .bind(recipient)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn answer_key_backup_challenge(
        &self,
        election_id: &str,
        answer: &KeyChallengeRow,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO key_backup_challenges (election_id, sender, recipient, body) VALUES ($1, $2, $3, $4)
             ON CONFLICT (election_id, sender, recipient) DO NOTHING",
        )
        .bind(election_id)
        .bind(&answer.sender)
        .bind(&answer.recipient)
        .bind(&answer.body)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE key_backups SET verified = 1 WHERE election_id = $1 AND sender = $2 AND recipient = $3",
        )
        .bind(election_id)
        .bind(&answer.sender)
        .bind(&answer.recipient)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn key_backup_challenges(
        &self,
        election_id: &str,
        recipient: Option<&str>,
    ) -> Result<Vec<KeyChallengeRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT sender, recipient, body FROM key_backup_challenges
             WHERE election_id = $1 AND ($2 = '' OR recipient = $2) ORDER BY sender, recipient",
        )
        .bind(election_id)
        .bind(recipient.unwrap_or(""))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(KeyChallengeRow {
                    sender: row.try_get("sender")?,
                    recipient: row.try_get("recipient")?,
                    body: row.try_get("body")?,
                })
            })
            .collect()
    }

    async fn open_after_ceremony(
        &self,
        election_id: &str,
        context_json: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE elections SET context = $1, state = $2 WHERE id = $3 AND state = $4",
        )
        .bind(context_json)
        .bind(ElectionState::Open.as_str())
        .bind(election_id)
        .bind(ElectionState::KeyCeremony.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_decryption_grant(
        &self,
        election_id: &str,
        guardian_id: &str,
        grant: &[u8],
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE guardians SET decryption_grant = $1 WHERE election_id = $2 AND guardian_id = $3")
            .bind(grant)
            .bind(election_id)
            .bind(guardian_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn insert_voters(
        &self,
        election_id: &str,
        credential_hashes: &[String],
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut added = 0;
        for hash in credential_hashes {
            added += sqlx::query("INSERT INTO voters (election_id, credential_hash) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(election_id)
                .bind(hash)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        Ok(added)
    }

    async fn voter(
        &self,
        election_id: &str,
        credential_hash: &str,
    ) -> Result<Option<VoterStatus>, StoreError> {
        let row = sqlx::query(
            "SELECT ballot_id, challenges,
                (SELECT COUNT(*) FROM ballots WHERE election_id = $1 AND voter_hash = $2 AND state = 'pending') AS pending
             FROM voters WHERE election_id = $1 AND credential_hash = $2",
        )
        .bind(election_id)
        .bind(credential_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(VoterStatus {
                cast_ballot: row.try_get("ballot_id")?,
                challenges: row.try_get::<i64, _>("challenges")? as u64,
                pending: row.try_get::<i64, _>("pending")? as u64,
            })
        })
        .transpose()
    }

    async fn register_device(
        &self,
        election_id: &str,
        d: &DeviceRow,
        max_per_voter: u64,
    ) -> Result<bool, DeviceError> {
        let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
        // Serializes registrations per election, so the per-voter count cannot be raced;
        // a device joins only while voting is open, so none appears after the record is made.
        let open =
            sqlx::query("UPDATE elections SET state = state WHERE id = $1 AND state = 'open'")
                .bind(election_id)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from)?;
        if open.rows_affected() == 0 {
            return Err(DeviceError::NotOpen);
        }
        let existing: Option<String> = sqlx::query_scalar(
            "SELECT body FROM devices WHERE election_id = $1 AND device_id = $2",
        )
        .bind(election_id)
        .bind(d.device_id as i64)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::from)?;
        if let Some(body) = existing {
            return if body == d.body {
                Ok(false)
            } else {
                Err(DeviceError::Taken(d.device_id))
            };
        }
        if let Some(voter) = &d.registered_by {
            let count: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM devices WHERE election_id = $1 AND registered_by = $2",
            )
            .bind(election_id)
            .bind(voter)
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::from)?;
            if count as u64 >= max_per_voter {
                return Err(DeviceError::TooMany(max_per_voter));
            }
        }
        insert_device(&mut tx, election_id, d).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(true)
    }

    async fn devices(&self, election_id: &str) -> Result<Vec<DeviceRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT device_id, device_hash, body, registered_by, last_code, ballots
             FROM devices WHERE election_id = $1 ORDER BY device_id",
        )
        .bind(election_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(DeviceRow {
                    device_id: row.try_get::<i64, _>("device_id")? as u64,
                    device_hash: row.try_get("device_hash")?,
                    body: row.try_get("body")?,
                    registered_by: row.try_get("registered_by")?,
                    last_code: row.try_get("last_code")?,
                    ballots: row.try_get::<i64, _>("ballots")? as u64,
                })
            })
            .collect()
    }

    async fn insert_pending_ballot(&self, b: &BallotRow) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO ballots ({BALLOT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(&b.election_id)
        .bind(&b.ballot_id)
        .bind(b.state.as_str())
        .bind(b.shuffle)
        .bind(&b.code)
        .bind(&b.body)
        .bind(&b.sealed_nonces)
        .bind(&b.voter_hash)
        .bind(b.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn expire_pending_ballots(&self, before: i64) -> Result<u64, StoreError> {
        Ok(
            sqlx::query("DELETE FROM ballots WHERE state = 'pending' AND created_at < $1")
                .bind(before)
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }

    async fn record_ballot(
        &self,
        b: &BallotRow,
        link: ChainLink<'_>,
        rules: &CastRules<'_>,
    ) -> Result<String, CastError> {
        let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
        // Locks the election row first (every write transaction starts with a write), so
        // each chain has one next link at a time and the checks below cannot be raced.
        let open: Option<String> = sqlx::query_scalar(
            "UPDATE elections SET state = state WHERE id = $1 AND state = 'open' RETURNING id",
        )
        .bind(&b.election_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::from)?;
        open.ok_or(CastError::NotOpen)?;
        if let Some(voter) = &b.voter_hash {
            use_credential(&mut tx, b, voter, rules.max_challenges).await?;
        }
        let code = match link {
            ChainLink::Server { device_id, chain } => {
                let previous = device_chain_end(&mut tx, &b.election_id, device_id).await?;
                let (code, body) = chain(&previous);
                let written = sqlx::query(
                    "UPDATE ballots SET state = $1, code = $2, body = $3, sealed_nonces = NULL
                     WHERE election_id = $4 AND ballot_id = $5 AND state = 'pending' AND voter_hash IS NOT DISTINCT FROM $6",
                )
                .bind(b.state.as_str())
                .bind(&code)
                .bind(&body)
                .bind(&b.election_id)
                .bind(&b.ballot_id)
                .bind(&b.voter_hash)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from)?;
                if written.rows_affected() == 0 {
                    return Err(CastError::NotPending);
                }
                extend_chain(&mut tx, &b.election_id, device_id, &code).await?;
                code
            }
            ChainLink::Device { seed, code, body } => {
                let device =
                    device_continued_by(&mut tx, &b.election_id, seed, b.voter_hash.as_deref())
                        .await?;
                let written = sqlx::query(&format!(
                    "INSERT INTO ballots ({BALLOT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, $8)
                     ON CONFLICT (election_id, ballot_id) DO NOTHING"
                ))
                .bind(&b.election_id)
                .bind(&b.ballot_id)
                .bind(b.state.as_str())
                .bind(b.shuffle)
                .bind(code)
                .bind(body)
                .bind(&b.voter_hash)
                .bind(b.created_at)
                .execute(&mut *tx)
                .await
                .map_err(map_code_conflict)?;
                if written.rows_affected() == 0 {
                    return Err(CastError::DuplicateBallot);
                }
                extend_chain(&mut tx, &b.election_id, device, code).await?;
                code.to_string()
            }
        };
        for fingerprint in rules.fingerprints {
            let fresh = sqlx::query(
                "INSERT INTO ballot_fingerprints (election_id, fingerprint, ballot_id) VALUES ($1, $2, $3)
                 ON CONFLICT (election_id, fingerprint) DO NOTHING",
            )
            .bind(&b.election_id)
            .bind(fingerprint)
            .bind(&b.ballot_id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?;
            if fresh.rows_affected() == 0 {
                return Err(CastError::CopiedBallot);
            }
        }
        // The election row is locked above, so the counter adds no contention of its own.
        sqlx::query("UPDATE ballot_counts SET n = n + 1 WHERE election_id = $1 AND state = $2")
            .bind(&b.election_id)
            .bind(b.state.as_str())
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(code)
    }

    async fn ballot(
        &self,
        election_id: &str,
        ballot_id: &str,
    ) -> Result<Option<BallotRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {BALLOT_COLUMNS} FROM ballots WHERE election_id = $1 AND ballot_id = $2"
        ))
        .bind(election_id)
        .bind(ballot_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(ballot_row).transpose()
    }

    async fn ballot_by_code(
        &self,
        election_id: &str,
        code: &str,
    ) -> Result<Option<BallotRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {BALLOT_COLUMNS} FROM ballots WHERE election_id = $1 AND code = $2"
        ))
        .bind(election_id)
        .bind(code)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(ballot_row).transpose()
    }

    async fn count_ballots(
        &self,
        election_id: &str,
        state: BallotState,
    ) -> Result<u64, StoreError> {
        let kept: Option<i64> =
            sqlx::query_scalar("SELECT n FROM ballot_counts WHERE election_id = $1 AND state = $2")
                .bind(election_id)
                .bind(state.as_str())
                .fetch_optional(&self.pool)
                .await?;
        // Pending ballots, and elections created before the counters existed, are counted.
        let n = match kept {
            Some(n) => n,
            None => {
                sqlx::query_scalar(
                    "SELECT COUNT(*) FROM ballots WHERE election_id = $1 AND state = $2",
                )
                .bind(election_id)
                .bind(state.as_str())
                .fetch_one(&self.pool)
                .await?
            }
        };
        Ok(n as u64)
    }

    async fn refresh_ballot_statistics(&self) -> Result<(), StoreError> {
        let statement = match self.backend {
            // The ballot bodies live in the TOAST table, which the tally reads anyway.
            Backend::Postgres => "VACUUM (ANALYZE, PROCESS_TOAST FALSE) ballots",
            Backend::Sqlite => "ANALYZE ballots",
        };
        self.pool.execute(statement).await?;
        Ok(())
    }

    async fn ballots_page(
        &self,
        election_id: &str,
        state: BallotState,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<BallotRow>, StoreError> {
        // The offset is reached by keys alone (an index-only scan), then only the page's
        // rows are read; an OFFSET on the full rows would read every row it skips
        // (PostgreSQL, 100,000 ballots, offset 90,000: 116 ms → 19 ms).
        let rows = sqlx::query(&format!(
            "SELECT {BALLOT_COLUMNS} FROM ballots WHERE election_id = $1 AND state = $2
             AND (shuffle, ballot_id) >= (SELECT shuffle, ballot_id FROM ballots
                 WHERE election_id = $1 AND state = $2 ORDER BY shuffle, ballot_id LIMIT 1 OFFSET $4)
             ORDER BY shuffle, ballot_id LIMIT $3"
        ))
        .bind(election_id)
        .bind(state.as_str())
        .bind(limit as i64)
        .bind(offset as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(ballot_row).collect()
    }

    async fn ballots_after(
        &self,
        election_id: &str,
        state: BallotState,
        after: (i64, &str),
        limit: u64,
    ) -> Result<Vec<BallotRow>, StoreError> {
        // `shuffle >= $3` on its own is what lets the database start the index scan at the
        // last ballot read instead of filtering from the first: each page costs the same.
        let rows = sqlx::query(&format!(
            "SELECT {BALLOT_COLUMNS} FROM ballots WHERE election_id = $1 AND state = $2
             AND shuffle >= $3 AND (shuffle > $3 OR ballot_id > $4)
             ORDER BY shuffle, ballot_id LIMIT $5"
        ))
        .bind(election_id)
        .bind(state.as_str())
        .bind(after.0)
        .bind(after.1)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(ballot_row).collect()
    }

    async fn ballot_codes(&self, election_id: &str) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query("SELECT code, state FROM ballots WHERE election_id = $1 AND code IS NOT NULL ORDER BY code")
            .bind(election_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("code")?, r.try_get("state")?)))
            .collect()
    }

    async fn put_artifact(
        &self,
        election_id: &str,
        name: &str,
        body: &[u8],
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO artifacts (election_id, name, body) VALUES ($1, $2, $3)
             ON CONFLICT (election_id, name) DO UPDATE SET body = $3",
        )
        .bind(election_id)
        .bind(name)
        .bind(body)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn artifact(&self, election_id: &str, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT body FROM artifacts WHERE election_id = $1 AND name = $2")
                .bind(election_id)
                .bind(name)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn artifact_names(
        &self,
        election_id: &str,
        prefix: &str,
    ) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT name FROM artifacts WHERE election_id = $1 AND name LIKE $2 ORDER BY name",
        )
        .bind(election_id)
        .bind(format!("{prefix}%"))
        .fetch_all(&self.pool)
        .await?)
    }

    async fn insert_job(
        &self,
        job: &JobRow,
        chunks: &[ChunkRow],
        election_in: Option<ElectionState>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        // The election's state is checked in the insert itself: a job of the kind that
        // finished between planning and here has moved the election on.
        let sql = match election_in {
            None => format!(
                "INSERT INTO jobs ({JOB_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, NULL)"
            ),
            Some(_) => format!(
                "INSERT INTO jobs ({JOB_COLUMNS}) SELECT $1, $2, $3, $4, $5, $6, $7, NULL, NULL
                 WHERE EXISTS (SELECT 1 FROM elections WHERE id = $2 AND state = $8)"
            ),
        };
        let mut insert = sqlx::query(&sql)
            .bind(&job.id)
            .bind(&job.election_id)
            .bind(job.kind.as_str())
            .bind(job.state.as_str())
            .bind(job.total_chunks as i64)
            .bind(&job.params_json)
            .bind(job.created_at);
        if let Some(state) = election_in {
            insert = insert.bind(state.as_str());
        }
        let inserted = insert.execute(&mut *tx).await;
        // The index `one_active_job_per_kind` refuses a second running job of a kind.
        let refused = inserted
            .as_ref()
            .is_ok_and(|done| done.rows_affected() == 0);
        if refused || is_unique_violation(&inserted) {
            return Ok(false);
        }
        inserted?;
        // Many rows per statement: a job of a few hundred chunks is recorded in a few round trips.
        for batch in chunks.chunks(200) {
            let values: Vec<String> = (0..batch.len())
                .map(|i| {
                    let n = i * 5;
                    format!(
                        "(${}, ${}, ${}, ${}, ${})",
                        n + 1,
                        n + 2,
                        n + 3,
                        n + 4,
                        n + 5
                    )
                })
                .collect();
            let sql = format!(
                "INSERT INTO job_chunks (job_id, chunk_index, queue, spec, state) VALUES {}",
                values.join(", ")
            );
            let mut query = sqlx::query(&sql);
            for c in batch {
                query = query
                    .bind(&c.job_id)
                    .bind(c.index as i64)
                    .bind(c.queue.as_str())
                    .bind(&c.spec_json)
                    .bind(c.state.as_str());
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn job(&self, id: &str) -> Result<Option<JobRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(job_row).transpose()
    }

    async fn jobs_in_state(&self, state: JobState) -> Result<Vec<JobRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE state = $1 ORDER BY created_at"
        ))
        .bind(state.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_row).collect()
    }

    async fn election_jobs(&self, election_id: &str) -> Result<Vec<JobRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE election_id = $1 ORDER BY created_at DESC, id"
        ))
        .bind(election_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_row).collect()
    }

    async fn latest_job(
        &self,
        election_id: &str,
        kind: JobKind,
    ) -> Result<Option<JobRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE election_id = $1 AND kind = $2 ORDER BY created_at DESC, id LIMIT 1"
        ))
        .bind(election_id)
        .bind(kind.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(job_row).transpose()
    }

    async fn set_job_state(
        &self,
        id: &str,
        from: &[JobState],
        to: JobState,
        error: Option<&str>,
    ) -> Result<bool, StoreError> {
        let allowed: Vec<String> = from.iter().map(|s| format!("'{}'", s.as_str())).collect();
        let finished = matches!(to, JobState::Done | JobState::Failed).then(now_ms);
        let done = sqlx::query(&format!(
            "UPDATE jobs SET state = $1, finished_at = $2, error = $3 WHERE id = $4 AND state IN ({})",
            allowed.join(", ")
        ))
        .bind(to.as_str())
        .bind(finished)
        .bind(error)
        .bind(id)
        .execute(&self.pool)
        .await;
        // Resuming while another job of the kind runs: `one_active_job_per_kind` refuses.
        if is_unique_violation(&done) {
            return Ok(false);
        }
        Ok(done?.rows_affected() == 1)
    }

    async fn chunks(&self, job_id: &str) -> Result<Vec<ChunkRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {CHUNK_COLUMNS} FROM job_chunks WHERE job_id = $1 ORDER BY chunk_index"
        ))
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(chunk_row).collect()
    }

    async fn chunk(&self, job_id: &str, index: u64) -> Result<Option<ChunkRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {CHUNK_COLUMNS} FROM job_chunks WHERE job_id = $1 AND chunk_index = $2"
        ))
        .bind(job_id)
        .bind(index as i64)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(chunk_row).transpose()
    }

    async fn chunk_counts(&self, job_id: &str) -> Result<ChunkCounts, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS total,
                    COALESCE(SUM(CASE WHEN state = 'done' THEN 1 ELSE 0 END), 0) AS done,
                    COALESCE(SUM(CASE WHEN state = 'dead' THEN 1 ELSE 0 END), 0) AS dead
             FROM job_chunks WHERE job_id = $1",
        )
        .bind(job_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(ChunkCounts {
            total: row.try_get::<i64, _>("total")? as u64,
            done: row.try_get::<i64, _>("done")? as u64,
            dead: row.try_get::<i64, _>("dead")? as u64,
        })
    }

    async fn chunk_results(&self, job_id: &str) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let rows = sqlx::query("SELECT chunk_index, result FROM job_chunks WHERE job_id = $1 AND state = 'done' ORDER BY chunk_index")
            .bind(job_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get::<i64, _>("chunk_index")? as u64,
                    r.try_get("result")?,
                ))
            })
            .collect()
    }

    async fn chunk_result(&self, job_id: &str, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let result: Option<Option<Vec<u8>>> = sqlx::query_scalar(
            "SELECT result FROM job_chunks WHERE job_id = $1 AND chunk_index = $2",
        )
        .bind(job_id)
        .bind(index as i64)
        .fetch_optional(&self.pool)
        .await?;
        Ok(result.flatten())
    }

    async fn mark_published(&self, job_id: &str, indexes: &[u64]) -> Result<(), StoreError> {
        let now = now_ms();
        for batch in indexes.chunks(500) {
            let list: Vec<String> = batch.iter().map(u64::to_string).collect();
            sqlx::query(&format!(
                "UPDATE job_chunks SET published_at = $1 WHERE job_id = $2 AND chunk_index IN ({})",
                list.join(",")
            ))
            .bind(now)
            .bind(job_id)
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    async fn unpublished_chunks(&self, published_before: i64) -> Result<Vec<ChunkRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM job_chunks c JOIN jobs j ON j.id = c.job_id
             WHERE j.state = 'running' AND c.state = 'pending' AND (c.published_at IS NULL OR c.published_at < $1)
             ORDER BY c.job_id, c.chunk_index LIMIT 10000",
            CHUNK_COLUMNS.split(", ").map(|c| format!("c.{c}")).collect::<Vec<_>>().join(", ")
        ))
        .bind(published_before)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(chunk_row).collect()
    }

    async fn start_chunk(&self, job_id: &str, index: u64) -> Result<(), StoreError> {
        sqlx::query("UPDATE job_chunks SET attempts = attempts + 1, started_at = $1 WHERE job_id = $2 AND chunk_index = $3")
            .bind(now_ms())
            .bind(job_id)
            .bind(index as i64)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn complete_chunk(
        &self,
        job_id: &str,
        index: u64,
        result: &[u8],
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE job_chunks SET state = 'done', result = $1, finished_at = $2, error = NULL
             WHERE job_id = $3 AND chunk_index = $4 AND state <> 'done'",
        )
        .bind(result)
        .bind(now_ms())
        .bind(job_id)
        .bind(index as i64)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn fail_chunk(
        &self,
        job_id: &str,
        index: u64,
        error: &str,
        state: ChunkState,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE job_chunks SET state = $1, error = $2 WHERE job_id = $3 AND chunk_index = $4 AND state <> 'done'")
            .bind(state.as_str())
            .bind(error)
            .bind(job_id)
            .bind(index as i64)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn revive_dead_chunks(&self, job_id: &str) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE job_chunks SET state = 'pending', published_at = NULL, attempts = 0 WHERE job_id = $1 AND state = 'dead'",
        )
        .bind(job_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}

/// Connection loss, a busy or locked database, and aborted transactions (serialization
/// failures, deadlocks, a server shutting down) may pass; anything else is a refusal
/// that will not. Codes: PostgreSQL SQLSTATEs, SQLite (extended) result codes.
pub fn is_transient(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => matches!(
            db.code().as_deref(),
            Some("40001" | "40P01" | "57P01" | "5" | "6" | "261" | "262" | "517")
        ),
        _ => false,
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
    use crate::ports::store::CodeChainer;

    fn election(id: &str) -> ElectionRow {
        ElectionRow {
            id: id.into(),
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
            election_id: "e".into(),
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

    fn rules(fingerprints: &[String]) -> CastRules<'_> {
        CastRules {
            fingerprints,
            max_challenges: 2,
        }
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
        store.record_ballot(b, link, &rules(&fingerprints)).await
    }

    fn tally_job(id: &str) -> JobRow {
        JobRow {
            id: id.into(),
            election_id: "e".into(),
            kind: JobKind::Tally,
            state: JobState::Running,
            total_chunks: 0,
            params_json: "{}".into(),
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
                store.record_ballot(&b, link, &rules(&fingerprints)).await
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
