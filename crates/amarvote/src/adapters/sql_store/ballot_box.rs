//! The ballot box on SQL: voters, devices and their code chains, ballots.

use async_trait::async_trait;

use super::*;

/// Ballots per INSERT statement of an import: 9 parameters each, well inside both
/// databases' limits on parameters per statement.
const IMPORT_ROWS: usize = 200;

async fn insert_ballots(
    tx: &mut Tx<'_>,
    election_id: &str,
    rows: &[BallotRow],
) -> Result<(), ImportError> {
    let values: Vec<String> = (0..rows.len())
        .map(|i| {
            let p: Vec<String> = (1..=9).map(|k| format!("${}", i * 9 + k)).collect();
            format!("({})", p.join(", "))
        })
        .collect();
    let sql = format!(
        "INSERT INTO ballots ({BALLOT_COLUMNS}) VALUES {}",
        values.join(", ")
    );
    let mut query = sqlx::query(&sql);
    for b in rows {
        query = query
            .bind(election_id)
            .bind(&b.ballot_id)
            .bind(b.state.as_str())
            .bind(b.shuffle)
            .bind(&b.code)
            .bind(&b.body)
            .bind(None::<Vec<u8>>)
            .bind(None::<String>)
            .bind(b.created_at);
    }
    query.execute(&mut **tx).await.map_err(StoreError::from)?;
    Ok(())
}

async fn count_ballots_in(
    tx: &mut Tx<'_>,
    election_id: &str,
    state: BallotState,
    n: u64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE ballot_counts SET n = n + $3 WHERE election_id = $1 AND state = $2")
        .bind(election_id)
        .bind(state.as_str())
        .bind(n as i64)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[async_trait]
impl BallotBox for SqlStore {
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
        .bind(b.election_id.as_str())
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
        .bind(b.election_id.as_str())
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
                .bind(b.election_id.as_str())
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
                .bind(b.election_id.as_str())
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
            .bind(b.election_id.as_str())
            .bind(fingerprint)
            .bind(&b.ballot_id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?;
            if fresh.rows_affected() == 0 {
                return Err(CastError::CopiedBallot);
            }
        }
        // The election row is locked above, so the counter and the running product add no
        // contention of their own.
        count_ballots_in(&mut tx, &b.election_id, b.state, 1).await?;
        if b.state == BallotState::Cast {
            let tally = rules.tally.as_ref().ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "cast ballot {} came without its part of the tally",
                    b.ballot_id
                ))
            })?;
            fold_into_shard(&mut tx, &b.election_id, tally).await?;
        }
        tx.commit().await.map_err(StoreError::from)?;
        Ok(code)
    }

    async fn import_cast_ballots(
        &self,
        election_id: &str,
        device_id: u64,
        chain_start: &str,
        ballots: &[BallotRow],
        tally: &[TallyContribution<'_>],
    ) -> Result<(), ImportError> {
        if ballots
            .iter()
            .any(|b| b.state != BallotState::Cast || b.code.is_none())
        {
            return Err(ImportError::NotCast);
        }
        let held: u64 = tally.iter().map(|c| c.ballots).sum();
        if held != ballots.len() as u64 {
            return Err(ImportError::TallyMismatch {
                held,
                imported: ballots.len() as u64,
            });
        }
        let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
        let open =
            sqlx::query("UPDATE elections SET state = state WHERE id = $1 AND state = 'open'")
                .bind(election_id)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from)?;
        if open.rows_affected() == 0 {
            return Err(ImportError::NotOpen);
        }
        let end = device_chain_end(&mut tx, election_id, device_id)
            .await
            .map_err(|e| match e {
                CastError::Store(e) => ImportError::Store(e),
                _ => ImportError::BrokenChain(device_id),
            })?;
        if end != chain_start {
            return Err(ImportError::BrokenChain(device_id));
        }
        for rows in ballots.chunks(IMPORT_ROWS) {
            insert_ballots(&mut tx, election_id, rows).await?;
        }
        if let Some(last) = ballots.last().and_then(|b| b.code.as_deref()) {
            sqlx::query("UPDATE devices SET last_code = $1, ballots = ballots + $2 WHERE election_id = $3 AND device_id = $4")
                .bind(last)
                .bind(ballots.len() as i64)
                .bind(election_id)
                .bind(device_id as i64)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from)?;
        }
        count_ballots_in(
            &mut tx,
            election_id,
            BallotState::Cast,
            ballots.len() as u64,
        )
        .await?;
        for contribution in tally {
            fold_into_shard(&mut tx, election_id, contribution).await?;
        }
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }

    async fn tally_shards(
        &self,
        election_id: &str,
        first: u64,
        count: u64,
    ) -> Result<Vec<TallyShardRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT shard, ballots, product FROM tally_shards
             WHERE election_id = $1 AND shard >= $2 AND shard < $3 ORDER BY shard",
        )
        .bind(election_id)
        .bind(first as i64)
        .bind((first + count) as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(TallyShardRow {
                    shard: row.try_get::<i64, _>("shard")? as u64,
                    ballots: row.try_get::<i64, _>("ballots")? as u64,
                    product: row.try_get("product")?,
                })
            })
            .collect()
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
}
