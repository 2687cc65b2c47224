//! Verification chunks: every proof and hash of a range of stored ballots, and each
//! ballot's code; finalization writes the summary the API and the web pages show.

use std::collections::BTreeMap;

use electionguard::ballot::CiphertextBallot;
use serde::{Deserialize, Serialize};

use super::pages::BallotPages;
use crate::domain::artifacts::VERIFICATION;
use crate::domain::{BallotRow, JobRow};
use crate::domain::{ChunkSpec, Target};
use crate::service::codec::{from_cbor, to_cbor};
use crate::service::{App, ElectionCrypto};

/// What a verification job found: ballots checked, each check with its counts, and
/// every failure named.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct BallotVerification {
    pub checked: u64,
    #[serde(default)]
    pub checks: BTreeMap<String, CheckCount>,
    pub failures: Vec<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct CheckCount {
    pub passed: u64,
    pub failed: u64,
}

const CODE_CHECK: &str = "tracking code is the ballot's link in the code chain";
const PROOF_CHECK: &str = "selection and contest proofs and ballot hashes verify";

impl BallotVerification {
    fn record(&mut self, check: &str, failure: Option<String>) {
        let count = self.checks.entry(check.to_string()).or_default();
        match failure {
            None => count.passed += 1,
            Some(failure) => {
                count.failed += 1;
                self.failures.push(failure);
            }
        }
    }

    fn merge(&mut self, part: BallotVerification) {
        self.checked += part.checked;
        for (check, count) in part.checks {
            let total = self.checks.entry(check).or_default();
            total.passed += count.passed;
            total.failed += count.failed;
        }
        self.failures.extend(part.failures);
    }
}

pub async fn chunk(app: &App, job: &JobRow, spec: &ChunkSpec) -> anyhow::Result<Vec<u8>> {
    let Target::Ballots {
        state,
        offset,
        limit,
    } = spec.target
    else {
        anyhow::bail!("a verification chunk covers ballots")
    };
    let election = app.election(&job.election_id).await?;
    let crypto = app.crypto(&election).await?;
    let mut report = BallotVerification::default();
    let mut pages = BallotPages::new(app, &job.election_id, state, offset, limit);
    while let Some(rows) = pages.next().await? {
        let crypto = crypto.clone();
        report = tokio::task::spawn_blocking(move || -> anyhow::Result<BallotVerification> {
            for row in &rows {
                verify_stored_ballot(row, &crypto, &mut report)?;
            }
            Ok(report)
        })
        .await??;
    }
    Ok(to_cbor(&report))
}

/// The ballot's code link and every proof and hash of it, into the report.
fn verify_stored_ballot(
    row: &BallotRow,
    crypto: &ElectionCrypto,
    report: &mut BallotVerification,
) -> anyhow::Result<()> {
    let ballot: CiphertextBallot = from_cbor(&row.body)?;
    report.checked += 1;
    let code =
        CiphertextBallot::compute_code(&ballot.code_seed, ballot.timestamp, &ballot.crypto_hash);
    let code_matches = row.code.as_deref() == Some(code.to_hex().as_str()) && code == ballot.code;
    report.record(
        CODE_CHECK,
        (!code_matches).then(|| format!("ballot {}: code does not match", ballot.object_id)),
    );
    let proofs = electionguard::verify::verify_submission(
        &ballot,
        &crypto.manifest,
        &crypto.context,
        &crypto.key,
    );
    report.record(PROOF_CHECK, proofs.err());
    Ok(())
}

pub async fn finalize(app: &App, job: &JobRow) -> anyhow::Result<()> {
    let mut total = BallotVerification::default();
    for (_, bytes) in app.store.chunk_results(&job.id).await? {
        total.merge(from_cbor(&bytes)?);
    }
    app.store
        .put_artifact(&job.election_id, VERIFICATION, &serde_json::to_vec(&total)?)
        .await?;
    Ok(())
}
