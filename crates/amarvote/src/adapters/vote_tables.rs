//! The referendum's SQL tables, on SQLite or PostgreSQL, opened as the election's store
//! opens its own ([`SqlDb`]), with their own schema and version (`vote_tables.sql`):
//! `referendum_laws`, `vote_results`, `vote_audit`, `vote_rejections`,
//! `duplicate_attempts` and `referendum_sequence`.
//!
//! `vote_audit` holds one row per voter: the attempt with the smallest ingestion
//! sequence seen so far. An earlier attempt that arrives after a later one was
//! counted replaces it in the same transaction that corrects `vote_results`
//! (minus the old choice, plus the new), and the overturned request is logged
//! as a duplicate in `vote_rejections`, so the count, the audit and the statuses
//! agree whatever order the votes arrive in. Every statement is in the
//! dialect both databases share (`$n` parameters, `ON CONFLICT`, `RETURNING`,
//! `CASE` rather than `GREATEST`), and multi-row statements are written out by
//! [`values_list`] because sqlx's query builder emits `?` under the `Any`
//! driver, which PostgreSQL rejects.

use std::collections::{BTreeMap, HashMap, HashSet};

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{Any, AnyPool, Row, Transaction};

use super::sql_db::{is_transient, Adopted, Backend, Schema, SqlDb, SqlDbError};
use super::sqlite::Durability;
use crate::domain::now_ms;
use crate::domain::vote_messages::{ReviewMessage, ReviewReason, VoteMessage};
use crate::domain::voter_hash::{Choice, VoterHash};
use crate::ports::vote_store::{
    DuplicateSeen, LawCounts, LawTally, LawTotals, Recorded, VoteStore, VoteStoreError,
};
use crate::ports::voter_registry::{Counted, MarkOutcome};

/// The referendum's tables.
const SCHEMA: Schema = Schema {
    system: "referendum",
    sql: include_str!("vote_tables.sql"),
    postgres_only: &["CREATE SEQUENCE IF NOT EXISTS referendum_batches"],
    version_table: "referendum_schema_version",
    version: 1,
    upgrades_from: &[],
    data_table: "vote_audit",
    // These tables were made with the election's schema until its version 3, whose
    // tables have this shape (as do those of its version 4, to which 3 upgrades); older
    // ones are refused.
    adopt: Some(Adopted {
        marker_table: "schema_version",
        marker_versions: &[3, 4],
        as_version: 1,
    }),
};

/// Hashes read per query when rebuilding the registry from the audit log.
pub const AUDIT_PAGE: i64 = 10_000;

#[derive(Clone)]
pub struct VoteTables {
    pool: AnyPool,
    backend: Backend,
}

/// Sequence numbers one PostgreSQL `nextval` stands for: a batch of votes gets
/// `nextval × SEQUENCE_SPAN + i`.
const SEQUENCE_SPAN: u64 = 1 << 20;

/// `($1, $2, …), (…)` for `rows` rows of `columns` parameters each.
pub fn values_list(rows: usize, columns: usize) -> String {
    let row = |r: usize| {
        let params: Vec<String> = (1..=columns)
            .map(|c| format!("${}", r * columns + c))
            .collect();
        format!("({})", params.join(", "))
    };
    (0..rows).map(row).collect::<Vec<_>>().join(", ")
}

fn count(value: i64) -> u64 {
    value.unsigned_abs()
}

fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl VoteTables {
    /// Connects and brings the referendum's tables up to date. A counted vote was
    /// answered 202, so SQLite commits are synced.
    pub async fn connect(url: &str) -> Result<Self, SqlDbError> {
        let db = SqlDb::connect(url, Durability::Acknowledged).await?;
        db.apply(&SCHEMA).await?;
        Ok(VoteTables {
            pool: db.pool,
            backend: db.backend,
        })
    }

    async fn page(&self, sql: &str, after: Option<&str>) -> Result<Vec<AnyRow>, sqlx::Error> {
        sqlx::query(sql)
            .bind(after.unwrap_or(""))
            .bind(AUDIT_PAGE)
            .fetch_all(&self.pool)
            .await
    }
}

#[async_trait]
impl VoteStore for VoteTables {
    async fn record_votes(&self, votes: &[VoteMessage]) -> Result<Recorded, VoteStoreError> {
        let earliest = earliest_by_voter(votes);
        if earliest.is_empty() {
            return Ok(Recorded::default());
        }
        let mut tx = self.pool.begin().await?;
        let (mut recorded, mut rejected) = upsert_audit_rows(&mut tx, &earliest).await?;
        let changed: HashSet<String> = recorded
            .standing
            .iter()
            .map(|c| c.request_id.clone())
            .collect();
        let unchanged: Vec<&VoteMessage> = votes
            .iter()
            .filter(|v| !changed.contains(&v.request_id))
            .collect();
        let (later, standing) = later_attempts(&mut tx, &unchanged).await?;
        rejected.extend(later);
        recorded.standing.extend(standing);
        add_to_results(&mut tx, &recorded.counted).await?;
        insert_rejections(&mut tx, &rejected).await?;
        tx.commit().await?;
        Ok(recorded)
    }

    async fn record_rejections(&self, rejected: &[ReviewMessage]) -> Result<(), VoteStoreError> {
        let mut tx = self.pool.begin().await?;
        insert_rejections(&mut tx, rejected).await?;
        Ok(tx.commit().await?)
    }

    async fn reserve_sequences(&self, n: u64) -> Result<u64, VoteStoreError> {
        // Here: on PostgreSQL a sequence's `nextval` (which never waits for a commit to
        // reach the disk: it is on every publish's path) stands for a span of numbers; on
        // SQLite a counter row is updated.
        if self.backend == Backend::Postgres {
            if n > SEQUENCE_SPAN {
                return Err(VoteStoreError {
                    message: format!("at most {SEQUENCE_SPAN} sequence numbers per reservation"),
                    transient: false,
                });
            }
            let batch: i64 = sqlx::query_scalar("SELECT nextval('referendum_batches')")
                .fetch_one(&self.pool)
                .await?;
            return Ok(count(batch) * SEQUENCE_SPAN);
        }
        sqlx::query(
            "INSERT INTO referendum_sequence (id, next_value) VALUES (1, 1)
             ON CONFLICT (id) DO NOTHING",
        )
        .execute(&self.pool)
        .await?;
        let next: i64 = sqlx::query_scalar(
            "UPDATE referendum_sequence SET next_value = next_value + $1 WHERE id = 1
             RETURNING next_value",
        )
        .bind(signed(n))
        .fetch_one(&self.pool)
        .await?;
        Ok(count(next) - n)
    }

    async fn record_duplicates(
        &self,
        seen: &BTreeMap<VoterHash, DuplicateSeen>,
    ) -> Result<(), VoteStoreError> {
        if seen.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "INSERT INTO duplicate_attempts (voter_hash, attempts, first_at, last_at) VALUES {}
             ON CONFLICT (voter_hash) DO UPDATE SET
               attempts = CASE WHEN EXCLUDED.attempts > duplicate_attempts.attempts
                          THEN EXCLUDED.attempts ELSE duplicate_attempts.attempts END,
               first_at = CASE WHEN EXCLUDED.first_at < duplicate_attempts.first_at
                          THEN EXCLUDED.first_at ELSE duplicate_attempts.first_at END,
               last_at = CASE WHEN EXCLUDED.last_at > duplicate_attempts.last_at
                         THEN EXCLUDED.last_at ELSE duplicate_attempts.last_at END",
            values_list(seen.len(), 4)
        );
        let mut query = sqlx::query(&sql);
        for (hash, series) in seen {
            query = query
                .bind(hash.to_hex())
                .bind(signed(series.attempts))
                .bind(series.first_at)
                .bind(series.last_at);
        }
        query.execute(&self.pool).await?;
        Ok(())
    }

    async fn results(&self, law_id: &str) -> Result<LawTally, VoteStoreError> {
        // One statement, so one snapshot: the aggregator changes vote_results and
        // vote_audit in one transaction, and two reads could straddle it.
        let row = sqlx::query(
            "SELECT COALESCE((SELECT oui_count FROM vote_results WHERE law_id = $1), 0),
                    COALESCE((SELECT non_count FROM vote_results WHERE law_id = $1), 0),
                    (SELECT COUNT(*) FROM vote_audit WHERE law_id = $1)",
        )
        .bind(law_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(LawTally {
            counts: LawCounts {
                oui: count(row.get(0)),
                non: count(row.get(1)),
            },
            audited: count(row.get(2)),
        })
    }

    async fn duplicate_totals(&self) -> Result<(u64, u64), VoteStoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*), CAST(COALESCE(SUM(attempts), 0) AS BIGINT) FROM duplicate_attempts",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((count(row.get(0)), count(row.get(1))))
    }

    async fn audited_after(&self, after: Option<&str>) -> Result<Vec<Counted>, VoteStoreError> {
        let sql = "SELECT voter_hash, sequence, request_id FROM vote_audit WHERE voter_hash > $1
                   ORDER BY voter_hash LIMIT $2";
        self.page(sql, after)
            .await?
            .iter()
            .map(|row| {
                Ok(Counted {
                    voter_hash: voter_hash_at(row, 0)?,
                    sequence: count(row.get(1)),
                    request_id: row.get(2),
                })
            })
            .collect()
    }

    async fn rejections_after(
        &self,
        after: Option<&str>,
    ) -> Result<Vec<(String, MarkOutcome)>, VoteStoreError> {
        let sql = "SELECT request_id, reason, attempts FROM vote_rejections WHERE request_id > $1
                   ORDER BY request_id LIMIT $2";
        self.page(sql, after)
            .await?
            .iter()
            .map(|row| {
                let reason: String = row.get(1);
                let reason: ReviewReason = serde_json::from_value(reason.into())
                    .map_err(|err| sqlx::Error::Decode(Box::new(err)))?;
                Ok((
                    row.get(0),
                    MarkOutcome::of_review(reason, count(row.get(2))),
                ))
            })
            .collect()
    }

    async fn create_law(&self, law_id: &str, title: &str) -> Result<bool, VoteStoreError> {
        let done = sqlx::query(
            "INSERT INTO referendum_laws (law_id, title, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (law_id) DO NOTHING",
        )
        .bind(law_id)
        .bind(title)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn laws(&self) -> Result<Vec<LawTotals>, VoteStoreError> {
        let rows = sqlx::query(
            "SELECT l.law_id, l.title, COALESCE(r.oui_count, 0), COALESCE(r.non_count, 0)
             FROM referendum_laws l LEFT JOIN vote_results r ON r.law_id = l.law_id
             ORDER BY l.created_at, l.law_id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|row| LawTotals {
                law_id: row.get(0),
                title: row.get(1),
                counts: LawCounts {
                    oui: count(row.get(2)),
                    non: count(row.get(3)),
                },
            })
            .collect())
    }

    async fn law_exists(&self, law_id: &str) -> Result<bool, VoteStoreError> {
        let found: Option<String> =
            sqlx::query_scalar("SELECT law_id FROM referendum_laws WHERE law_id = $1")
                .bind(law_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(found.is_some())
    }
}

/// Each voter's earliest message, sorted by hash so concurrent aggregators take
/// row locks in the same order (no deadlocks in PostgreSQL).
fn earliest_by_voter(votes: &[VoteMessage]) -> Vec<&VoteMessage> {
    let mut earliest: BTreeMap<VoterHash, &VoteMessage> = BTreeMap::new();
    for vote in votes {
        let entry = earliest.entry(vote.voter_hash).or_insert(vote);
        if vote.sequence < entry.sequence {
            *entry = vote;
        }
    }
    earliest.into_values().collect()
}

/// The voter hash in column `index` of a row.
fn voter_hash_at(row: &AnyRow, index: usize) -> Result<VoterHash, sqlx::Error> {
    let hash: String = row.get(index);
    VoterHash::from_hex(&hash).map_err(|err| sqlx::Error::Decode(Box::new(err)))
}

fn parse_choice(text: &str) -> Result<Choice, sqlx::Error> {
    text.parse::<Choice>()
        .map_err(|err| sqlx::Error::Decode(Box::new(err)))
}

/// Inserts each vote, or puts it in place of a later attempt (remembering what
/// it replaced); returns what changed and the overturned attempts, as duplicates.
async fn upsert_audit_rows(
    tx: &mut Transaction<'_, Any>,
    votes: &[&VoteMessage],
) -> Result<(Recorded, Vec<ReviewMessage>), sqlx::Error> {
    let sql = format!(
        "INSERT INTO vote_audit (voter_hash, law_id, choice, request_id, sequence, recorded_at)
         VALUES {}
         ON CONFLICT (voter_hash) DO UPDATE SET
           choice = EXCLUDED.choice, request_id = EXCLUDED.request_id,
           sequence = EXCLUDED.sequence, recorded_at = EXCLUDED.recorded_at,
           replaced_choice = vote_audit.choice, replaced_request = vote_audit.request_id
         WHERE EXCLUDED.sequence < vote_audit.sequence
         RETURNING voter_hash, law_id, choice, request_id, sequence, replaced_choice,
           replaced_request",
        values_list(votes.len(), 6)
    );
    let now = now_ms();
    let mut query = sqlx::query(&sql);
    for vote in votes {
        query = query
            .bind(vote.voter_hash.to_hex())
            .bind(vote.law_id.as_str())
            .bind(vote.vote.as_str())
            .bind(vote.request_id.as_str())
            .bind(signed(vote.sequence))
            .bind(now);
    }
    let mut recorded = Recorded::default();
    let mut overturned = Vec::new();
    for row in query.fetch_all(&mut **tx).await? {
        let voter_hash = voter_hash_at(&row, 0)?;
        let law_id: String = row.get(1);
        let choice = parse_choice(&row.get::<String, _>(2))?;
        *recorded
            .counted
            .entry((law_id.clone(), choice))
            .or_insert(0) += 1;
        recorded.standing.push(Counted {
            voter_hash,
            request_id: row.get(3),
            sequence: count(row.get(4)),
        });
        let replaced: (Option<String>, Option<String>) = (row.get(5), row.get(6));
        if let (Some(old_choice), Some(old_request)) = replaced {
            *recorded
                .counted
                .entry((law_id.clone(), parse_choice(&old_choice)?))
                .or_insert(0) -= 1;
            overturned.push(ReviewMessage {
                request_id: old_request,
                voter_hash,
                law_id,
                reason: ReviewReason::Duplicate,
                attempts: 1,
                received_at: now,
            });
        }
    }
    Ok((recorded, overturned))
}

/// Of votes the upsert left alone, those that are not their voter's standing
/// attempt (a redelivery of the standing one is not a duplicate), as duplicates;
/// and those voters' standing attempts, for the registry.
async fn later_attempts(
    tx: &mut Transaction<'_, Any>,
    votes: &[&VoteMessage],
) -> Result<(Vec<ReviewMessage>, Vec<Counted>), sqlx::Error> {
    if votes.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let placeholders: Vec<String> = (1..=votes.len()).map(|n| format!("${n}")).collect();
    let sql = format!(
        "SELECT voter_hash, request_id, sequence FROM vote_audit WHERE voter_hash IN ({})",
        placeholders.join(", ")
    );
    let mut query = sqlx::query(&sql);
    for vote in votes {
        query = query.bind(vote.voter_hash.to_hex());
    }
    let mut standing: HashMap<VoterHash, Counted> = HashMap::new();
    for row in query.fetch_all(&mut **tx).await? {
        let voter_hash = voter_hash_at(&row, 0)?;
        let counted = Counted {
            voter_hash,
            request_id: row.get(1),
            sequence: count(row.get(2)),
        };
        standing.insert(voter_hash, counted);
    }
    let now = now_ms();
    let later = votes
        .iter()
        .filter(|v| standing.get(&v.voter_hash).map(|c| &c.request_id) != Some(&v.request_id))
        .map(|v| ReviewMessage {
            request_id: v.request_id.clone(),
            voter_hash: v.voter_hash,
            law_id: v.law_id.clone(),
            reason: ReviewReason::Duplicate,
            attempts: 1,
            received_at: now,
        })
        .collect();
    Ok((later, standing.into_values().collect()))
}

async fn insert_rejections(
    tx: &mut Transaction<'_, Any>,
    rejected: &[ReviewMessage],
) -> Result<(), sqlx::Error> {
    if rejected.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO vote_rejections (request_id, voter_hash, law_id, reason, attempts, received_at)
         VALUES {} ON CONFLICT (request_id) DO NOTHING",
        values_list(rejected.len(), 6)
    );
    let mut query = sqlx::query(&sql);
    for review in rejected {
        let reason = serde_json::to_value(review.reason).expect("reasons serialize");
        query = query
            .bind(review.request_id.as_str())
            .bind(review.voter_hash.to_hex())
            .bind(review.law_id.as_str())
            .bind(reason.as_str().unwrap_or_default().to_owned())
            .bind(signed(review.attempts))
            .bind(review.received_at);
    }
    query.execute(&mut **tx).await?;
    Ok(())
}

async fn add_to_results(
    tx: &mut Transaction<'_, Any>,
    counted: &BTreeMap<(String, Choice), i64>,
) -> Result<(), sqlx::Error> {
    let mut per_law: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for ((law_id, choice), n) in counted {
        let counts = per_law.entry(law_id).or_default();
        match choice {
            Choice::Oui => counts.0 += n,
            Choice::Non => counts.1 += n,
        }
    }
    if per_law.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO vote_results (law_id, oui_count, non_count, updated_at) VALUES {}
         ON CONFLICT (law_id) DO UPDATE SET
           oui_count = vote_results.oui_count + EXCLUDED.oui_count,
           non_count = vote_results.non_count + EXCLUDED.non_count,
           updated_at = EXCLUDED.updated_at",
        values_list(per_law.len(), 4)
    );
    let now = now_ms();
    let mut query = sqlx::query(&sql);
    for (law_id, (oui, non)) in &per_law {
        query = query.bind(*law_id).bind(*oui).bind(*non).bind(now);
    }
    query.execute(&mut **tx).await?;
    Ok(())
}

impl From<sqlx::Error> for VoteStoreError {
    fn from(err: sqlx::Error) -> Self {
        VoteStoreError {
            transient: is_transient(&err),
            message: err.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_list_numbers_parameters_row_by_row() {
        assert_eq!(values_list(2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(values_list(1, 1), "($1)");
    }

    async fn tables_in(url: &str) -> Vec<String> {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .fetch_all(&pool)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn the_referendum_and_the_election_each_make_only_their_own_tables() {
        let dir = tempfile::tempdir().unwrap();
        let votes = format!("sqlite://{}?mode=rwc", dir.path().join("r.db").display());
        VoteTables::connect(&votes).await.unwrap();
        let referendum = [
            "duplicate_attempts",
            "referendum_laws",
            "referendum_schema_version",
            "referendum_sequence",
            "vote_audit",
            "vote_rejections",
            "vote_results",
        ];
        assert_eq!(tables_in(&votes).await, referendum);
        let election = format!("sqlite://{}?mode=rwc", dir.path().join("e.db").display());
        crate::adapters::sql_store::SqlStore::connect(&election)
            .await
            .unwrap();
        let made = tables_in(&election).await;
        assert!(made.contains(&"elections".to_string()), "{made:?}");
        assert!(
            !made.iter().any(|t| referendum.contains(&t.as_str())),
            "{made:?}"
        );
    }
}
