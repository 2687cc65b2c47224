//! The voter registry in a SQLite file, for the embedded single-process mode.
//!
//! The in-memory registry forgets the eligible list and every decision when
//! the process stops; the embedded mode must not, so it keeps both on disk.
//! A voter row carries its `voted` flag and repeated-attempt count, and the
//! eligibility check and the mark are one `UPDATE … RETURNING`: a missing row
//! is "not eligible", and the old `voted` flag tells acceptance from a
//! duplicate. A batch of decisions is one `BEGIN IMMEDIATE` transaction on a
//! one-connection writer pool, so decisions are serialised and durable
//! together; status reads use a separate pool and never wait for writers.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection, SqlitePool};

use super::registry::{BoxFuture, MarkOutcome, RegistryError, VoterRegistry};
use super::voter_hash::VoterHash;
use crate::domain::now_ms;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS voters (
    voter_hash BLOB PRIMARY KEY,
    voted INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outcomes (
    request_id TEXT PRIMARY KEY,
    outcome INTEGER NOT NULL,
    decided_at INTEGER NOT NULL
) WITHOUT ROWID;";

/// Hashes per multi-row `INSERT` when loading.
const LOAD_CHUNK: usize = 5_000;
/// Outcome codes, as in the Redis script: -1 not eligible, 0 accepted, n duplicates.
const NOT_ELIGIBLE: i64 = -1;

#[derive(Clone)]
pub struct SqliteRegistry {
    writer: SqlitePool,
    readers: SqlitePool,
}

impl SqliteRegistry {
    /// Opens (or creates) the registry file.
    pub async fn open(path: &Path) -> Result<Self, RegistryError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        sqlx::raw_sql(SCHEMA).execute(&writer).await?;
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

/// Marks `hash` voted and returns its outcome code.
async fn mark(conn: &mut SqliteConnection, hash: &VoterHash) -> Result<i64, RegistryError> {
    let attempts: Option<i64> = sqlx::query_scalar(
        "UPDATE voters SET attempts = attempts + voted, voted = 1
         WHERE voter_hash = $1 RETURNING attempts",
    )
    .bind(hash.as_bytes().as_slice())
    .fetch_optional(conn)
    .await?;
    Ok(attempts.unwrap_or(NOT_ELIGIBLE))
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

async fn decide_one(
    conn: &mut SqliteConnection,
    request_id: &str,
    hash: &VoterHash,
) -> Result<MarkOutcome, RegistryError> {
    if let Some(code) = known_outcome(conn, request_id).await? {
        return outcome_of(code);
    }
    let code = mark(conn, hash).await?;
    sqlx::query("INSERT INTO outcomes (request_id, outcome, decided_at) VALUES ($1, $2, $3)")
        .bind(request_id)
        .bind(code)
        .bind(now_ms())
        .execute(conn)
        .await?;
    outcome_of(code)
}

fn outcome_of(code: i64) -> Result<MarkOutcome, RegistryError> {
    match code {
        NOT_ELIGIBLE => Ok(MarkOutcome::NotEligible),
        0 => Ok(MarkOutcome::Accepted),
        attempts if attempts > 0 => Ok(MarkOutcome::Duplicate {
            attempts: attempts.unsigned_abs(),
        }),
        other => Err(RegistryError::UnexpectedReply(other)),
    }
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

    fn check_and_mark(&self, hash: VoterHash) -> BoxFuture<'_, Result<MarkOutcome, RegistryError>> {
        boxed(async move {
            let code = self
                .write(|conn| boxed(async move { mark(conn, &hash).await }))
                .await?;
            outcome_of(code)
        })
    }

    fn mark_voted(&self, hashes: Vec<VoterHash>) -> BoxFuture<'_, Result<(), RegistryError>> {
        boxed(async move {
            self.write(|conn| {
                boxed(async move {
                    for hash in &hashes {
                        sqlx::query("UPDATE voters SET voted = 1 WHERE voter_hash = $1")
                            .bind(hash.as_bytes().as_slice())
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .await
        })
    }

    fn decide(
        &self,
        votes: Vec<(String, VoterHash)>,
    ) -> BoxFuture<'_, Result<Vec<MarkOutcome>, RegistryError>> {
        boxed(async move {
            self.write(|conn| {
                boxed(async move {
                    let mut outcomes = Vec::with_capacity(votes.len());
                    for (request_id, hash) in &votes {
                        outcomes.push(decide_one(conn, request_id, hash).await?);
                    }
                    Ok(outcomes)
                })
            })
            .await
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
            code.map(outcome_of).transpose()
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

    fn clear_voted(&self) -> BoxFuture<'_, Result<(), RegistryError>> {
        boxed(async move {
            sqlx::query("UPDATE voters SET voted = 0, attempts = 0 WHERE voted = 1")
                .execute(&self.writer)
                .await?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::referendum::registry::tests::{
        check_contract, check_decide_contract, check_race_accepts_once,
    };

    async fn open(dir: &tempfile::TempDir) -> SqliteRegistry {
        SqliteRegistry::open(&dir.path().join("registry.db"))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn sqlite_registry_honours_the_contract() {
        let dir = tempfile::tempdir().unwrap();
        check_contract(&open(&dir).await).await;
    }

    #[tokio::test]
    async fn sqlite_registry_decides_requests_once_and_remembers_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        check_decide_contract(&open(&dir).await).await;
        let reopened = open(&dir).await;
        assert_eq!(
            reopened.outcome("vote-1".to_owned()).await.unwrap(),
            Some(MarkOutcome::Accepted)
        );
        assert_eq!(reopened.eligible_count().await.unwrap(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite_registry_accepts_a_raced_hash_once_across_handles() {
        let dir = tempfile::tempdir().unwrap();
        let mut handles: Vec<Arc<dyn VoterRegistry>> = Vec::new();
        for _ in 0..4 {
            let registry: Arc<dyn VoterRegistry> = Arc::new(open(&dir).await);
            handles.extend(std::iter::repeat_n(registry, 8));
        }
        check_race_accepts_once(handles).await;
    }
}
