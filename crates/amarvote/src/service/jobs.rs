//! Jobs: planning a job into chunks, publishing one message per chunk, progress, stop,
//! resume and retry, finalization, and the reconciler that makes publication reliable.
//!
//! A job and all its chunks are written in one transaction before anything is
//! published; a chunk counts as done only through a conditional write of its result, so
//! redeliveries change nothing; the job is finalized by whichever worker completes the
//! last chunk (one conditional state change picks it), or by the reconciler if that
//! worker died. Ballots are assigned to chunks as ranges of a keyed permutation, so a
//! chunk's membership says nothing about casting order and a resumed job has the same chunks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use super::{App, ServiceError, ServiceResult};
use crate::domain::{
    now_ms, BallotState, ChunkCounts, ChunkRow, ChunkSpec, ChunkState, ChunkTask, DecryptParams,
    ElectionState, JobId, JobKind, JobRow, JobState, QueueName, Target, TALLY_SHARDS,
};

/// The most chunks one range of ballots is cut into: past it chunks grow instead, so that
/// starting a job (its chunks are recorded in the answer's transaction) costs about the
/// same for a million ballots as for a quarter of one. Verification and tally chunks read
/// their ballots a page at a time; a challenged-ballot chunk of decryption reads its range
/// whole, which at 256 chunks is one in 256 of the challenged ballots.
const MAX_CHUNKS: u64 = 256;

fn ranges(total: u64, size: u64) -> Vec<(u64, u64)> {
    let size = size.max(1).max(total.div_ceil(MAX_CHUNKS));
    (0..total.div_ceil(size))
        .map(|i| (i * size, size.min(total - i * size)))
        .collect()
}

fn ballot_targets(state: BallotState, total: u64, size: u64) -> Vec<Target> {
    ranges(total, size)
        .into_iter()
        .map(|(offset, limit)| Target::Ballots {
            state,
            offset,
            limit,
        })
        .collect()
}

fn chunk(job_id: &JobId, index: usize, queue: QueueName, spec: &ChunkSpec) -> ChunkRow {
    ChunkRow {
        job_id: job_id.clone(),
        index: index as u64,
        queue,
        spec: spec.clone(),
        state: ChunkState::Pending,
        attempts: 0,
        started_at: None,
        finished_at: None,
        error: None,
    }
}

/// Shards of running products per tally chunk: four chunks, for as many workers.
const SHARDS_PER_CHUNK: u64 = 4;

/// The running products kept at cast time when they hold every cast ballot; otherwise
/// (a ballot box cast under an earlier version, which kept none) ranges of the ballots.
async fn tally_targets(app: &App, election_id: &str) -> ServiceResult<Vec<Target>> {
    let cast = app
        .store
        .count_ballots(election_id, BallotState::Cast)
        .await?;
    let shards = app.store.tally_shards(election_id, 0, TALLY_SHARDS).await?;
    let held: u64 = shards.iter().map(|s| s.ballots).sum();
    if held == cast {
        let firsts = (0..TALLY_SHARDS).step_by(SHARDS_PER_CHUNK as usize);
        return Ok(firsts
            .map(|first| Target::Shards {
                first,
                count: SHARDS_PER_CHUNK,
            })
            .collect());
    }
    tracing::warn!(
        election = election_id,
        cast,
        held,
        "the running products do not hold every cast ballot: tallying the ballots themselves"
    );
    Ok(ballot_targets(
        BallotState::Cast,
        cast,
        app.settings.chunk_size,
    ))
}

/// The state an election must be in for a job of `kind` to start (any, for verification).
fn needed_state(kind: JobKind) -> Option<ElectionState> {
    match kind {
        JobKind::Tally => Some(ElectionState::Closed),
        JobKind::Decrypt => Some(ElectionState::Tallied),
        JobKind::Combine => Some(ElectionState::Decrypted),
        JobKind::Verify => None,
    }
}

fn require_state(
    actual: ElectionState,
    needed: Option<ElectionState>,
    kind: JobKind,
) -> ServiceResult<()> {
    if let Some(needed) = needed.filter(|needed| *needed != actual) {
        return Err(ServiceError::Conflict(format!(
            "a {kind} job needs the election {needed}, but it is {actual}"
        )));
    }
    Ok(())
}

/// Plans and records a job, publishes its chunks, and returns at once.
pub async fn start(app: &Arc<App>, election_id: &str, kind: JobKind) -> ServiceResult<JobRow> {
    let election = app.election(election_id).await?;
    let job_id = JobId::random();
    let (params, chunks) = match kind {
        JobKind::Tally => {
            require_state(election.state, needed_state(kind), kind)?;
            let targets = tally_targets(app, election_id).await?;
            let specs = targets.into_iter().map(|target| {
                (
                    QueueName::Tally,
                    ChunkSpec {
                        target,
                        guardian: None,
                        missing: None,
                    },
                )
            });
            (DecryptParams::default(), specs.collect::<Vec<_>>())
        }
        JobKind::Decrypt => {
            require_state(election.state, needed_state(kind), kind)?;
            plan_decryption(app, &election).await?
        }
        JobKind::Combine => {
            require_state(election.state, needed_state(kind), kind)?;
            let decrypt = app
                .store
                .latest_job(election_id, JobKind::Decrypt)
                .await?
                .filter(|j| j.state == JobState::Done);
            let decrypt = decrypt
                .ok_or_else(|| ServiceError::Conflict("no finished decryption job".into()))?;
            let mut params = decrypt.params.clone();
            params.decrypt_job = Some(decrypt.id);
            let spoiled = app
                .store
                .count_ballots(election_id, BallotState::Spoiled)
                .await?;
            let targets = std::iter::once(Target::Tally).chain(ballot_targets(
                BallotState::Spoiled,
                spoiled,
                app.settings.spoiled_chunk_size,
            ));
            (
                params,
                targets
                    .map(|target| {
                        (
                            QueueName::Combine,
                            ChunkSpec {
                                target,
                                guardian: None,
                                missing: None,
                            },
                        )
                    })
                    .collect(),
            )
        }
        JobKind::Verify => {
            let mut specs = Vec::new();
            for state in [BallotState::Cast, BallotState::Spoiled] {
                let n = app.store.count_ballots(election_id, state).await?;
                specs.extend(
                    ballot_targets(state, n, app.settings.chunk_size)
                        .into_iter()
                        .map(|target| {
                            (
                                QueueName::Verification,
                                ChunkSpec {
                                    target,
                                    guardian: None,
                                    missing: None,
                                },
                            )
                        }),
                );
            }
            if specs.is_empty() {
                specs.push((
                    QueueName::Verification,
                    ChunkSpec {
                        target: Target::Ballots {
                            state: BallotState::Cast,
                            offset: 0,
                            limit: 0,
                        },
                        guardian: None,
                        missing: None,
                    },
                ));
            }
            (DecryptParams::default(), specs)
        }
    };
    let remote = remote_guardians(app, election_id).await?;
    let rows: Vec<ChunkRow> = chunks
        .iter()
        .enumerate()
        .map(|(i, (queue, spec))| {
            let mut row = chunk(&job_id, i, *queue, spec);
            if spec.guardian.as_ref().is_some_and(|g| remote.contains(g)) {
                row.state = ChunkState::Remote;
            }
            row
        })
        .collect();
    let job = JobRow {
        id: job_id,
        election_id: election.id.clone(),
        kind,
        state: JobState::Running,
        total_chunks: rows.len() as u64,
        params,
        created_at: now_ms(),
        finished_at: None,
        error: None,
    };
    if !app
        .store
        .insert_job(&job, &rows, needed_state(kind))
        .await?
    {
        return Err(ServiceError::Conflict(format!(
            "a {kind} job is already running or has just finished for this election"
        )));
    }
    app.metrics.job_started(kind);
    let queued: Vec<ChunkRow> = rows
        .into_iter()
        .filter(|r| r.state == ChunkState::Pending)
        .collect();
    // The job and its chunks are committed: they are published after the answer, so a job
    // of a million ballots starts as fast as one of a thousand. A chunk this does not
    // publish (a crash, the queue down) is published by the reconciler.
    let publisher = app.clone();
    tokio::spawn(async move { publish(&publisher, &queued).await });
    Ok(job)
}

/// Guardians who decrypt on their own machines (`amarvote guardian decrypt`): their
/// chunks wait for the shares they upload instead of going to a queue.
async fn remote_guardians(
    app: &App,
    election_id: &str,
) -> ServiceResult<std::collections::HashSet<String>> {
    Ok(app
        .store
        .guardians(election_id)
        .await?
        .into_iter()
        .filter(|g| g.decryption_grant.as_deref() == Some(&[]))
        .map(|g| g.guardian_id)
        .collect())
}

async fn plan_decryption(
    app: &App,
    election: &crate::domain::ElectionRow,
) -> ServiceResult<(DecryptParams, Vec<(QueueName, ChunkSpec)>)> {
    let guardians = app.store.guardians(&election.id).await?;
    let (available, missing): (Vec<_>, Vec<_>) =
        guardians.iter().partition(|g| g.decryption_grant.is_some());
    if (available.len() as u32) < election.quorum {
        return Err(ServiceError::Conflict(format!(
            "{} of {} guardians have consented to decrypt; the quorum is {}",
            available.len(),
            guardians.len(),
            election.quorum
        )));
    }
    let spoiled = app
        .store
        .count_ballots(&election.id, BallotState::Spoiled)
        .await?;
    let targets: Vec<Target> = std::iter::once(Target::Tally)
        .chain(ballot_targets(
            BallotState::Spoiled,
            spoiled,
            app.settings.spoiled_chunk_size,
        ))
        .collect();
    let mut specs = Vec::new();
    for a in &available {
        for target in &targets {
            specs.push((
                QueueName::Decryption,
                ChunkSpec {
                    target: target.clone(),
                    guardian: Some(a.guardian_id.clone()),
                    missing: None,
                },
            ));
        }
        for m in &missing {
            for target in &targets {
                let spec = ChunkSpec {
                    target: target.clone(),
                    guardian: Some(a.guardian_id.clone()),
                    missing: Some(m.guardian_id.clone()),
                };
                specs.push((QueueName::CompensatedDecryption, spec));
            }
        }
    }
    let params = DecryptParams {
        available: available.iter().map(|g| g.guardian_id.clone()).collect(),
        missing: missing.iter().map(|g| g.guardian_id.clone()).collect(),
        decrypt_job: None,
    };
    Ok((params, specs))
}

/// Publishes chunk tasks and records which were handed to the queue. A failure leaves
/// the chunk unpublished for the reconciler; it never fails the caller.
pub async fn publish(app: &App, chunks: &[ChunkRow]) {
    for job in chunks.chunk_by(|a, b| a.job_id == b.job_id) {
        let messages: Vec<(QueueName, Vec<u8>)> = job
            .iter()
            .map(|c| {
                let task = ChunkTask {
                    job_id: c.job_id.clone(),
                    chunk: c.index,
                };
                (c.queue, serde_json::to_vec(&task).expect("tasks serialize"))
            })
            .collect();
        let published = app.queue.publish_many(&messages).await;
        let job_id = job[0].job_id.clone();
        let indexes = job[..published.stored].iter().map(|c| c.index).collect();
        mark(app, job_id, indexes).await;
        if let Some(e) = published.error {
            tracing::warn!(job = %job[0].job_id, error = %e, "publish failed; the reconciler will retry");
            break;
        }
    }
}

async fn mark(app: &App, job_id: JobId, indexes: Vec<u64>) {
    if let Err(e) = app.store.mark_published(&job_id, &indexes).await {
        tracing::warn!(job = %job_id, error = %e, "could not record publication; chunks will be published again");
    }
}

/// A job's progress, as `GET /api/jobs/{id}` shows it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobStatus {
    pub job_id: String,
    pub election_id: String,
    pub kind: JobKind,
    pub state: JobState,
    pub total_chunks: u64,
    pub processed_chunks: u64,
    pub failed_chunks: u64,
    pub created_at: i64,
    pub finished_at: Option<i64>,
    pub elapsed_ms: i64,
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub chunks: Vec<ChunkStatus>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChunkStatus {
    pub index: u64,
    pub queue: QueueName,
    pub state: ChunkState,
    pub attempts: u64,
    pub duration_ms: Option<i64>,
    pub error: Option<String>,
}

pub async fn status(app: &App, job_id: &str, with_chunks: bool) -> ServiceResult<JobStatus> {
    let job = existing_job(app, job_id).await?;
    let ChunkCounts { total, done, dead } = app.store.chunk_counts(job_id).await?;
    let chunks = if with_chunks {
        app.store
            .chunks(job_id)
            .await?
            .into_iter()
            .map(|c| ChunkStatus {
                index: c.index,
                queue: c.queue,
                state: c.state,
                attempts: c.attempts,
                duration_ms: c.started_at.zip(c.finished_at).map(|(s, f)| f - s),
                error: c.error,
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(JobStatus {
        job_id: job.id.into(),
        election_id: job.election_id.into(),
        kind: job.kind,
        state: job.state,
        total_chunks: total,
        processed_chunks: done,
        failed_chunks: dead,
        created_at: job.created_at,
        finished_at: job.finished_at,
        elapsed_ms: job.finished_at.unwrap_or_else(now_ms) - job.created_at,
        error: job.error,
        chunks,
    })
}

/// Stops a running job: workers leave its chunks alone until it is resumed.
/// The job, or NotFound.
async fn existing_job(app: &App, job_id: &str) -> ServiceResult<JobRow> {
    app.store
        .job(job_id)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("no job {job_id}")))
}

pub async fn stop(app: &App, job_id: &str) -> ServiceResult<()> {
    existing_job(app, job_id).await?;
    if !app
        .store
        .set_job_state(job_id, &[JobState::Running], JobState::Stopped, None)
        .await?
    {
        return Err(ServiceError::Conflict(
            "only a running job can be stopped".into(),
        ));
    }
    Ok(())
}

/// Resumes a stopped job, or retries a failed job's dead chunks; its pending chunks are published again.
pub async fn resume(app: &App, job_id: &str) -> ServiceResult<()> {
    let job = existing_job(app, job_id).await?;
    // Another job of its kind may have finished meanwhile and moved the election on; this
    // one's finalization would then overwrite what that one produced.
    let election = app.election(&job.election_id).await?;
    require_state(election.state, needed_state(job.kind), job.kind)?;
    app.store.revive_dead_chunks(job_id).await?;
    if !app
        .store
        .set_job_state(
            job_id,
            &[JobState::Stopped, JobState::Failed],
            JobState::Running,
            None,
        )
        .await?
    {
        return Err(ServiceError::Conflict(
            "only a stopped or failed job can be resumed, while no other job of its kind runs"
                .into(),
        ));
    }
    let pending: Vec<ChunkRow> = app
        .store
        .chunks(job_id)
        .await?
        .into_iter()
        .filter(|c| c.state == ChunkState::Pending)
        .collect();
    publish(app, &pending).await;
    Ok(())
}

/// Progress of running jobs for their event streams: one poller per job, however many
/// clients follow it, stopped when the last one leaves; and at most `MAX_FOLLOWERS`
/// streams open at once in a process.
pub struct JobFeeds {
    feeds: Mutex<HashMap<String, Weak<watch::Sender<Option<String>>>>>,
    followers: Arc<Semaphore>,
}

/// Event streams one process serves at once.
pub const MAX_FOLLOWERS: usize = 256;
const POLL_EVERY: Duration = Duration::from_millis(250);

impl Default for JobFeeds {
    fn default() -> Self {
        JobFeeds {
            feeds: Default::default(),
            followers: Arc::new(Semaphore::new(MAX_FOLLOWERS)),
        }
    }
}

/// A client following one job: the JSON status whenever it changes (None before the
/// first read); the channel closes once the job has ended.
pub struct Follower {
    pub updates: watch::Receiver<Option<String>>,
    _slot: OwnedSemaphorePermit,
}

/// Follows a job's progress; Err if the job does not exist or too many streams are open.
pub async fn follow(app: &Arc<App>, job_id: &str) -> ServiceResult<Follower> {
    existing_job(app, job_id).await?;
    let slot = app
        .job_feeds
        .followers
        .clone()
        .try_acquire_owned()
        .map_err(|_| ServiceError::RateLimited {
            message: format!(
                "{MAX_FOLLOWERS} event streams are open; poll GET /api/jobs/{job_id} instead"
            ),
            retry_after: Duration::from_secs(5),
        })?;
    let mut feeds = app.job_feeds.feeds.lock().expect("not poisoned");
    feeds.retain(|_, feed| feed.strong_count() > 0);
    let updates = match feeds.get(job_id).and_then(Weak::upgrade) {
        Some(feed) => feed.subscribe(),
        None => {
            let (tx, rx) = watch::channel(None);
            let tx = Arc::new(tx);
            feeds.insert(job_id.to_string(), Arc::downgrade(&tx));
            tokio::spawn(poll_job(app.clone(), job_id.to_string(), tx));
            rx
        }
    };
    Ok(Follower {
        updates,
        _slot: slot,
    })
}

/// Reads the job's status until it ends or nobody follows it any more.
async fn poll_job(app: Arc<App>, job_id: String, tx: Arc<watch::Sender<Option<String>>>) {
    let mut failures = 0;
    loop {
        let status = match status(&app, &job_id, false).await {
            Ok(status) => status,
            // A store hiccup must not end every stream of the job: try again a few times.
            Err(_) if failures < 20 => {
                failures += 1;
                tokio::time::sleep(POLL_EVERY * failures).await;
                continue;
            }
            Err(_) => return,
        };
        failures = 0;
        let finished = matches!(
            status.state,
            JobState::Done | JobState::Failed | JobState::Stopped
        );
        let text = serde_json::to_string(&status).expect("status serializes");
        tx.send_if_modified(|last| {
            let changed = last.as_deref() != Some(text.as_str());
            if changed {
                *last = Some(text);
            }
            changed
        });
        if finished {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL_EVERY) => {}
            _ = tx.closed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_every_ballot_once_in_at_most_the_most_chunks() {
        for (total, size) in [
            (0, 8),
            (7, 8),
            (8, 8),
            (9, 8),
            (1_000_000, 1000),
            (256_001, 1000),
        ] {
            let cut = ranges(total, size);
            assert!(
                cut.len() as u64 <= MAX_CHUNKS,
                "{total}: {} chunks",
                cut.len()
            );
            let mut next = 0;
            for (offset, limit) in cut {
                assert!(
                    offset == next && limit > 0,
                    "{total}: a gap or an empty chunk"
                );
                next += limit;
            }
            assert_eq!(next, total);
        }
        assert_eq!(
            ranges(9, 8),
            [(0, 8), (8, 1)],
            "the configured size below the cap"
        );
    }
}
