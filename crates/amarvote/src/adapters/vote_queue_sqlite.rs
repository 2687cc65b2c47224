//! The embedded vote queue: a table in its own SQLite file, for `amarvote serve`.
//!
//! An in-process channel would be simpler, but a vote answered with 202 must
//! survive a crash, so the embedded mode keeps the broker's semantics on disk:
//! publishing commits (WAL, `synchronous=FULL`) before it returns; a consumer
//! claims rows by pushing their `visible_at` past a visibility timeout, so an
//! unsettled claim comes back by itself; a row claimed [`MAX_CLAIMS`] times
//! without being settled is dead-lettered instead of looping forever. Every
//! batch operation is a single statement; a one-connection writer pool keeps
//! SQLite's single writer from returning `SQLITE_BUSY` under load.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sqlx::sqlite::SqlitePoolOptions;
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};
use tokio::sync::Notify;

use super::sqlite::{self, Durability};
use crate::domain::now_ms;
use crate::ports::vote_queue::{Receipt, Stream, VoteDelivery, VoteQueue, VoteQueueError};

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS vote_queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    stream TEXT NOT NULL,
    body BLOB NOT NULL,
    claims INTEGER NOT NULL DEFAULT 0,
    visible_at INTEGER NOT NULL,
    dead INTEGER NOT NULL DEFAULT 0,
    reason TEXT
);
CREATE INDEX IF NOT EXISTS vote_queue_ready ON vote_queue (stream, dead, visible_at, id);";

/// Claims after which an unsettled message is taken to be poison.
pub const MAX_CLAIMS: i64 = 10;
/// Rows per multi-row `INSERT` (three bound values each).
const INSERT_CHUNK: usize = 500;
/// How often an idle consumer looks for messages published by another process.
const POLL: Duration = Duration::from_millis(20);

#[derive(Clone)]
pub struct SqliteVoteQueue {
    writer: SqlitePool,
    visibility: Duration,
    wakeups: Arc<HashMap<Stream, Notify>>,
}

impl SqliteVoteQueue {
    /// Opens (or creates) the queue file; a claimed message stays hidden for `visibility`.
    pub async fn open(path: &Path, visibility: Duration) -> Result<Self, VoteQueueError> {
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(sqlite::options(path, Durability::Acknowledged))
            .await?;
        sqlx::raw_sql(SCHEMA).execute(&writer).await?;
        let wakeups = Stream::ALL
            .into_iter()
            .map(|s| (s, Notify::new()))
            .collect();
        Ok(SqliteVoteQueue {
            writer,
            visibility,
            wakeups: Arc::new(wakeups),
        })
    }

    /// Makes every claimed message visible again at once: called when the one
    /// process that owns the queue starts, since the claims it finds are a dead
    /// process's, and waiting out their visibility timeout would leave those
    /// votes undecided (and their voters' statuses pending) for no reason.
    /// Returns how many claims were released.
    pub async fn release_claims(&self) -> Result<u64, VoteQueueError> {
        let released =
            sqlx::query("UPDATE vote_queue SET visible_at = 0 WHERE dead = 0 AND visible_at > $1")
                .bind(now_ms())
                .execute(&self.writer)
                .await?;
        Ok(released.rows_affected())
    }

    async fn insert(&self, stream: Stream, bodies: &[Vec<u8>]) -> Result<(), VoteQueueError> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        for chunk in bodies.chunks(INSERT_CHUNK) {
            let mut insert =
                QueryBuilder::<Sqlite>::new("INSERT INTO vote_queue (stream, body, visible_at) ");
            insert.push_values(chunk, |mut row, body| {
                row.push_bind(stream.queue_name())
                    .push_bind(body.as_slice())
                    .push_bind(now);
            });
            insert.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Claims up to `limit` visible messages in one statement.
    async fn claim(&self, stream: Stream, limit: usize) -> Result<Vec<Claimed>, VoteQueueError> {
        let now = now_ms();
        let hidden_until = now + i64::try_from(self.visibility.as_millis()).unwrap_or(i64::MAX);
        let rows = sqlx::query(
            "UPDATE vote_queue SET claims = claims + 1, visible_at = $1
             WHERE id IN (SELECT id FROM vote_queue
                          WHERE stream = $2 AND dead = 0 AND visible_at <= $3
                          ORDER BY visible_at, id LIMIT $4)
             RETURNING id, body, claims",
        )
        .bind(hidden_until)
        .bind(stream.queue_name())
        .bind(now)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.writer)
        .await?;
        Ok(rows
            .iter()
            .map(|row| Claimed {
                id: row.get("id"),
                body: row.get("body"),
                claims: row.get("claims"),
            })
            .collect())
    }

    /// Claims messages, dead-letters the poison ones, returns the rest.
    async fn claim_deliveries(
        &self,
        stream: Stream,
        limit: usize,
    ) -> Result<Vec<VoteDelivery>, VoteQueueError> {
        let (poison, fresh): (Vec<Claimed>, Vec<Claimed>) = self
            .claim(stream, limit)
            .await?
            .into_iter()
            .partition(|c| c.claims > MAX_CLAIMS);
        if !poison.is_empty() {
            let ids = poison.iter().map(|c| c.id).collect();
            self.mark_dead(ids, "claimed too many times without being settled")
                .await?;
        }
        Ok(fresh.into_iter().map(Claimed::into_delivery).collect())
    }

    async fn update_ids(&self, sql: &str, ids: Vec<i64>) -> Result<(), VoteQueueError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut query = QueryBuilder::<Sqlite>::new(sql);
        query.push(" WHERE id IN (");
        let mut separated = query.separated(", ");
        for id in ids {
            separated.push_bind(id);
        }
        query.push(")");
        query.build().execute(&self.writer).await?;
        Ok(())
    }

    async fn mark_dead(&self, ids: Vec<i64>, reason: &str) -> Result<(), VoteQueueError> {
        let sql = format!(
            "UPDATE vote_queue SET dead = 1, reason = '{}'",
            sql_text(reason)
        );
        self.update_ids(&sql, ids).await
    }

    /// Messages of `stream` that are dead, or else ready (not claimed).
    async fn count(&self, stream: Stream, dead: bool) -> Result<u64, VoteQueueError> {
        let ready_before = if dead { i64::MAX } else { now_ms() };
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM vote_queue WHERE stream = $1 AND dead = $2 AND visible_at <= $3",
        )
        .bind(stream.queue_name())
        .bind(i64::from(dead))
        .bind(ready_before)
        .fetch_one(&self.writer)
        .await?;
        Ok(count.unsigned_abs())
    }
}

struct Claimed {
    id: i64,
    body: Vec<u8>,
    claims: i64,
}

impl Claimed {
    fn into_delivery(self) -> VoteDelivery {
        VoteDelivery {
            body: self.body,
            redelivered: self.claims > 1,
            receipt: Receipt::new(RowId(self.id)),
        }
    }
}

impl From<sqlx::Error> for VoteQueueError {
    fn from(err: sqlx::Error) -> Self {
        VoteQueueError::Store(err.to_string())
    }
}

/// A receipt of this queue: the message's row.
struct RowId(i64);

/// Escapes a constant reason for an SQL string literal.
fn sql_text(text: &str) -> String {
    text.replace('\'', "''")
}

/// The embedded queue only ever settles its own receipts.
fn row_ids(receipts: Vec<Receipt>) -> Vec<i64> {
    receipts
        .into_iter()
        .filter_map(Receipt::into_inner::<RowId>)
        .map(|RowId(id)| id)
        .collect()
}

#[async_trait]
impl VoteQueue for SqliteVoteQueue {
    async fn publish(&self, stream: Stream, bodies: &[Vec<u8>]) -> Result<(), VoteQueueError> {
        if bodies.is_empty() {
            return Ok(());
        }
        self.insert(stream, bodies).await?;
        self.wakeups[&stream].notify_waiters();
        Ok(())
    }

    async fn consume(
        &self,
        stream: Stream,
        max_batch: usize,
        max_wait: Duration,
    ) -> Result<Vec<VoteDelivery>, VoteQueueError> {
        let deadline = Instant::now() + max_wait;
        loop {
            let batch = self.claim_deliveries(stream, max_batch).await?;
            let now = Instant::now();
            if !batch.is_empty() || now >= deadline {
                return Ok(batch);
            }
            let nap = POLL.min(deadline - now);
            let _ = tokio::time::timeout(nap, self.wakeups[&stream].notified()).await;
        }
    }

    async fn ack(&self, _stream: Stream, receipts: Vec<Receipt>) -> Result<(), VoteQueueError> {
        self.update_ids("DELETE FROM vote_queue", row_ids(receipts))
            .await
    }

    async fn requeue(&self, stream: Stream, receipts: Vec<Receipt>) -> Result<(), VoteQueueError> {
        let sql = format!("UPDATE vote_queue SET visible_at = {}", now_ms());
        self.update_ids(&sql, row_ids(receipts)).await?;
        self.wakeups[&stream].notify_waiters();
        Ok(())
    }

    async fn dead_letter(
        &self,
        _stream: Stream,
        receipts: Vec<Receipt>,
        reason: &str,
    ) -> Result<(), VoteQueueError> {
        self.mark_dead(row_ids(receipts), reason).await
    }

    async fn depth(&self, stream: Stream) -> Result<u64, VoteQueueError> {
        self.count(stream, false).await
    }

    async fn dead_letters(&self, stream: Stream) -> Result<u64, VoteQueueError> {
        self.count(stream, true).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn open(dir: &tempfile::TempDir, visibility_ms: u64) -> SqliteVoteQueue {
        let path = dir.path().join("votes.db");
        SqliteVoteQueue::open(&path, Duration::from_millis(visibility_ms))
            .await
            .unwrap()
    }

    fn bodies(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| format!("vote-{i}").into_bytes()).collect()
    }

    const WAIT: Duration = Duration::from_millis(50);

    #[tokio::test]
    async fn batches_are_delivered_in_order_and_ack_removes_them() {
        let dir = tempfile::tempdir().unwrap();
        let queue = open(&dir, 60_000).await;
        queue
            .publish(Stream::Validation, &bodies(1200))
            .await
            .unwrap();
        queue.publish(Stream::Review, &bodies(1)).await.unwrap();
        let first = queue.consume(Stream::Validation, 1000, WAIT).await.unwrap();
        assert_eq!(first.len(), 1000);
        assert_eq!(first[0].body, b"vote-0");
        assert_eq!(first[999].body, b"vote-999");
        assert!(!first[0].redelivered);
        let receipts = first.into_iter().map(|d| d.receipt).collect();
        queue.ack(Stream::Validation, receipts).await.unwrap();
        assert_eq!(queue.depth(Stream::Validation).await.unwrap(), 200);
        let rest = queue.consume(Stream::Validation, 1000, WAIT).await.unwrap();
        assert_eq!(rest.len(), 200);
        assert_eq!(rest[0].body, b"vote-1000");
    }

    #[tokio::test]
    async fn unsettled_and_requeued_messages_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let queue = open(&dir, 100).await;
        queue
            .publish(Stream::Aggregation, &bodies(2))
            .await
            .unwrap();
        let lost = queue.consume(Stream::Aggregation, 1, WAIT).await.unwrap();
        drop(lost);
        let second = queue.consume(Stream::Aggregation, 1, WAIT).await.unwrap();
        assert_eq!(second[0].body, b"vote-1");
        let receipts = second.into_iter().map(|d| d.receipt).collect();
        queue.requeue(Stream::Aggregation, receipts).await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        let again = queue
            .consume(Stream::Aggregation, 2, Duration::from_millis(500))
            .await
            .unwrap();
        assert_eq!(again.len(), 2);
        assert!(again.iter().all(|d| d.redelivered));
    }

    #[tokio::test]
    async fn dead_letters_leave_the_stream_and_poison_is_dead_lettered() {
        let dir = tempfile::tempdir().unwrap();
        let queue = open(&dir, 0).await;
        queue.publish(Stream::Review, &bodies(2)).await.unwrap();
        let batch = queue.consume(Stream::Review, 1, WAIT).await.unwrap();
        let receipts = batch.into_iter().map(|d| d.receipt).collect();
        queue
            .dead_letter(Stream::Review, receipts, "it's malformed")
            .await
            .unwrap();
        for _ in 0..MAX_CLAIMS {
            assert_eq!(
                queue.consume(Stream::Review, 5, WAIT).await.unwrap().len(),
                1
            );
        }
        assert!(queue
            .consume(Stream::Review, 5, WAIT)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(queue.dead_letters(Stream::Review).await.unwrap(), 2);
        assert_eq!(queue.depth(Stream::Review).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_waiting_consumer_wakes_on_publish_and_messages_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let queue = open(&dir, 60_000).await;
        let publisher = queue.clone();
        let waiting = tokio::spawn(async move {
            publisher
                .consume(Stream::Validation, 1, Duration::from_secs(5))
                .await
                .unwrap()
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        queue.publish(Stream::Validation, &bodies(2)).await.unwrap();
        assert_eq!(waiting.await.unwrap().len(), 1);
        drop(queue);
        let reopened = open(&dir, 60_000).await;
        assert_eq!(reopened.depth(Stream::Validation).await.unwrap(), 1);
    }
}
