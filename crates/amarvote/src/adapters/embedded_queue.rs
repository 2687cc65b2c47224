//! The embedded durable queue for the single-process mode: a table in its own SQLite
//! file, with the broker's semantics — a claimed message is invisible for a visibility
//! timeout and comes back if its consumer dies; each claim counts an attempt; failures
//! come back after a backoff; messages past their attempts, or unreadable, are dead letters.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::SqlitePoolOptions;
use sqlx::{Row, SqlitePool};
use tokio::sync::Notify;

use super::sqlite::{self, Durability};
use crate::domain::{now_ms, QueueName};
use crate::ports::queue::{Delivery, Published, QueueError, Settle, WorkQueue, MAX_ATTEMPTS};

impl From<sqlx::Error> for QueueError {
    fn from(err: sqlx::Error) -> Self {
        QueueError::Store(err.to_string())
    }
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS queue_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    body BLOB NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    visible_at INTEGER NOT NULL,
    dead INTEGER NOT NULL DEFAULT 0,
    reason TEXT
);
CREATE INDEX IF NOT EXISTS queue_ready ON queue_messages (queue, dead, visible_at, id);";

#[derive(Clone)]
pub struct EmbeddedQueue {
    pool: SqlitePool,
    visibility: Duration,
    poll: Duration,
    wakeups: Arc<HashMap<QueueName, Notify>>,
}

impl EmbeddedQueue {
    /// Opens (or creates) the queue file; `visibility` is how long a claimed message stays hidden.
    pub async fn open(path: &Path, visibility: Duration) -> Result<EmbeddedQueue, QueueError> {
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(sqlite::options(path, Durability::Recoverable))
            .await?;
        sqlx::raw_sql(SCHEMA).execute(&pool).await?;
        // One process owns the embedded queue: whatever it had claimed before a restart
        // died with it, so it is delivered again at once rather than after the timeout.
        sqlx::query("UPDATE queue_messages SET visible_at = 0 WHERE dead = 0")
            .execute(&pool)
            .await?;
        let wakeups = QueueName::ALL
            .into_iter()
            .map(|q| (q, Notify::new()))
            .collect();
        Ok(EmbeddedQueue {
            pool,
            visibility,
            poll: Duration::from_millis(250),
            wakeups: Arc::new(wakeups),
        })
    }

    async fn claim(&self, queue: QueueName) -> Result<Option<(i64, Vec<u8>, u32)>, QueueError> {
        let now = now_ms();
        let row = sqlx::query(
            "UPDATE queue_messages SET attempts = attempts + 1, visible_at = $1
             WHERE id = (SELECT id FROM queue_messages WHERE queue = $2 AND dead = 0 AND visible_at <= $3 ORDER BY visible_at, id LIMIT 1)
             RETURNING id, body, attempts",
        )
        .bind(now + self.visibility.as_millis() as i64)
        .bind(queue.as_str())
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| {
            (
                r.get("id"),
                r.get("body"),
                r.get::<i64, _>("attempts") as u32,
            )
        }))
    }

    async fn count(&self, queue: QueueName, dead: bool) -> Result<u64, QueueError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM queue_messages WHERE queue = $1 AND dead = $2",
        )
        .bind(queue.as_str())
        .bind(i64::from(dead))
        .fetch_one(&self.pool)
        .await?;
        Ok(n as u64)
    }
}

/// Stores one message, visible at once.
async fn enqueue<'e>(
    db: impl sqlx::Executor<'e, Database = sqlx::Sqlite>,
    queue: QueueName,
    body: &[u8],
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO queue_messages (queue, body, visible_at) VALUES ($1, $2, $3)")
        .bind(queue.as_str())
        .bind(body)
        .bind(now_ms())
        .execute(db)
        .await?;
    Ok(())
}

#[async_trait]
impl WorkQueue for EmbeddedQueue {
    async fn publish(&self, queue: QueueName, body: &[u8]) -> Result<(), QueueError> {
        enqueue(&self.pool, queue, body).await?;
        self.wakeups[&queue].notify_one();
        Ok(())
    }

    /// All in one transaction: one disk sync for the batch.
    async fn publish_many(&self, messages: &[(QueueName, Vec<u8>)]) -> Published {
        let stored = async {
            let mut tx = self.pool.begin().await?;
            for (queue, body) in messages {
                enqueue(&mut *tx, *queue, body).await?;
            }
            tx.commit().await
        }
        .await;
        match stored {
            Ok(()) => {
                for (queue, _) in messages {
                    self.wakeups[queue].notify_one();
                }
                Published {
                    stored: messages.len(),
                    error: None,
                }
            }
            Err(e) => Published {
                stored: 0,
                error: Some(e.into()),
            },
        }
    }

    async fn next(&self, queue: QueueName) -> Result<Option<Delivery>, QueueError> {
        loop {
            if let Some((id, body, attempt)) = self.claim(queue).await? {
                let settle = Box::new(EmbeddedSettle {
                    pool: self.pool.clone(),
                    id,
                });
                if attempt > MAX_ATTEMPTS + 1 {
                    // Claimed again and again without being settled: its consumers keep dying.
                    settle
                        .dead_letter("delivered too many times without being settled")
                        .await?;
                    continue;
                }
                return Ok(Some(Delivery {
                    body,
                    attempt,
                    settle,
                }));
            }
            let _ = tokio::time::timeout(self.poll, self.wakeups[&queue].notified()).await;
        }
    }

    async fn depth(&self, queue: QueueName) -> Result<u64, QueueError> {
        self.count(queue, false).await
    }

    async fn dead_letters(&self, queue: QueueName) -> Result<u64, QueueError> {
        self.count(queue, true).await
    }
}

struct EmbeddedSettle {
    pool: SqlitePool,
    id: i64,
}

#[async_trait]
impl Settle for EmbeddedSettle {
    async fn ack(self: Box<Self>) -> Result<(), QueueError> {
        sqlx::query("DELETE FROM queue_messages WHERE id = $1")
            .bind(self.id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn retry(self: Box<Self>, delay: Duration) -> Result<(), QueueError> {
        sqlx::query("UPDATE queue_messages SET visible_at = $1 WHERE id = $2")
            .bind(now_ms() + delay.as_millis() as i64)
            .bind(self.id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn dead_letter(self: Box<Self>, reason: &str) -> Result<(), QueueError> {
        sqlx::query("UPDATE queue_messages SET dead = 1, reason = $1 WHERE id = $2")
            .bind(reason)
            .bind(self.id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn queue(dir: &tempfile::TempDir, visibility_ms: u64) -> EmbeddedQueue {
        EmbeddedQueue::open(
            &dir.path().join("queue.db"),
            Duration::from_millis(visibility_ms),
        )
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn delivers_in_order_and_ack_removes() {
        let dir = tempfile::tempdir().unwrap();
        let q = queue(&dir, 60_000).await;
        q.publish(QueueName::Tally, b"one").await.unwrap();
        q.publish(QueueName::Tally, b"two").await.unwrap();
        q.publish(QueueName::Combine, b"other").await.unwrap();
        let first = q.next(QueueName::Tally).await.unwrap().unwrap();
        assert_eq!(
            (first.body.as_slice(), first.attempt),
            (b"one".as_slice(), 1)
        );
        first.settle.ack().await.unwrap();
        assert_eq!(q.depth(QueueName::Tally).await.unwrap(), 1);
        assert_eq!(
            q.next(QueueName::Tally).await.unwrap().unwrap().body,
            b"two"
        );
    }

    #[tokio::test]
    async fn a_batch_is_delivered_whole_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let q = queue(&dir, 60_000).await;
        let batch: Vec<(QueueName, Vec<u8>)> = (0..5u8)
            .map(|i| (QueueName::Verification, vec![i]))
            .chain([(QueueName::Combine, vec![9])])
            .collect();
        let published = q.publish_many(&batch).await;
        assert_eq!((published.stored, published.error.is_none()), (6, true));
        for i in 0..5u8 {
            let d = q.next(QueueName::Verification).await.unwrap().unwrap();
            assert_eq!(d.body, vec![i]);
            d.settle.ack().await.unwrap();
        }
        assert_eq!(q.depth(QueueName::Combine).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn unsettled_message_comes_back_after_the_visibility_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let q = queue(&dir, 100).await;
        q.publish(QueueName::Tally, b"chunk").await.unwrap();
        let lost = q.next(QueueName::Tally).await.unwrap().unwrap();
        drop(lost);
        let again = q.next(QueueName::Tally).await.unwrap().unwrap();
        assert_eq!(
            (again.body.as_slice(), again.attempt),
            (b"chunk".as_slice(), 2)
        );
    }

    #[tokio::test]
    async fn retry_waits_and_dead_letter_keeps_the_message_aside() {
        let dir = tempfile::tempdir().unwrap();
        let q = queue(&dir, 60_000).await;
        q.publish(QueueName::Decryption, b"x").await.unwrap();
        let d = q.next(QueueName::Decryption).await.unwrap().unwrap();
        d.settle.retry(Duration::from_millis(300)).await.unwrap();
        let started = std::time::Instant::now();
        let d = q.next(QueueName::Decryption).await.unwrap().unwrap();
        assert!(started.elapsed() >= Duration::from_millis(250));
        assert_eq!(d.attempt, 2);
        d.settle.dead_letter("bad").await.unwrap();
        assert_eq!(q.dead_letters(QueueName::Decryption).await.unwrap(), 1);
        assert_eq!(q.depth(QueueName::Decryption).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        queue(&dir, 60_000)
            .await
            .publish(QueueName::Combine, b"durable")
            .await
            .unwrap();
        let reopened = queue(&dir, 60_000).await;
        assert_eq!(
            reopened
                .next(QueueName::Combine)
                .await
                .unwrap()
                .unwrap()
                .body,
            b"durable"
        );
    }
}
