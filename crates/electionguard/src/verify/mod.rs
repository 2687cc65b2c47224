//! The independent verifier: the ElectionGuard 1.0 verification steps that apply to a
//! published record, each reported with how many objects it checked and which failed.
//!
//! Ballots and decryption shares are checked in parallel (rayon), so verification uses
//! every core.

use std::collections::{HashMap, HashSet};

use rayon::prelude::*;

use crate::ballot::{
    CiphertextBallot, CiphertextBallotContest, CiphertextBallotSelection, EncryptionDevice,
};
use crate::context::CiphertextElectionContext;
use crate::context::{crypto_base_hash, crypto_extended_base_hash};
use crate::elgamal::{ElGamalCiphertext, EncryptionKey};
use crate::group::ElementModQ;
use crate::key_ceremony::{joint_key, ElectionPublicKey};
use crate::manifest::{ContestDescription, Manifest};
use crate::record::{DeviceChain, ElectionConstants, ElectionRecord};
use crate::tally::CiphertextTally;

mod decryption;

use decryption::{check_coefficients, check_plaintext, check_spoiled, Guardians};

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

type Outcome = Result<(), String>;

fn ensure(ok: bool, message: impl FnOnce() -> String) -> Outcome {
    if ok {
        Ok(())
    } else {
        Err(message())
    }
}

/// Whether a record must declare its ballot box (`ballot_box.json`) to pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BallotBoxPolicy {
    /// Completeness must be proven: a record without a declaration fails.
    Required,
    /// For records of producers that publish no declaration (the reference library,
    /// MITRE's example): a missing declaration and chain gaps become notes ("not
    /// proven: …"). A declaration that is there is checked all the same.
    Optional,
}

/// Runs every check of the record; the record must declare its ballot box.
pub fn verify_record(record: &ElectionRecord) -> VerificationReport {
    verify_record_with(record, BallotBoxPolicy::Required)
}

/// Runs every check of the record, with `policy` deciding whether a record without a
/// ballot box declaration fails.
pub fn verify_record_with(record: &ElectionRecord, policy: BallotBoxPolicy) -> VerificationReport {
    let mut report = VerificationReport::default();
    let context = &record.context;
    let mut guardians: Vec<ElectionPublicKey> = record
        .guardians
        .iter()
        .map(ElectionPublicKey::from)
        .collect();
    guardians.sort_by_key(|g| g.sequence_order);
    let key = EncryptionKey::new(&context.elgamal_public_key);

    report.add(
        "parameters are the standard ElectionGuard constants",
        vec![ensure(
            record.constants == ElectionConstants::standard(),
            || "constants.json: p, q, r or g differ from the standard".into(),
        )],
    );
    report.add(
        "guardian public keys and Schnorr proofs",
        check_guardians(&guardians, context.quorum, context.number_of_guardians),
    );
    report.add(
        "joint key, commitment hash and base hashes",
        check_hashes(record, &guardians),
    );
    report.add(
        "ballot hashes, selection and contest proofs",
        check_ballots(record, &key),
    );
    report.add("ballot code chain", check_code_chain(record));
    let (results, notes) = check_completeness(record, policy);
    report.add_with_notes("ballot box completeness", results, notes);
    report.add(
        "no two ballots carry the same contest ciphertexts",
        check_copies(record),
    );
    if let Some(tally) = &record.encrypted_tally {
        report.add(
            "encrypted tally is the product of the cast ballots",
            check_encrypted_tally(record, tally),
        );
    }
    let by_id = Guardians::new(
        guardians
            .iter()
            .map(|g| (g.owner_id.clone(), g.clone()))
            .collect(),
    );
    if let (Some(tally), Some(encrypted)) = (&record.tally, &record.encrypted_tally) {
        let ciphertexts = tally_ciphertext_index(encrypted);
        report.add(
            "tally decryption shares, compensated shares and counts",
            check_plaintext(record, tally, &ciphertexts, &by_id),
        );
    }
    if let Some(coefficients) = &record.coefficients {
        report.add(
            "Lagrange coefficients",
            check_coefficients(record, coefficients, &by_id.keys),
        );
    }
    report.add("spoiled ballot decryptions", check_spoiled(record, &by_id));
    report
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
fn check_ballots(record: &ElectionRecord, key: &EncryptionKey) -> Vec<Outcome> {
    record
        .submitted_ballots
        .par_chunks(BATCH_SIZE)
        .flat_map_iter(|chunk| {
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
        })
        .collect()
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

/// No two ballots continue the same link of a chain.
fn check_code_chain(record: &ElectionRecord) -> Vec<Outcome> {
    let mut seen: HashMap<&ElementModQ, &str> = HashMap::new();
    record
        .submitted_ballots
        .iter()
        .map(|b| match seen.insert(&b.code_seed, &b.object_id) {
            Some(other) => Err(format!(
                "ballot {}: shares its code seed with ballot {other}",
                b.object_id
            )),
            None => Ok(()),
        })
        .collect()
}

/// Ballots whose code seed is neither a published device hash nor another ballot's code:
/// the ballot before them in their chain is not in the record.
fn chain_gaps<'a>(
    ballots: &'a [CiphertextBallot],
    devices: &HashSet<ElementModQ>,
    by_code: &HashMap<&ElementModQ, usize>,
) -> Vec<&'a CiphertextBallot> {
    ballots
        .iter()
        .enumerate()
        .filter(|(at, b)| {
            let follows_a_ballot = by_code.get(&b.code_seed).is_some_and(|other| other != at);
            !devices.contains(&b.code_seed) && !follows_a_ballot
        })
        .map(|(_, b)| b)
        .collect()
}

fn gap_message(ballot: &CiphertextBallot) -> String {
    format!(
        "ballot {}: chain gap (its code seed {} is no device hash and no other ballot's code)",
        ballot.object_id, ballot.code_seed
    )
}

/// The record holds every ballot the ballot box accepted: the counts it declares, its
/// devices, and each device's chain walked back from its last code to the device hash.
/// Without a declaration completeness cannot be proven: a failure under
/// [`BallotBoxPolicy::Required`], notes under [`BallotBoxPolicy::Optional`].
fn check_completeness(
    record: &ElectionRecord,
    policy: BallotBoxPolicy,
) -> (Vec<Outcome>, Vec<String>) {
    let device_hashes: HashSet<ElementModQ> = record.devices.iter().map(|d| d.hash()).collect();
    let ballots = &record.submitted_ballots;
    let mut by_code: HashMap<&ElementModQ, usize> = HashMap::new();
    for (at, ballot) in ballots.iter().enumerate() {
        by_code.entry(&ballot.code).or_insert(at);
    }
    let gaps = chain_gaps(ballots, &device_hashes, &by_code);
    let Some(declared) = &record.ballot_box else {
        let missing = "ballot_box.json: the record declares no ballot box, so its completeness cannot be proven";
        let mut notes: Vec<String> = Vec::new();
        let results = match policy {
            BallotBoxPolicy::Required => vec![Err(missing.to_string())],
            BallotBoxPolicy::Optional => {
                notes.push(format!("not proven: {missing}"));
                Vec::new()
            }
        };
        notes.extend(
            gaps.iter()
                .map(|b| format!("not proven: {}", gap_message(b))),
        );
        return (results, notes);
    };

    let mut results = Vec::new();
    let count = |state: fn(&CiphertextBallot) -> bool| {
        record.submitted_ballots.iter().filter(|b| state(b)).count() as u64
    };
    for (name, declared, held) in [
        ("cast", declared.cast, count(CiphertextBallot::is_cast)),
        (
            "spoiled",
            declared.spoiled,
            count(CiphertextBallot::is_spoiled),
        ),
    ] {
        results.push(ensure(declared == held, || {
            format!("ballot_box.json: record declares {declared} {name} ballots but holds {held}")
        }));
    }

    let published: HashMap<u64, &EncryptionDevice> =
        record.devices.iter().map(|d| (d.device_id, d)).collect();
    let mut declared_ids: HashSet<u64> = HashSet::new();
    for chain in &declared.devices {
        results.push(ensure(declared_ids.insert(chain.device_id), || {
            format!(
                "ballot_box.json: device {} is declared twice",
                chain.device_id
            )
        }));
    }
    for device in &record.devices {
        results.push(ensure(declared_ids.contains(&device.device_id), || {
            format!(
                "device {}: published but not declared in ballot_box.json",
                device.device_id
            )
        }));
    }

    // Which device's chain each ballot lies on, by its place in the record.
    let mut on_chain: Vec<Option<u64>> = vec![None; ballots.len()];
    for chain in &declared.devices {
        let Some(device) = published.get(&chain.device_id) else {
            results.push(Err(format!(
                "device {}: declared in ballot_box.json but not published",
                chain.device_id
            )));
            continue;
        };
        results.push(walk_chain(
            chain,
            &device.hash(),
            ballots,
            &by_code,
            &mut on_chain,
        ));
    }

    for (ballot, device) in ballots.iter().zip(&on_chain) {
        results.push(ensure(device.is_some(), || {
            format!(
                "ballot {}: lies on no declared device's chain",
                ballot.object_id
            )
        }));
    }
    results.extend(gaps.iter().map(|b| Err(gap_message(b))));
    (results, Vec::new())
}

/// Walks a declared chain back from its last code to the device hash, marking each ballot
/// it passes; fails at the first missing code, at a ballot already passed, or on a length
/// other than the declared one.
fn walk_chain(
    chain: &DeviceChain,
    device_hash: &ElementModQ,
    ballots: &[CiphertextBallot],
    by_code: &HashMap<&ElementModQ, usize>,
    on_chain: &mut [Option<u64>],
) -> Outcome {
    let device = chain.device_id;
    let mut length: u64 = 0;
    let mut next = chain.last_code.as_ref();
    while let Some(code) = next {
        let at = *by_code.get(code).ok_or_else(|| {
            format!("device {device}: chain breaks at code {code}: no ballot in the record has it")
        })?;
        let ballot = &ballots[at];
        if let Some(other) = on_chain[at].replace(device) {
            return Err(format!(
                "device {device}: chain passes ballot {} again (already on device {other}'s chain)",
                ballot.object_id
            ));
        }
        length += 1;
        next = (&ballot.code_seed != device_hash).then_some(&ballot.code_seed);
    }
    ensure(length == chain.ballots, || {
        format!(
            "device {device}: chain holds {length} ballots, ballot_box.json declares {}",
            chain.ballots
        )
    })
}

/// No contest's ciphertexts appear twice in the record: a second copy is a copied ballot
/// or contest, whatever object ids it carries.
fn check_copies(record: &ElectionRecord) -> Vec<Outcome> {
    let fingerprints: Vec<Vec<[u8; 32]>> = record
        .submitted_ballots
        .par_iter()
        .map(CiphertextBallot::contest_fingerprints)
        .collect();
    let mut seen: HashMap<&[u8; 32], (&str, &str)> = HashMap::new();
    let mut results = Vec::new();
    for (ballot, prints) in record.submitted_ballots.iter().zip(&fingerprints) {
        for (contest, print) in ballot.contests.iter().zip(prints) {
            let here = (ballot.object_id.as_str(), contest.object_id.as_str());
            results.push(match seen.insert(print, here) {
                Some((other, other_contest)) => Err(format!(
                    "ballot {} contest {}: carries the same ciphertexts as ballot {other} contest {other_contest}",
                    here.0, here.1
                )),
                None => Ok(()),
            });
        }
    }
    results
}

fn check_encrypted_tally(record: &ElectionRecord, published: &CiphertextTally) -> Vec<Outcome> {
    let mut tally = CiphertextTally::empty(&published.object_id, &record.manifest);
    let cast: Vec<&CiphertextBallot> = record
        .submitted_ballots
        .iter()
        .filter(|b| b.is_cast())
        .collect();
    let mut results = Vec::new();
    if let Err(e) = tally.append_all(&cast) {
        results.push(Err(e.to_string()));
    }
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
