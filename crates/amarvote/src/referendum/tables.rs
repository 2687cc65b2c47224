//! The referendum's SQL tables, on SQLite or PostgreSQL through the shared
//! [`SqlStore`] pool.
//!
//! `vote_results`, `vote_audit` and `duplicate_attempts` are in the store's
//! schema; `referendum_laws` is created here. Every statement is in the
//! dialect both databases share (`$n` parameters, `ON CONFLICT`, `RETURNING`,
//! `CASE` rather than `GREATEST`), and multi-row statements are written out by
//! [`values_list`] because sqlx's query builder emits `?` under the `Any`
//! driver, which PostgreSQL rejects.

use std::collections::{BTreeMap, HashMap};

use sqlx::{Any, AnyPool, Row, Transaction};

use super::messages::VoteMessage;
use super::voter_hash::{Choice, VoterHash};
use crate::adapters::sql_store::SqlStore;
use crate::domain::now_ms;

const LAWS_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS referendum_laws (
    law_id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    created_at BIGINT NOT NULL
)";

/// Hashes read per query when rebuilding the registry from the audit log.
pub const AUDIT_PAGE: i64 = 10_000;

/// One law's tally.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct LawCounts {
    pub oui: u64,
    pub non: u64,
}

/// A law as the public totals page lists it.
pub struct LawTotals {
    pub law_id: String,
    pub title: String,
    pub counts: LawCounts,
}

/// One newly recorded duplicate attempt series, merged per voter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DuplicateSeen {
    pub attempts: u64,
    pub first_at: i64,
    pub last_at: i64,
}

#[derive(Clone)]
pub struct VoteTables {
    pool: AnyPool,
}

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
    /// Uses the store's pool and creates the laws table if needed.
    pub async fn new(store: &SqlStore) -> Result<Self, sqlx::Error> {
        let pool = store.pool().clone();
        sqlx::query(LAWS_SCHEMA).execute(&pool).await?;
        Ok(VoteTables { pool })
    }

    /// Records each vote whose voter has no audit row yet, and adds exactly
    /// those to `vote_results`, in one transaction. Returns the votes newly
    /// counted, per law and choice.
    pub async fn record_votes(
        &self,
        votes: &[VoteMessage],
    ) -> Result<BTreeMap<(String, Choice), u64>, sqlx::Error> {
        let votes = unique_by_voter(votes);
        if votes.is_empty() {
            return Ok(BTreeMap::new());
        }
        let mut tx = self.pool.begin().await?;
        let counted = insert_audit_rows(&mut tx, &votes).await?;
        add_to_results(&mut tx, &counted).await?;
        tx.commit().await?;
        Ok(counted)
    }

    /// Upserts `duplicate_attempts`; replays never lower a count or widen
    /// the window wrongly, so a redelivered review message changes nothing.
    pub async fn record_duplicates(
        &self,
        seen: &BTreeMap<VoterHash, DuplicateSeen>,
    ) -> Result<(), sqlx::Error> {
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

    pub async fn results(&self, law_id: &str) -> Result<LawCounts, sqlx::Error> {
        let row = sqlx::query("SELECT oui_count, non_count FROM vote_results WHERE law_id = $1")
            .bind(law_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map_or_else(LawCounts::default, |row| LawCounts {
            oui: count(row.get(0)),
            non: count(row.get(1)),
        }))
    }

    /// Audit rows for a law: must equal its `oui + non`.
    pub async fn audited(&self, law_id: &str) -> Result<u64, sqlx::Error> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM vote_audit WHERE law_id = $1")
            .bind(law_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(count(n))
    }

    /// Voters with repeated attempts, and the attempts, over all laws.
    pub async fn duplicate_totals(&self) -> Result<(u64, u64), sqlx::Error> {
        let row = sqlx::query(
            "SELECT COUNT(*), CAST(COALESCE(SUM(attempts), 0) AS BIGINT) FROM duplicate_attempts",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((count(row.get(0)), count(row.get(1))))
    }

    /// Audited voter hashes after `after` (all of them from `None`), in
    /// order, one page at a time.
    pub async fn audited_hashes_after(
        &self,
        after: Option<&str>,
    ) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT voter_hash FROM vote_audit WHERE voter_hash > $1 ORDER BY voter_hash LIMIT $2",
        )
        .bind(after.unwrap_or(""))
        .bind(AUDIT_PAGE)
        .fetch_all(&self.pool)
        .await
    }

    /// Adds a law; returns false if it already existed.
    pub async fn create_law(&self, law_id: &str, title: &str) -> Result<bool, sqlx::Error> {
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

    /// Every law with its title and counts so far, in creation order.
    pub async fn laws(&self) -> Result<Vec<LawTotals>, sqlx::Error> {
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

    pub async fn law_exists(&self, law_id: &str) -> Result<bool, sqlx::Error> {
        let found: Option<String> =
            sqlx::query_scalar("SELECT law_id FROM referendum_laws WHERE law_id = $1")
                .bind(law_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(found.is_some())
    }
}

/// The first message per voter, sorted by hash so concurrent aggregators
/// take row locks in the same order (no deadlocks in PostgreSQL).
fn unique_by_voter(votes: &[VoteMessage]) -> Vec<&VoteMessage> {
    let mut first: BTreeMap<VoterHash, &VoteMessage> = BTreeMap::new();
    for vote in votes {
        first.entry(vote.voter_hash).or_insert(vote);
    }
    first.into_values().collect()
}

async fn insert_audit_rows(
    tx: &mut Transaction<'_, Any>,
    votes: &[&VoteMessage],
) -> Result<BTreeMap<(String, Choice), u64>, sqlx::Error> {
    let sql = format!(
        "INSERT INTO vote_audit (voter_hash, law_id, choice, request_id, recorded_at) VALUES {}
         ON CONFLICT (voter_hash) DO NOTHING RETURNING law_id, choice",
        values_list(votes.len(), 5)
    );
    let now = now_ms();
    let mut query = sqlx::query(&sql);
    for vote in votes {
        query = query
            .bind(vote.voter_hash.to_hex())
            .bind(vote.law_id.as_str())
            .bind(vote.vote.as_str())
            .bind(vote.request_id.as_str())
            .bind(now);
    }
    let mut counted = BTreeMap::new();
    for row in query.fetch_all(&mut **tx).await? {
        let law_id: String = row.get(0);
        let choice: String = row.get(1);
        let choice = choice
            .parse::<Choice>()
            .map_err(|err| sqlx::Error::Decode(Box::new(err)))?;
        *counted.entry((law_id, choice)).or_insert(0) += 1;
    }
    Ok(counted)
}

async fn add_to_results(
    tx: &mut Transaction<'_, Any>,
    counted: &BTreeMap<(String, Choice), u64>,
) -> Result<(), sqlx::Error> {
    let mut per_law: BTreeMap<&str, LawCounts> = BTreeMap::new();
    for ((law_id, choice), n) in counted {
        let counts = per_law.entry(law_id).or_default();
        match choice {
            Choice::Oui => counts.oui += n,
            Choice::Non => counts.non += n,
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
    for (law_id, counts) in &per_law {
        query = query
            .bind(*law_id)
            .bind(signed(counts.oui))
            .bind(signed(counts.non))
            .bind(now);
    }
    query.execute(&mut **tx).await?;
    Ok(())
}

/// Merges duplicate review messages per voter, ready for
/// [`VoteTables::record_duplicates`].
pub fn merge_duplicates(
    seen: impl IntoIterator<Item = (VoterHash, u64, i64)>,
) -> BTreeMap<VoterHash, DuplicateSeen> {
    let mut merged: HashMap<VoterHash, DuplicateSeen> = HashMap::new();
    for (hash, attempts, at) in seen {
        let series = merged.entry(hash).or_insert(DuplicateSeen {
            attempts,
            first_at: at,
            last_at: at,
        });
        series.attempts = series.attempts.max(attempts);
        series.first_at = series.first_at.min(at);
        series.last_at = series.last_at.max(at);
    }
    merged.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_list_numbers_parameters_row_by_row() {
        assert_eq!(values_list(2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(values_list(1, 1), "($1)");
    }

    #[test]
    fn duplicates_merge_to_the_highest_count_and_widest_window() {
        let hash = VoterHash::from_bytes([1; 32]);
        let merged = merge_duplicates([(hash, 2, 50), (hash, 1, 10), (hash, 3, 90)]);
        assert_eq!(
            merged[&hash],
            DuplicateSeen {
                attempts: 3,
                first_at: 10,
                last_at: 90
            }
        );
    }
}
