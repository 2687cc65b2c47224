//! Jobs and chunks on SQL.

use async_trait::async_trait;

use super::*;

#[async_trait]
impl JobStore for SqlStore {
    async fn insert_job(
        &self,
        job: &JobRow,
        chunks: &[ChunkRow],
        election_in: Option<ElectionState>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        // The election's state is checked in the insert itself: a job of the kind that
        // finished between planning and here has moved the election on. A finalizer commits
        // the election's new state before its job is done; on PostgreSQL `FOR SHARE` reads
        // the newest committed state (or waits for one being written), so an insert that
        // meets the finished job through the unique index cannot have read the old state.
        // SQLite takes the write lock when the statement starts and reads the newest anyway.
        let lock = match self.backend {
            Backend::Postgres => " FOR SHARE",
            Backend::Sqlite => "",
        };
        let sql = match election_in {
            None => format!(
                "INSERT INTO jobs ({JOB_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, NULL)"
            ),
            Some(_) => format!(
                "INSERT INTO jobs ({JOB_COLUMNS}) SELECT $1, $2, $3, $4, $5, $6, $7, NULL, NULL
                 WHERE EXISTS (SELECT 1 FROM elections WHERE id = $2 AND state = $8{lock})"
            ),
        };
        let mut insert = sqlx::query(&sql)
            .bind(job.id.as_str())
            .bind(job.election_id.as_str())
            .bind(job.kind.as_str())
            .bind(job.state.as_str())
            .bind(job.total_chunks as i64)
            .bind(to_json(&job.params))
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
                    .bind(c.job_id.as_str())
                    .bind(c.index as i64)
                    .bind(c.queue.as_str())
                    .bind(to_json(&c.spec))
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

    async fn unpublished_chunks(
        &self,
        published_before: i64,
        made_before: i64,
    ) -> Result<Vec<ChunkRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM job_chunks c JOIN jobs j ON j.id = c.job_id
             WHERE j.state = 'running' AND c.state = 'pending'
             AND ((c.published_at IS NULL AND j.created_at < $2) OR c.published_at < $1)
             ORDER BY c.job_id, c.chunk_index LIMIT 10000",
            CHUNK_COLUMNS
                .split(", ")
                .map(|c| format!("c.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .bind(published_before)
        .bind(made_before)
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
