//! A whole ElectionGuard election simulated in memory, as the demo and the benchmarks run
//! it: generated contests and voters' choices, encryption, cast or spoil, tally, decryption
//! with missing guardians (compensated shares), combination, and the published record.

use anyhow::Result;
use electionguard::ballot::{
    BallotBoxState, CiphertextBallot, EncryptionDevice, PlaintextBallot, PlaintextBallotContest,
    PlaintextBallotSelection,
};
use electionguard::context::CiphertextElectionContext;
use electionguard::decrypt::{
    ballot_ciphertexts, combine_shares, compute_compensated_share, compute_decryption_share,
    lagrange_coefficients, reconstruct_share, tally_ciphertexts, ContestCiphertexts,
    DecryptionShare, LagrangeCoefficientsRecord, PlaintextTally,
};
use electionguard::encrypt::Encryptor;
use electionguard::group::ElementModQ;
use electionguard::key_ceremony::{ElectionPublicKey, GuardianRecord};
use electionguard::manifest::Manifest;
use electionguard::record::{BallotBox, DeviceChain, ElectionConstants, ElectionRecord};
use electionguard::tally::CiphertextTally;
use rayon::prelude::*;

use crate::election::{build_manifest, Ceremony, ContestSpec, BALLOT_STYLE};

/// The shape of a generated election.
#[derive(Clone, Debug)]
pub struct ElectionShape {
    pub guardians: u32,
    pub quorum: u32,
    pub missing: u32,
    pub ballots: u32,
    pub contests: u32,
    pub selections: u32,
    pub spoil_rate: f64,
    pub seed: u64,
}

/// A small deterministic generator for the voters' choices (not for anything secret).
pub struct ChoiceRng(u64);

impl ChoiceRng {
    pub fn new(seed: u64) -> Self {
        ChoiceRng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p && p > 0.0
    }
}

/// The demo's contests: C one-of-m contests of S candidates each.
pub fn demo_contests(shape: &ElectionShape) -> Vec<ContestSpec> {
    (1..=shape.contests)
        .map(|c| ContestSpec {
            title: format!("Contest {c}"),
            votes_allowed: 1,
            choices: (1..=shape.selections)
                .map(|s| format!("Candidate {c}.{s}"))
                .collect(),
        })
        .collect()
}

/// The demo election's manifest.
pub fn manifest(shape: &ElectionShape) -> Manifest {
    let scope = format!(
        "amarvote-demo-n{}-k{}-b{}",
        shape.guardians, shape.quorum, shape.ballots
    );
    build_manifest(
        &scope,
        "AmarVote demonstration election",
        &demo_contests(shape),
        "2026-11-23T08:00:00+00:00",
        "2026-11-23T20:00:00+00:00",
    )
}

/// One voter's random choices: one candidate per contest.
pub fn random_ballot(manifest: &Manifest, index: u32, rng: &mut ChoiceRng) -> PlaintextBallot {
    let contests = manifest
        .contests
        .iter()
        .map(|c| {
            let chosen = rng.below(c.ballot_selections.len() as u64) as usize;
            let ballot_selections = c
                .ballot_selections
                .iter()
                .enumerate()
                .map(|(i, s)| PlaintextBallotSelection {
                    object_id: s.object_id.clone(),
                    vote: u64::from(i == chosen),
                    is_placeholder_selection: false,
                    write_in: None,
                })
                .collect();
            PlaintextBallotContest {
                object_id: c.object_id.clone(),
                ballot_selections,
            }
        })
        .collect();
    PlaintextBallot {
        object_id: format!("ballot-{index:05}"),
        style_id: BALLOT_STYLE.into(),
        contests,
    }
}

/// Encrypts ballots in parallel, then chains their codes in order from the device hash.
pub fn encrypt_ballots(
    encryptor: &Encryptor,
    device: &EncryptionDevice,
    ballots: &[PlaintextBallot],
    timestamp: i64,
    on_progress: &(dyn Fn() + Sync),
) -> Result<Vec<CiphertextBallot>> {
    let seed = device.hash();
    let mut encrypted = ballots
        .par_iter()
        .map(|b| {
            let ballot = encryptor.encrypt(b, &seed, &ElementModQ::random(), timestamp);
            on_progress();
            ballot
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut previous = seed;
    for ballot in &mut encrypted {
        ballot.code_seed = previous;
        ballot.code = CiphertextBallot::compute_code(
            &ballot.code_seed,
            ballot.timestamp,
            &ballot.crypto_hash,
        );
        previous = ballot.code.clone();
    }
    Ok(encrypted)
}

/// Tallies cast ballots in chunks of 1,000 and merges the chunk tallies.
pub fn tally(manifest: &Manifest, ballots: &[CiphertextBallot]) -> Result<CiphertextTally> {
    let cast: Vec<&CiphertextBallot> = ballots.iter().filter(|b| b.is_cast()).collect();
    let chunks = cast
        .par_chunks(1000)
        .map(|chunk| {
            let mut t = CiphertextTally::empty("election-results", manifest);
            t.append_all(chunk).map(|_| t)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut total = CiphertextTally::empty("election-results", manifest);
    for chunk in &chunks {
        total.merge(chunk)?;
    }
    Ok(total)
}

/// Decrypts with the available guardians, rebuilding each missing guardian's share from
/// the others' compensated shares. Shares are ordered: available guardians, then missing.
pub fn decrypt(
    ceremony: &Ceremony,
    available: &[usize],
    missing: &[usize],
    object_id: &str,
    contests: &[ContestCiphertexts],
    manifest: &Manifest,
    qbar: &ElementModQ,
) -> Result<PlaintextTally> {
    let mut shares: Vec<DecryptionShare> = available
        .par_iter()
        .map(|&a| compute_decryption_share(object_id, &ceremony.guardians[a], contests, qbar))
        .collect();
    let available_keys: Vec<ElectionPublicKey> = available
        .iter()
        .map(|&a| ceremony.public_keys[a].clone())
        .collect();
    let coefficients = lagrange_coefficients(&available_keys);
    for &m in missing {
        let parts: Vec<_> = available
            .par_iter()
            .map(|&a| {
                let coordinate = &ceremony.received[a][m];
                compute_compensated_share(
                    object_id,
                    coordinate,
                    &ceremony.public_keys[a],
                    &ceremony.public_keys[m],
                    contests,
                    qbar,
                )
            })
            .collect();
        shares.push(reconstruct_share(
            &ceremony.public_keys[m],
            contests,
            &parts,
            &coefficients,
        )?);
    }
    Ok(combine_shares(object_id, contests, &shares, manifest)?)
}

/// The election's published record and the ground truth it must decrypt to.
pub struct CompletedElection {
    pub record: ElectionRecord,
    /// Per contest and selection, the number of cast votes.
    pub expected: Vec<Vec<u64>>,
}

/// Decrypts the tally and every spoiled ballot and assembles the record.
#[allow(clippy::too_many_arguments)]
pub fn finish(
    manifest: Manifest,
    context: CiphertextElectionContext,
    device: EncryptionDevice,
    ceremony: &Ceremony,
    missing_count: u32,
    ballots: Vec<CiphertextBallot>,
    encrypted_tally: CiphertextTally,
    expected: Vec<Vec<u64>>,
) -> Result<CompletedElection> {
    let n = ceremony.guardians.len();
    let available: Vec<usize> = (0..n - missing_count as usize).collect();
    let missing: Vec<usize> = (n - missing_count as usize..n).collect();
    let qbar = &context.crypto_extended_base_hash;
    let tally = decrypt(
        ceremony,
        &available,
        &missing,
        "election-results",
        &tally_ciphertexts(&encrypted_tally),
        &manifest,
        qbar,
    )?;
    // Ballot by ballot on every core: within one, only the available guardians' shares
    // run in parallel, too few to keep every core busy.
    let spoiled_ballots = ballots
        .par_iter()
        .filter(|b| b.is_spoiled())
        .map(|b| {
            decrypt(
                ceremony,
                &available,
                &missing,
                &b.object_id,
                &ballot_ciphertexts(b),
                &manifest,
                qbar,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    let available_keys: Vec<ElectionPublicKey> = available
        .iter()
        .map(|&a| ceremony.public_keys[a].clone())
        .collect();
    let ballot_box = declare_ballot_box(&device, &ballots);
    let record = ElectionRecord {
        constants: ElectionConstants::standard(),
        manifest,
        context,
        devices: vec![device],
        guardians: ceremony
            .public_keys
            .iter()
            .map(GuardianRecord::from)
            .collect(),
        submitted_ballots: ballots,
        encrypted_tally: Some(encrypted_tally),
        coefficients: Some(LagrangeCoefficientsRecord {
            coefficients: lagrange_coefficients(&available_keys),
        }),
        tally: Some(tally),
        spoiled_ballots,
        ballot_box: Some(ballot_box),
    };
    Ok(CompletedElection { record, expected })
}

/// What a ballot box of one device's chain declares: its counts and the chain's end.
pub fn declare_ballot_box(device: &EncryptionDevice, ballots: &[CiphertextBallot]) -> BallotBox {
    let spoiled = ballots.iter().filter(|b| b.is_spoiled()).count() as u64;
    BallotBox {
        cast: ballots.len() as u64 - spoiled,
        spoiled,
        devices: vec![DeviceChain {
            device_id: device.device_id,
            ballots: ballots.len() as u64,
            last_code: ballots.last().map(|b| b.code.clone()),
        }],
    }
}

/// Cast or spoil each ballot at random, counting the cast votes.
pub fn cast_or_spoil(
    ballots: &mut [CiphertextBallot],
    plaintexts: &[PlaintextBallot],
    spoil_rate: f64,
    rng: &mut ChoiceRng,
) -> Vec<Vec<u64>> {
    let mut expected: Vec<Vec<u64>> = plaintexts
        .first()
        .map(|p| {
            p.contests
                .iter()
                .map(|c| vec![0; c.ballot_selections.len()])
                .collect()
        })
        .unwrap_or_default();
    for (ballot, plaintext) in ballots.iter_mut().zip(plaintexts) {
        let state = if rng.chance(spoil_rate) {
            BallotBoxState::Spoiled
        } else {
            BallotBoxState::Cast
        };
        *ballot = ballot.submit(state);
        if state == BallotBoxState::Cast {
            for (c, contest) in plaintext.contests.iter().enumerate() {
                for (s, selection) in contest.ballot_selections.iter().enumerate() {
                    expected[c][s] += selection.vote;
                }
            }
        }
    }
    expected
}
