//! The voter registry in a SQLite file, for the embedded single-process mode.
//!
//! The embedded mode must not forget the eligible list or any decision when
//! the process stops, so it keeps both on disk. A voter row carries its counted
//! attempt (sequence and request id) and its repeated-attempt count; a missing
//! row is "not eligible". A batch of decisions is one `BEGIN IMMEDIATE`
//! transaction on a one-connection writer pool, so decisions are serialised and
//! durable together and follow exactly the rules of the Redis script (see
//! [`crate::ports::voter_registry`]); status reads use a separate pool and never wait for
//! writers. `synchronous = FULL`: a decision answered to a voter survives a
//! power cut.

use std::future::Future;
use std::path::Path;

use sqlx::sqlite::SqlitePoolOptions;
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection, SqlitePool};

use super::sqlite::{self, Durability};
use crate::domain::now_ms;
use crate::domain::voter_hash::{LockKey, VoterHash};
use crate::ports::voter_registry::{
    state_of, Attempt, BoxFuture, CodeLock, Counted, MarkOutcome, RegistryError, RegistryState,
    VoterRegistry, MAX_LOCKS_LISTED,
};

impl From<sqlx::Error> for RegistryError {
    fn from(err: sqlx::Error) -> Self {
        RegistryError::Backend(format!("registry database: {err}"))
    }
}

/// The file format's version, in `PRAGMA user_version`.
const FORMAT: i64 = 2;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS voters (
    voter_hash BLOB PRIMARY KEY,
    attempts INTEGER NOT NULL DEFAULT 0,
    counted_sequence INTEGER,
    counted_request TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outcomes (
    request_id TEXT PRIMARY KEY,
    outcome INTEGER NOT NULL,
    decided_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS code_failures (
    lock_key BLOB PRIMARY KEY,
    law_id TEXT NOT NULL,
    failures INTEGER NOT NULL,
    locked_at INTEGER,
    locked_sequence INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS registry_marker (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    loaded INTEGER NOT NULL,
    loads INTEGER NOT NULL,
    loaded_at INTEGER NOT NULL,
    ready INTEGER NOT NULL DEFAULT 0
);";

/// Hashes per multi-row `INSERT` when loading.
const LOAD_CHUNK: usize = 5_000;

#[derive(Clone)]
pub struct SqliteRegistry {
    writer: SqlitePool,
    readers: SqlitePool,
}

impl SqliteRegistry {
    /// Opens (or creates) the registry file; a file of an older format is refused.
    pub async fn open(path: &Path) -> Result<Self, RegistryError> {
        let options = sqlite::options(path, Durability::Acknowledged);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        check_format(&writer, path).await?;
        sqlx::raw_sql(SCHEMA).execute(&writer).await?;
        sqlx::raw_sql(&format!("PRAGMA user_version = {FORMAT}"))
            .execute(&writer)
            .await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await?;
        Ok(SqliteRegistry { writer, readers })
    }

    /// Runs `work` in one write transaction, taking the write lock up front.
    async fn write<T, F>(&self, work: F) -> Result<T, RegistryError>
    where
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, RegistryError>>,
    {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let value = work(&mut tx).await?;
        tx.commit().await?;
        Ok(value)
    }
}

/// Refuses a registry written by an older version (its `voters` table differs).
async fn check_format(writer: &SqlitePool, path: &Path) -> Result<(), RegistryError> {
    let version: i64 = sqlx::query_scalar("PRAGMA user_version")
        .fetch_one(writer)
        .await?;
    let tables: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'")
        .fetch_one(writer)
        .await?;
    if tables > 0 && version != FORMAT {
        return Err(RegistryError::Corrupt(format!(
            "{} is a voter registry of an older version (format {version}, this one reads \
             {FORMAT}); start on a new data directory",
            path.display()
        )));
    }
    Ok(())
}

async fn insert_eligible(
    conn: &mut SqliteConnection,
    hashes: &[VoterHash],
) -> Result<u64, RegistryError> {
    let mut added = 0;
    for chunk in hashes.chunks(LOAD_CHUNK) {
        let mut insert = QueryBuilder::<Sqlite>::new("INSERT INTO voters (voter_hash) ");
        insert.push_values(chunk, |mut row, hash| {
            row.push_bind(hash.as_bytes().as_slice());
        });
        insert.push(" ON CONFLICT (voter_hash) DO NOTHING");
        added += insert.build().execute(&mut *conn).await?.rows_affected();
    }
    Ok(added)
}

async fn is_ready(conn: &mut SqliteConnection) -> Result<bool, RegistryError> {
    let ready: Option<i64> = sqlx::query_scalar("SELECT ready FROM registry_marker WHERE id = 1")
        .fetch_optional(conn)
        .await?;
    Ok(ready == Some(1))
}

async fn known_outcome(
    conn: &mut SqliteConnection,
    request_id: &str,
) -> Result<Option<i64>, RegistryError> {
    let code = sqlx::query_scalar("SELECT outcome FROM outcomes WHERE request_id = $1")
        .bind(request_id)
        .fetch_optional(conn)
        .await?;
    Ok(code)
}

async fn remember(
    conn: &mut SqliteConnection,
    request_id: &str,
    code: i64,
    replace: bool,
) -> Result<(), RegistryError> {
    let sql = if replace {
        "INSERT INTO outcomes (request_id, outcome, decided_at) VALUES ($1, $2, $3)
         ON CONFLICT (request_id) DO UPDATE SET outcome = EXCLUDED.outcome"
    } else {
        "INSERT INTO outcomes (request_id, outcome, decided_at) VALUES ($1, $2, $3)
         ON CONFLICT (request_id) DO NOTHING"
    };
    sqlx::query(sql)
        .bind(request_id)
        .bind(code)
        .bind(now_ms())
        .execute(conn)
        .await?;
    Ok(())
}

/// The earliest-wins rule for an eligible voter (as the Redis script's): returns
/// the attempt's outcome code, or `None` if the voter is not eligible.
async fn count(
    conn: &mut SqliteConnection,
    attempt: &Attempt,
) -> Result<Option<i64>, RegistryError> {
    let hash = attempt.voter_hash.as_bytes().as_slice();
    let row =
        sqlx::query("SELECT counted_sequence, counted_request FROM voters WHERE voter_hash = $1")
            .bind(hash)
            .fetch_optional(&mut *conn)
            .await?;
    let Some(row) = row else { return Ok(None) };
    let counted: Option<(i64, String)> = row.get::<Option<i64>, _>(0).zip(row.get(1));
    let sequence = i64::try_from(attempt.sequence)
        .map_err(|_| RegistryError::Corrupt("sequence out of range".into()))?;
    let take_place = match &counted {
        None => true,
        Some((_, request)) if *request == attempt.request_id => return Ok(Some(0)),
        Some((counted_sequence, _)) => sequence < *counted_sequence,
    };
    if !take_place {
        return Ok(Some(add_attempt(conn, hash).await?));
    }
    sqlx::query(
        "UPDATE voters SET counted_sequence = $1, counted_request = $2 WHERE voter_hash = $3",
    )
    .bind(sequence)
    .bind(&attempt.request_id)
    .bind(hash)
    .execute(&mut *conn)
    .await?;
    if let Some((_, overturned)) = counted {
        let attempts = add_attempt(conn, hash).await?;
        remember(conn, &overturned, attempts, true).await?;
    }
    Ok(Some(0))
}

/// True if the registry already counts exactly this attempt for its voter (the
/// usual case when the aggregator confirms): nothing to write.
async fn already_counted(
    conn: &mut SqliteConnection,
    attempt: &Attempt,
) -> Result<bool, RegistryError> {
    let counted: Option<Option<String>> =
        sqlx::query_scalar("SELECT counted_request FROM voters WHERE voter_hash = $1")
            .bind(attempt.voter_hash.as_bytes().as_slice())
            .fetch_optional(conn)
            .await?;
    Ok(counted.flatten().as_deref() == Some(attempt.request_id.as_str()))
}

async fn add_attempt(conn: &mut SqliteConnection, hash: &[u8]) -> Result<i64, RegistryError> {
    let attempts = sqlx::query_scalar(
        "UPDATE voters SET attempts = attempts + 1 WHERE voter_hash = $1 RETURNING attempts",
    )
    .bind(hash)
    .fetch_one(conn)
    .await?;
    Ok(attempts)
}

/// True if the NAS and law were locked by an attempt earlier than this one.
async fn is_locked(conn: &mut SqliteConnection, attempt: &Attempt) -> Result<bool, RegistryError> {
    let locked: Option<Option<i64>> =
        sqlx::query_scalar("SELECT locked_sequence FROM code_failures WHERE lock_key = $1")
            .bind(attempt.lock_key.0.as_bytes().as_slice())
            .fetch_optional(conn)
            .await?;
    let sequence = i64::try_from(attempt.sequence).unwrap_or(i64::MAX);
    Ok(matches!(locked, Some(Some(by)) if sequence > by))
}

/// Counts a wrong code, locking the NAS and law at `max_wrong_codes`.
async fn count_wrong_code(
    conn: &mut SqliteConnection,
    attempt: &Attempt,
    max_wrong_codes: u32,
) -> Result<(), RegistryError> {
    let key = attempt.lock_key.0.as_bytes().as_slice();
    sqlx::query(
        "INSERT INTO code_failures (lock_key, law_id, failures) VALUES ($1, $2, 1)
         ON CONFLICT (lock_key) DO UPDATE SET failures = failures + 1",
    )
    .bind(key)
    .bind(&attempt.law_id)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE code_failures SET locked_at = $1, locked_sequence = $4
         WHERE lock_key = $2 AND locked_at IS NULL AND failures >= $3",
    )
    .bind(now_ms())
    .bind(key)
    .bind(i64::from(max_wrong_codes.max(1)))
    .bind(i64::try_from(attempt.sequence).unwrap_or(i64::MAX))
    .execute(conn)
    .await?;
    Ok(())
}

async fn decide_one(
    conn: &mut SqliteConnection,
    attempt: &Attempt,
    max_wrong_codes: u32,
) -> Result<MarkOutcome, RegistryError> {
    if let Some(code) = known_outcome(conn, &attempt.request_id).await? {
        return MarkOutcome::from_code(code);
    }
    let outcome = if is_locked(conn, attempt).await? {
        MarkOutcome::Locked
    } else if let Some(code) = count(conn, attempt).await? {
        MarkOutcome::from_code(code)?
    } else {
        count_wrong_code(conn, attempt, max_wrong_codes).await?;
        MarkOutcome::NotEligible
    };
    remember(conn, &attempt.request_id, outcome.code(), false).await?;
    Ok(outcome)
}

fn boxed<'a, T>(
    future: impl Future<Output = Result<T, RegistryError>> + Send + 'a,
) -> BoxFuture<'a, Result<T, RegistryError>> {
    Box::pin(future)
}

impl VoterRegistry for SqliteRegistry {
    fn load(&self, hashes: Vec<VoterHash>) -> BoxFuture<'_, Result<u64, RegistryError>> {
        boxed(async move {
            self.write(|conn| boxed(async move { insert_eligible(conn, &hashes).await }))
                .await
        })
    }

    fn finish_load(&self, loaded: u64) -> BoxFuture<'_, Result<(), RegistryError>> {
        boxed(async move {
            sqlx::query(
                "INSERT INTO registry_marker (id, loaded, loads, loaded_at) VALUES (1, $1, 1, $2)
                 ON CONFLICT (id) DO UPDATE SET loaded = EXCLUDED.loaded,
                   loads = loads + 1, loaded_at = EXCLUDED.loaded_at",
            )
            .bind(i64::try_from(loaded).unwrap_or(i64::MAX))
            .bind(now_ms())
            .execute(&self.writer)
            .await?;
            Ok(())
        })
    }

    fn state(&self) -> BoxFuture<'_, Result<RegistryState, RegistryError>> {
        boxed(async move {
            let row = sqlx::query("SELECT loaded, ready FROM registry_marker WHERE id = 1")
                .fetch_optional(&self.readers)
                .await?;
            Ok(match row {
                None => state_of(None, false),
                Some(row) => state_of(
                    Some(row.get::<i64, _>(0).unsigned_abs()),
                    row.get::<i64, _>(1) == 1,
                ),
            })
        })
    }

    fn decide(
        &self,
        attempts: Vec<Attempt>,
        max_wrong_codes: u32,
    ) -> BoxFuture<'_, Result<Vec<MarkOutcome>, RegistryError>> {
        boxed(async move {
            self.write(|conn| {
                boxed(async move {
                    if !is_ready(conn).await? {
                        return Err(RegistryError::NotReady);
                    }
                    let mut outcomes = Vec::with_capacity(attempts.len());
                    for attempt in &attempts {
                        outcomes.push(decide_one(conn, attempt, max_wrong_codes).await?);
                    }
                    Ok(outcomes)
                })
            })
            .await
        })
    }

    fn restore(&self, counted: Vec<Counted>) -> BoxFuture<'_, Result<(), RegistryError>> {
        boxed(async move {
            self.write(|conn| {
                boxed(async move {
                    for counted in &counted {
                        let attempt = Attempt::from(counted);
                        let hash = attempt.voter_hash.as_bytes().as_slice();
                        if already_counted(conn, &attempt).await? {
                            continue;
                        }
                        sqlx::query(
                            "INSERT INTO voters (voter_hash) VALUES ($1) ON CONFLICT DO NOTHING",
                        )
                        .bind(hash)
                        .execute(&mut *conn)
                        .await?;
                        let code = count(conn, &attempt).await?.unwrap_or(0);
                        remember(conn, &attempt.request_id, code, true).await?;
                    }
                    Ok(())
                })
            })
            .await
        })
    }

    fn restore_outcomes(
        &self,
        outcomes: Vec<(String, MarkOutcome)>,
    ) -> BoxFuture<'_, Result<(), RegistryError>> {
        boxed(async move {
            self.write(|conn| {
                boxed(async move {
                    for (request_id, outcome) in &outcomes {
                        remember(conn, request_id, outcome.code(), false).await?;
                    }
                    Ok(())
                })
            })
            .await
        })
    }

    /// One process owns an embedded registry, so the right is always granted.
    fn begin_rebuild(&self) -> BoxFuture<'_, Result<bool, RegistryError>> {
        boxed(async { Ok(true) })
    }

    fn mark_ready(&self) -> BoxFuture<'_, Result<(), RegistryError>> {
        boxed(async move {
            sqlx::query("UPDATE registry_marker SET ready = 1 WHERE id = 1")
                .execute(&self.writer)
                .await?;
            Ok(())
        })
    }

    fn outcome(
        &self,
        request_id: String,
    ) -> BoxFuture<'_, Result<Option<MarkOutcome>, RegistryError>> {
        boxed(async move {
            let code: Option<i64> =
                sqlx::query_scalar("SELECT outcome FROM outcomes WHERE request_id = $1")
                    .bind(request_id)
                    .fetch_optional(&self.readers)
                    .await?;
            code.map(MarkOutcome::from_code).transpose()
        })
    }

    fn outcomes(
        &self,
        request_ids: Vec<String>,
    ) -> BoxFuture<'_, Result<Vec<Option<MarkOutcome>>, RegistryError>> {
        boxed(async move {
            let mut outcomes = Vec::with_capacity(request_ids.len());
            let mut conn = self.readers.acquire().await?;
            for request_id in request_ids {
                let code: Option<i64> =
                    sqlx::query_scalar("SELECT outcome FROM outcomes WHERE request_id = $1")
                        .bind(request_id)
                        .fetch_optional(&mut *conn)
                        .await?;
                outcomes.push(code.map(MarkOutcome::from_code).transpose()?);
            }
            Ok(outcomes)
        })
    }

    fn eligible_count(&self) -> BoxFuture<'_, Result<u64, RegistryError>> {
        boxed(async move {
            let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM voters")
                .fetch_one(&self.readers)
                .await?;
            Ok(count.unsigned_abs())
        })
    }

    fn locks(&self) -> BoxFuture<'_, Result<(Vec<CodeLock>, u64), RegistryError>> {
        boxed(async move {
            let total: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM code_failures WHERE locked_at IS NOT NULL",
            )
            .fetch_one(&self.readers)
            .await?;
            let rows = sqlx::query(
                "SELECT lock_key, law_id, locked_at FROM code_failures
                 WHERE locked_at IS NOT NULL ORDER BY locked_at LIMIT $1",
            )
            .bind(MAX_LOCKS_LISTED as i64)
            .fetch_all(&self.readers)
            .await?;
            let locks = rows
                .iter()
                .map(|row| {
                    let key: Vec<u8> = row.get(0);
                    let bytes: [u8; 32] = key
                        .try_into()
                        .map_err(|_| RegistryError::Corrupt("a lock key is not 32 bytes".into()))?;
                    Ok(CodeLock {
                        lock_id: VoterHash::from_bytes(bytes).to_hex(),
                        law_id: row.get(1),
                        locked_at: row.get(2),
                    })
                })
                .collect::<Result<_, RegistryError>>()?;
            Ok((locks, total.unsigned_abs()))
        })
    }

    fn lift_lock(&self, lock: LockKey) -> BoxFuture<'_, Result<bool, RegistryError>> {
        boxed(async move {
            let lifted: Option<Option<i64>> = sqlx::query_scalar(
                "DELETE FROM code_failures WHERE lock_key = $1 RETURNING locked_at",
            )
            .bind(lock.0.as_bytes().as_slice())
            .fetch_optional(&self.writer)
            .await?;
            Ok(matches!(lifted, Some(Some(_))))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::adapters::registry_redis::tests::{
        attempt, check_code_lockout, check_contract, check_earliest_attempt_counts,
        check_race_counts_the_earliest,
    };

    async fn open(dir: &tempfile::TempDir) -> SqliteRegistry {
        SqliteRegistry::open(&dir.path().join("registry.db"))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn sqlite_registry_honours_the_contract_and_remembers_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        check_contract(&open(&dir).await).await;
        let reopened = open(&dir).await;
        assert_eq!(
            reopened.outcome("vote-1".to_owned()).await.unwrap(),
            Some(MarkOutcome::Accepted)
        );
        assert_eq!(reopened.eligible_count().await.unwrap(), 5);
        let again = reopened.decide(vec![attempt(0, 9, 1)], 5).await.unwrap();
        assert_eq!(
            again,
            vec![MarkOutcome::Accepted],
            "sequence 1 is earlier than 10"
        );
    }

    #[tokio::test]
    async fn sqlite_registry_counts_the_earliest_attempt() {
        let dir = tempfile::tempdir().unwrap();
        check_earliest_attempt_counts(&open(&dir).await).await;
    }

    #[tokio::test]
    async fn sqlite_registry_locks_out_code_guessing() {
        let dir = tempfile::tempdir().unwrap();
        check_code_lockout(&open(&dir).await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite_registry_counts_the_earliest_of_raced_attempts_across_handles() {
        let dir = tempfile::tempdir().unwrap();
        let mut handles: Vec<Arc<dyn VoterRegistry>> = Vec::new();
        for _ in 0..4 {
            let registry: Arc<dyn VoterRegistry> = Arc::new(open(&dir).await);
            handles.extend(std::iter::repeat_n(registry, 8));
        }
        check_race_counts_the_earliest(handles).await;
    }

    #[tokio::test]
    async fn a_registry_of_an_older_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.db");
        let old = SqlitePool::connect(&format!("sqlite://{}?mode=rwc", path.display()))
            .await
            .unwrap();
        sqlx::raw_sql("CREATE TABLE voters (voter_hash BLOB PRIMARY KEY, voted INTEGER)")
            .execute(&old)
            .await
            .unwrap();
        old.close().await;
        let err = SqliteRegistry::open(&path).await.err().expect("refused");
        assert!(err.to_string().contains("older version"), "{err}");
    }
}
