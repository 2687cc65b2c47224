//! Jobs and their chunks: the exactly-once bookkeeping of the workers.

use async_trait::async_trait;

use super::error::StoreError;
use crate::domain::{ChunkCounts, ChunkRow, ChunkState, ElectionState, JobRow, JobState};

#[async_trait]
pub trait JobStore: Send + Sync + 'static {
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
    /// Pending chunks of running jobs published before `published_before`, or never
    /// published though their job was made before `made_before` (its starter has had its
    /// time to publish them).
    async fn unpublished_chunks(
        &self,
        published_before: i64,
        made_before: i64,
    ) -> Result<Vec<ChunkRow>, StoreError>;
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
