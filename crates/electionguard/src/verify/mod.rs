//! The independent verifier: the ElectionGuard 1.0 verification steps that apply to a
//! published record, each reported with how many objects it checked and which failed.
//!
//! Ballots and decryption shares are checked in parallel (rayon), so verification uses
//! every core.

use std::collections::{HashMap, HashSet};

use rayon::prelude::*;

use crate::ballot::{CiphertextBallot, CiphertextBallotContest, CiphertextBallotSelection};
use crate::context::CiphertextElectionContext;
use crate::context::{crypto_base_hash, crypto_extended_base_hash};
use crate::decrypt::PlaintextTally;
use crate::elgamal::{ElGamalCiphertext, EncryptionKey};
use crate::group::ElementModQ;
use crate::key_ceremony::{joint_key, ElectionPublicKey};
use crate::manifest::{ContestDescription, Manifest};
use crate::record::{ElectionConstants, ElectionRecord};
use crate::tally::CiphertextTally;

mod ballot_box;
mod decryption;
mod outcome;

use ballot_box::Traces;

use decryption::{check_coefficients, check_plaintext, check_spoiled, Guardians};
pub use outcome::BallotBoxPolicy;
use outcome::{ensure, Outcome};

/// The outcome of one verification step.
#[derive(Clone, Debug)]
pub struct CheckResult {
    pub name: &'static str,
    pub checked: usize,
    /// `object: what failed`, one per failing object.
    pub failures: Vec<String>,
    /// Observations that are not failures (e.g. "not proven: …" where a record declares no
    /// ballot box and [`BallotBoxPolicy::Optional`] lets it pass).
    pub notes: Vec<String>,
}

impl CheckResult {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Every step's outcome, in the order of the specification.
#[derive(Clone, Debug, Default)]
pub struct VerificationReport {
    pub checks: Vec<CheckResult>,
}

impl VerificationReport {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(CheckResult::passed)
    }

    fn add(&mut self, name: &'static str, results: Vec<Result<(), String>>) {
        self.add_with_notes(name, results, Vec::new());
    }

    fn add_counted(&mut self, name: &'static str, counted: Counted) {
        self.checks.push(CheckResult {
            name,
            checked: counted.checked,
            failures: counted.failures,
            notes: Vec::new(),
        });
    }

    fn add_with_notes(
        &mut self,
        name: &'static str,
        results: Vec<Result<(), String>>,
        notes: Vec<String>,
    ) {
        let checked = results.len();
        let failures = results.into_iter().filter_map(Result::err).collect();
        self.checks.push(CheckResult {
            name,
            checked,
            failures,
            notes,
        });
    }
}

/// Runs every check of the record; the record must declare its ballot box.
pub fn verify_record(record: &ElectionRecord) -> VerificationReport {
    verify_record_with(record, BallotBoxPolicy::Required)
}

/// Runs every check of the record, with `policy` deciding whether a record without a
/// ballot box declaration fails.
pub fn verify_record_with(record: &ElectionRecord, policy: BallotBoxPolicy) -> VerificationReport {
    let mut verifier = RecordVerifier::new(record, policy);
    // Each ballot is paired with the first decryption of its id; any other is refused.
    let mut decryptions: HashMap<&str, &PlaintextTally> = HashMap::new();
    for plaintext in &record.spoiled_ballots {
        if decryptions
            .insert(&plaintext.object_id, plaintext)
            .is_some()
        {
            verifier.unmatched_decryption(&plaintext.object_id);
        }
    }
    for batch in record.submitted_ballots.chunks(VERIFY_BATCH) {
        let found: Vec<Option<&PlaintextTally>> = batch
            .iter()
            .map(|b| decryptions.remove(b.object_id.as_str()))
            .collect();
        verifier.add(batch, &found);
    }
    for id in decryptions.keys() {
        verifier.unmatched_decryption(id);
    }
    verifier.finish()
}

/// Submitted ballots handed to [`RecordVerifier::add`] at a time by [`verify_record_with`].
pub const VERIFY_BATCH: usize = 256;

/// Checks and failures of one check, counted as ballots arrive.
#[derive(Default)]
struct Counted {
    checked: usize,
    failures: Vec<String>,
}

impl Counted {
    fn extend(&mut self, outcomes: impl IntoIterator<Item = Outcome>) {
        for outcome in outcomes {
            self.checked += 1;
            if let Err(e) = outcome {
                self.failures.push(e);
            }
        }
    }
}

/// A record verified as its submitted ballots arrive, batch by batch (each on every core),
/// so that a record of any size need not be read whole: of each ballot only what the
/// checks across ballots need is kept (see `ballot_box.rs`), and each challenged ballot's
/// decryption is checked with the ballot in hand.
pub struct RecordVerifier<'r> {
    record: &'r ElectionRecord,
    policy: BallotBoxPolicy,
    key: EncryptionKey,
    guardians: Vec<ElectionPublicKey>,
    by_id: Guardians,
    ballots: Counted,
    spoiled: Counted,
    traces: Traces,
    tally: CiphertextTally,
    tally_error: Option<String>,
}

impl<'r> RecordVerifier<'r> {
    /// For the record's small parts; its `submitted_ballots` and `spoiled_ballots` are not
    /// read here: they come through [`Self::add`].
    pub fn new(record: &'r ElectionRecord, policy: BallotBoxPolicy) -> Self {
        let mut guardians: Vec<ElectionPublicKey> = record
            .guardians
            .iter()
            .map(ElectionPublicKey::from)
            .collect();
        guardians.sort_by_key(|g| g.sequence_order);
        let by_id = Guardians::new(
            guardians
                .iter()
                .map(|g| (g.owner_id.clone(), g.clone()))
                .collect(),
        );
        let tally_id = record
            .encrypted_tally
            .as_ref()
            .map_or("election-results", |t| t.object_id.as_str());
        RecordVerifier {
            key: EncryptionKey::new(&record.context.elgamal_public_key),
            tally: CiphertextTally::empty(tally_id, &record.manifest),
            record,
            policy,
            guardians,
            by_id,
            ballots: Counted::default(),
            spoiled: Counted::default(),
            traces: Traces::default(),
            tally_error: None,
        }
    }

    /// How many ballots will arrive, so that what is kept of them is allocated once.
    pub fn expect(&mut self, ballots: usize) {
        self.traces.reserve(ballots);
    }

    /// A batch of submitted ballots, each with the decryption the record publishes under
    /// its id (`None` where it publishes none).
    pub fn add(&mut self, ballots: &[CiphertextBallot], decryptions: &[Option<&PlaintextTally>]) {
        assert_eq!(ballots.len(), decryptions.len(), "one entry per ballot");
        let (record, key, by_id) = (self.record, &self.key, &self.by_id);
        let proofs: Vec<Outcome> = ballots
            .par_chunks(BATCH_SIZE)
            .flat_map_iter(|chunk| check_ballots(record, key, chunk))
            .collect();
        self.ballots.extend(proofs);
        let prints: Vec<Vec<[u8; 32]>> = ballots
            .par_iter()
            .map(CiphertextBallot::contest_fingerprints)
            .collect();
        for (ballot, prints) in ballots.iter().zip(prints) {
            self.traces.add(ballot, prints);
        }
        let cast: Vec<&CiphertextBallot> = ballots.iter().filter(|b| b.is_cast()).collect();
        if let Err(e) = self.tally.append_all(&cast) {
            self.tally_error.get_or_insert(e.to_string());
        }
        let decrypted: Vec<Outcome> = ballots
            .par_iter()
            .zip(decryptions)
            .filter_map(|(ballot, plaintext)| Some((ballot, (*plaintext)?)))
            .flat_map_iter(|(ballot, plaintext)| {
                match ballot.is_spoiled() && plaintext.object_id == ballot.object_id {
                    true => check_spoiled(record, ballot, plaintext, by_id),
                    false => vec![Err(no_spoiled_ballot(&plaintext.object_id))],
                }
            })
            .collect();
        self.spoiled.extend(decrypted);
    }

    /// A published decryption of a challenged ballot the record does not hold (or holds
    /// another decryption of).
    pub fn unmatched_decryption(&mut self, id: &str) {
        self.spoiled.extend([Err(no_spoiled_ballot(id))]);
    }

    /// Every check's outcome, once every ballot has arrived.
    pub fn finish(mut self) -> VerificationReport {
        let record = self.record;
        let context = &record.context;
        let mut report = VerificationReport::default();
        report.add(
            "parameters are the standard ElectionGuard constants",
            vec![ensure(
                record.constants == ElectionConstants::standard(),
                || "constants.json: p, q, r or g differ from the standard".into(),
            )],
        );
        report.add(
            "guardian public keys and Schnorr proofs",
            check_guardians(&self.guardians, context.quorum, context.number_of_guardians),
        );
        report.add(
            "joint key, commitment hash and base hashes",
            check_hashes(record, &self.guardians),
        );
        report.add_counted("ballot hashes, selection and contest proofs", self.ballots);
        report.add("ballot code chain", self.traces.code_chain());
        let (results, notes) =
            self.traces
                .completeness(&record.devices, record.ballot_box.as_ref(), self.policy);
        report.add_with_notes("ballot box completeness", results, notes);
        report.add(
            "no two ballots carry the same contest ciphertexts",
            self.traces.copies(),
        );
        if let Some(published) = &record.encrypted_tally {
            report.add(
                "encrypted tally is the product of the cast ballots",
                check_encrypted_tally(&self.tally, self.tally_error, published),
            );
        }
        if let (Some(tally), Some(encrypted)) = (&record.tally, &record.encrypted_tally) {
            let ciphertexts = tally_ciphertext_index(encrypted);
            report.add(
                "tally decryption shares, compensated shares and counts",
                check_plaintext(record, tally, &ciphertexts, &self.by_id),
            );
        }
        if let Some(coefficients) = &record.coefficients {
            report.add(
                "Lagrange coefficients",
                check_coefficients(record, coefficients, &self.by_id.keys),
            );
        }
        report.add_counted("spoiled ballot decryptions", self.spoiled);
        report
    }
}

fn no_spoiled_ballot(id: &str) -> String {
    format!("spoiled ballot {id}: no such spoiled submitted ballot")
}

fn check_guardians(guardians: &[ElectionPublicKey], quorum: u32, expected: u32) -> Vec<Outcome> {
    let mut results: Vec<Outcome> = guardians
        .par_iter()
        .map(|g| {
            g.validate(quorum)
                .map_err(|e| format!("guardian {}: {e}", g.owner_id))
        })
        .collect();
    results.push(ensure(guardians.len() == expected as usize, || {
        format!(
            "guardians: {} records for {expected} guardians",
            guardians.len()
        )
    }));
    let orders: HashSet<u64> = guardians.iter().map(|g| g.sequence_order).collect();
    results.push(ensure(orders.len() == guardians.len(), || {
        "guardians: sequence orders are not distinct".into()
    }));
    results
}

fn check_hashes(record: &ElectionRecord, guardians: &[ElectionPublicKey]) -> Vec<Outcome> {
    let c = &record.context;
    let (key, commitment_hash) = joint_key(guardians);
    let base = crypto_base_hash(c.number_of_guardians, c.quorum, &c.manifest_hash);
    vec![
        ensure(record.manifest.crypto_hash() == c.manifest_hash, || {
            "context: manifest hash is not H(manifest)".into()
        }),
        ensure(key == c.elgamal_public_key, || {
            "context: joint key is not the product of the guardian keys".into()
        }),
        ensure(commitment_hash == c.commitment_hash, || {
            "context: commitment hash is not H(commitments)".into()
        }),
        ensure(base == c.crypto_base_hash, || {
            "context: base hash is not H(p, q, g, n, k, manifest hash)".into()
        }),
        ensure(
            crypto_extended_base_hash(&base, &c.commitment_hash) == c.crypto_extended_base_hash,
            || "context: extended base hash is not H(Q, commitment hash)".into(),
        ),
    ]
}

/// Ballots per batch: large enough to share the batch's fixed costs, small enough to keep
/// both cores busy and to re-check few ballots when a batch fails.
const BATCH_SIZE: usize = 16;

/// How much of a ballot's proofs [`check_ballot`] verifies itself.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Proofs {
    /// Every equation, one proof at a time: names the failing proof.
    Each,
    /// Only challenges and structure; the equations are left to a batch.
    ChallengesOnly,
}

/// Structure and hashes per ballot, proof equations batched; a failed batch is re-checked
/// ballot by ballot so that every failure names its ballot, contest and selection.
fn check_ballots(
    record: &ElectionRecord,
    key: &EncryptionKey,
    chunk: &[CiphertextBallot],
) -> Vec<Outcome> {
    let structure: Vec<Outcome> = chunk
        .iter()
        .map(|b| check_ballot(record, key, b, Proofs::ChallengesOnly))
        .collect();
    let sound: Vec<&CiphertextBallot> = chunk
        .iter()
        .zip(&structure)
        .filter(|(_, r)| r.is_ok())
        .map(|(b, _)| b)
        .collect();
    if crate::batch::ballot_proofs_hold(&sound, key) {
        structure
    } else {
        chunk
            .iter()
            .map(|b| check_ballot(record, key, b, Proofs::Each))
            .collect()
    }
}

fn check_ballot(
    record: &ElectionRecord,
    key: &EncryptionKey,
    ballot: &CiphertextBallot,
    proofs: Proofs,
) -> Outcome {
    let id = &ballot.object_id;
    ensure(ballot.is_cast() || ballot.is_spoiled(), || {
        format!("ballot {id}: state is neither cast nor spoiled")
    })?;
    check_ballot_contents(&record.manifest, &record.context, key, ballot, proofs)?;
    check_code(ballot)
}

/// The ballot code (tracking code) is H(code seed, timestamp, crypto hash).
fn check_code(ballot: &CiphertextBallot) -> Outcome {
    let code =
        CiphertextBallot::compute_code(&ballot.code_seed, ballot.timestamp, &ballot.crypto_hash);
    ensure(code == ballot.code, || {
        format!(
            "ballot {}: code is not H(code seed, timestamp, crypto hash)",
            ballot.object_id
        )
    })
}

/// Everything about a ballot except its state and its place in the code chain.
fn check_ballot_contents(
    manifest: &Manifest,
    context: &CiphertextElectionContext,
    key: &EncryptionKey,
    ballot: &CiphertextBallot,
    proofs: Proofs,
) -> Outcome {
    let id = &ballot.object_id;
    ensure(ballot.manifest_hash == context.manifest_hash, || {
        format!("ballot {id}: manifest hash differs from the context")
    })?;
    let expected = manifest.contests_for_style(&ballot.style_id);
    ensure(!expected.is_empty(), || {
        format!("ballot {id}: unknown ballot style {}", ballot.style_id)
    })?;
    let ids: Vec<&String> = ballot.contests.iter().map(|c| &c.object_id).collect();
    let expected_ids: Vec<&String> = expected.iter().map(|c| &c.object_id).collect();
    ensure(ids == expected_ids, || {
        format!(
            "ballot {id}: contests are not those of style {}",
            ballot.style_id
        )
    })?;
    for (contest, description) in ballot.contests.iter().zip(expected) {
        check_contest(
            id,
            contest,
            description,
            key,
            &context.crypto_extended_base_hash,
            proofs,
        )?;
    }
    let crypto_hash =
        CiphertextBallot::compute_crypto_hash(id, &ballot.manifest_hash, &ballot.contests);
    ensure(crypto_hash == ballot.crypto_hash, || {
        format!("ballot {id}: crypto hash does not match its contests")
    })
}

/// Checks a ballot offered for casting: it belongs to this election's manifest and
/// context, its hashes hold, its code is H(code seed, timestamp, crypto hash), and every
/// proof verifies (batched; a failing batch is re-checked proof by proof so the error
/// names the selection). The code the device computed is the voter's tracking code, so
/// it must be the code the record publishes; whether the code seed links the ballot into
/// the device's chain is the ballot box's own check, not this one.
pub fn verify_submission(
    ballot: &CiphertextBallot,
    manifest: &Manifest,
    context: &CiphertextElectionContext,
    key: &EncryptionKey,
) -> Result<(), String> {
    check_ballot_contents(manifest, context, key, ballot, Proofs::ChallengesOnly)?;
    check_code(ballot)?;
    if crate::batch::ballot_proofs_hold(&[ballot], key) {
        return Ok(());
    }
    check_ballot_contents(manifest, context, key, ballot, Proofs::Each)?;
    Err(format!(
        "ballot {}: the proofs do not hold together",
        ballot.object_id
    ))
}

fn check_contest(
    ballot: &str,
    contest: &CiphertextBallotContest,
    description: &ContestDescription,
    key: &EncryptionKey,
    qbar: &ElementModQ,
    proofs: Proofs,
) -> Outcome {
    let at = |what: &str| format!("ballot {ballot} contest {}: {what}", contest.object_id);
    ensure(
        contest.description_hash == description.crypto_hash(),
        || at("description hash differs from the manifest"),
    )?;
    ensure(contest.sequence_order == description.sequence_order, || {
        at("sequence order differs from the manifest")
    })?;
    let expected: Vec<_> = description
        .ballot_selections
        .iter()
        .cloned()
        .chain(description.placeholder_selections())
        .collect();
    ensure(contest.ballot_selections.len() == expected.len(), || {
        at("selections are not those of the manifest plus placeholders")
    })?;
    for (selection, d) in contest.ballot_selections.iter().zip(&expected) {
        ensure(
            selection.object_id == d.object_id && selection.description_hash == d.crypto_hash(),
            || {
                at(&format!(
                    "selection {} does not match the manifest",
                    selection.object_id
                ))
            },
        )?;
        check_selection(selection, key, qbar, proofs)
            .map_err(|e| at(&format!("selection {}: {e}", selection.object_id)))?;
    }
    let accumulation = CiphertextBallotContest::accumulate(&contest.ballot_selections);
    ensure(accumulation == contest.ciphertext_accumulation, || {
        at("ciphertext accumulation is not the product of the selections")
    })?;
    let hash = CiphertextBallotContest::compute_crypto_hash(
        &contest.object_id,
        &contest.description_hash,
        &contest.ballot_selections,
    );
    ensure(hash == contest.crypto_hash, || {
        at("crypto hash does not match its selections")
    })?;
    let proof = contest
        .proof
        .as_ref()
        .ok_or_else(|| at("no contest proof"))?;
    ensure(proof.constant == description.number_elected, || {
        at("proof constant is not the contest's number elected")
    })?;
    let outcome = match proofs {
        Proofs::Each => proof.verify(&accumulation, key, qbar),
        Proofs::ChallengesOnly => proof.check_challenge(&accumulation, qbar),
    };
    outcome.map_err(|e| at(&format!("contest proof: {e}")))
}

fn check_selection(
    selection: &CiphertextBallotSelection,
    key: &EncryptionKey,
    qbar: &ElementModQ,
    proofs: Proofs,
) -> Result<(), String> {
    let hash = CiphertextBallotSelection::compute_crypto_hash(
        &selection.object_id,
        &selection.description_hash,
        &selection.ciphertext,
    );
    ensure(hash == selection.crypto_hash, || {
        "crypto hash does not match the ciphertext".into()
    })?;
    let proof = selection.proof.as_ref().ok_or("no selection proof")?;
    let outcome = match proofs {
        Proofs::Each => proof.verify(&selection.ciphertext, key, qbar),
        Proofs::ChallengesOnly => proof.check_challenge(&selection.ciphertext, qbar),
    };
    outcome.map_err(|e| format!("selection proof: {e}"))
}

fn check_encrypted_tally(
    tally: &CiphertextTally,
    error: Option<String>,
    published: &CiphertextTally,
) -> Vec<Outcome> {
    let mut results: Vec<Outcome> = error.into_iter().map(Err).collect();
    for (id, contest) in &tally.contests {
        let theirs = published.contests.get(id);
        for (sid, selection) in &contest.selections {
            let found = theirs.and_then(|c| c.selections.get(sid));
            results.push(ensure(found == Some(selection), || {
                format!("encrypted tally selection {sid}: not the product of the cast ballots")
            }));
        }
    }
    results.push(ensure(
        tally.contests.len() == published.contests.len(),
        || "encrypted tally: contests differ from the manifest".into(),
    ));
    results
}

fn tally_ciphertext_index(tally: &CiphertextTally) -> HashMap<(String, String), ElGamalCiphertext> {
    tally
        .contests
        .values()
        .flat_map(|c| {
            c.selections.values().map(move |s| {
                (
                    (c.object_id.clone(), s.object_id.clone()),
                    s.ciphertext.clone(),
                )
            })
        })
        .collect()
}
