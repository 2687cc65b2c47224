//! What the verifier keeps of each ballot once its proofs are checked, so that a record of
//! any size is verified in batches: its id, code and code seed, its state, and a digest of
//! each contest's ciphertexts (about 150 bytes a ballot). The checks across ballots (one
//! continuation per chain link, every ballot on a declared chain, no copied contest) run
//! on these once every ballot has been seen.

use std::collections::{HashMap, HashSet};

use super::outcome::{ensure, BallotBoxPolicy, Outcome};
use crate::ballot::{CiphertextBallot, EncryptionDevice};
use crate::group::ElementModQ;
use crate::record::{BallotBox, DeviceChain};

/// A code or code seed, as fixed-width big-endian bytes.
type Link = [u8; 32];

fn link(value: &ElementModQ) -> Link {
    let bytes = value.to_bytes_be();
    let mut link = [0u8; 32];
    link[32 - bytes.len()..].copy_from_slice(&bytes);
    link
}

/// One ballot, as the cross-ballot checks see it.
struct Trace {
    id: Box<str>,
    code: Link,
    seed: Link,
    cast: bool,
    spoiled: bool,
}

/// Every ballot seen so far, in arrival order, and each contest's fingerprint.
#[derive(Default)]
pub(super) struct Traces {
    ballots: Vec<Trace>,
    /// Fingerprint, ballot (its place in `ballots`), contest (its place in `contests`).
    prints: Vec<([u8; 32], u32, u32)>,
    contests: Vec<String>,
    contest_at: HashMap<String, u32>,
}

impl Traces {
    pub fn reserve(&mut self, ballots: usize) {
        self.ballots.reserve_exact(ballots);
    }

    pub fn add(&mut self, ballot: &CiphertextBallot, prints: Vec<[u8; 32]>) {
        let at = self.ballots.len() as u32;
        self.ballots.push(Trace {
            id: ballot.object_id.as_str().into(),
            code: link(&ballot.code),
            seed: link(&ballot.code_seed),
            cast: ballot.is_cast(),
            spoiled: ballot.is_spoiled(),
        });
        for (contest, print) in ballot.contests.iter().zip(prints) {
            let index = match self.contest_at.get(&contest.object_id) {
                Some(&i) => i,
                None => {
                    let i = self.contests.len() as u32;
                    self.contests.push(contest.object_id.clone());
                    self.contest_at.insert(contest.object_id.clone(), i);
                    i
                }
            };
            self.prints.push((print, at, index));
        }
    }

    /// No two ballots continue the same link of a chain.
    pub fn code_chain(&self) -> Vec<Outcome> {
        let mut by_seed: Vec<(Link, u32)> = (0..self.ballots.len() as u32)
            .map(|i| (self.ballots[i as usize].seed, i))
            .collect();
        by_seed.sort_unstable();
        let mut results = vec![Ok(()); self.ballots.len()];
        for pair in by_seed.windows(2) {
            if pair[0].0 == pair[1].0 {
                let (this, other) = (
                    &self.ballots[pair[1].1 as usize],
                    &self.ballots[pair[0].1 as usize],
                );
                results[pair[1].1 as usize] = Err(format!(
                    "ballot {}: shares its code seed with ballot {}",
                    this.id, other.id
                ));
            }
        }
        results
    }

    /// No contest's ciphertexts appear twice: a second copy is a copied ballot or contest,
    /// whatever object ids it carries.
    pub fn copies(&mut self) -> Vec<Outcome> {
        self.prints.sort_unstable();
        let mut results = vec![Ok(()); self.prints.len()];
        for (i, pair) in self.prints.windows(2).enumerate() {
            if pair[0].0 == pair[1].0 {
                let name = |(_, ballot, contest): &([u8; 32], u32, u32)| {
                    (
                        &self.ballots[*ballot as usize].id,
                        &self.contests[*contest as usize],
                    )
                };
                let ((ballot, contest), (other, other_contest)) = (name(&pair[1]), name(&pair[0]));
                results[i + 1] = Err(format!(
                    "ballot {ballot} contest {contest}: carries the same ciphertexts as ballot {other} contest {other_contest}"
                ));
            }
        }
        results
    }

    /// The record holds every ballot the ballot box accepted: the counts it declares, its
    /// devices, and each device's chain walked back from its last code to the device hash.
    /// Without a declaration completeness cannot be proven: a failure under
    /// [`BallotBoxPolicy::Required`], notes under [`BallotBoxPolicy::Optional`].
    pub fn completeness(
        &self,
        devices: &[EncryptionDevice],
        declared: Option<&BallotBox>,
        policy: BallotBoxPolicy,
    ) -> (Vec<Outcome>, Vec<String>) {
        let device_hashes: HashSet<Link> = devices.iter().map(|d| link(&d.hash())).collect();
        let by_code = self.first_by_code();
        let gaps = self.chain_gaps(&device_hashes, &by_code);
        let Some(declared) = declared else {
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
                    .map(|&b| format!("not proven: {}", self.gap_message(b))),
            );
            return (results, notes);
        };
        let mut results = self.declared_counts(declared);
        results.extend(declared_devices(devices, declared));
        let published: HashMap<u64, &EncryptionDevice> =
            devices.iter().map(|d| (d.device_id, d)).collect();
        let mut on_chain: Vec<Option<u64>> = vec![None; self.ballots.len()];
        for chain in &declared.devices {
            let Some(device) = published.get(&chain.device_id) else {
                results.push(Err(format!(
                    "device {}: declared in ballot_box.json but not published",
                    chain.device_id
                )));
                continue;
            };
            results.push(self.walk_chain(chain, &link(&device.hash()), &by_code, &mut on_chain));
        }
        for (ballot, device) in self.ballots.iter().zip(&on_chain) {
            results.push(ensure(device.is_some(), || {
                format!("ballot {}: lies on no declared device's chain", ballot.id)
            }));
        }
        results.extend(gaps.iter().map(|&b| Err(self.gap_message(b))));
        (results, Vec::new())
    }

    fn declared_counts(&self, declared: &BallotBox) -> Vec<Outcome> {
        let cast = self.ballots.iter().filter(|b| b.cast).count() as u64;
        let spoiled = self.ballots.iter().filter(|b| b.spoiled).count() as u64;
        [
            ("cast", declared.cast, cast),
            ("spoiled", declared.spoiled, spoiled),
        ]
        .into_iter()
        .map(|(name, declared, held)| {
            ensure(declared == held, || {
                format!(
                    "ballot_box.json: record declares {declared} {name} ballots but holds {held}"
                )
            })
        })
        .collect()
    }

    /// Each code's first ballot, sorted by code for lookups.
    fn first_by_code(&self) -> Vec<(Link, u32)> {
        let mut by_code: Vec<(Link, u32)> = (0..self.ballots.len() as u32)
            .map(|i| (self.ballots[i as usize].code, i))
            .collect();
        by_code.sort_unstable();
        by_code.dedup_by_key(|(code, _)| *code);
        by_code
    }

    fn ballot_with_code(by_code: &[(Link, u32)], code: &Link) -> Option<usize> {
        let at = by_code.binary_search_by(|(c, _)| c.cmp(code)).ok()?;
        Some(by_code[at].1 as usize)
    }

    /// Ballots whose code seed is neither a published device hash nor another ballot's
    /// code: the ballot before them in their chain is not in the record.
    fn chain_gaps(&self, devices: &HashSet<Link>, by_code: &[(Link, u32)]) -> Vec<usize> {
        (0..self.ballots.len())
            .filter(|&at| {
                let seed = &self.ballots[at].seed;
                let follows_a_ballot =
                    Self::ballot_with_code(by_code, seed).is_some_and(|other| other != at);
                !devices.contains(seed) && !follows_a_ballot
            })
            .collect()
    }

    fn gap_message(&self, at: usize) -> String {
        let ballot = &self.ballots[at];
        format!(
            "ballot {}: chain gap (its code seed {} is no device hash and no other ballot's code)",
            ballot.id,
            ElementModQ::from_bytes_be(&ballot.seed)
                .map(|s| s.to_hex())
                .unwrap_or_default()
        )
    }

    /// Walks a declared chain back from its last code to the device hash, marking each
    /// ballot it passes; fails at the first missing code, at a ballot already passed, or
    /// on a length other than the declared one.
    fn walk_chain(
        &self,
        chain: &DeviceChain,
        device_hash: &Link,
        by_code: &[(Link, u32)],
        on_chain: &mut [Option<u64>],
    ) -> Outcome {
        let device = chain.device_id;
        let mut length: u64 = 0;
        let mut next = chain.last_code.as_ref().map(link);
        while let Some(code) = next {
            let at = Self::ballot_with_code(by_code, &code).ok_or_else(|| {
                let hex = ElementModQ::from_bytes_be(&code)
                    .map(|c| c.to_hex())
                    .unwrap_or_default();
                format!(
                    "device {device}: chain breaks at code {hex}: no ballot in the record has it"
                )
            })?;
            let ballot = &self.ballots[at];
            if let Some(other) = on_chain[at].replace(device) {
                return Err(format!(
                    "device {device}: chain passes ballot {} again (already on device {other}'s chain)",
                    ballot.id
                ));
            }
            length += 1;
            next = (&ballot.seed != device_hash).then_some(ballot.seed);
        }
        ensure(length == chain.ballots, || {
            format!(
                "device {device}: chain holds {length} ballots, ballot_box.json declares {}",
                chain.ballots
            )
        })
    }
}

/// Every published device is declared once, and only once.
fn declared_devices(devices: &[EncryptionDevice], declared: &BallotBox) -> Vec<Outcome> {
    let mut results = Vec::new();
    let mut declared_ids: HashSet<u64> = HashSet::new();
    for chain in &declared.devices {
        results.push(ensure(declared_ids.insert(chain.device_id), || {
            format!(
                "ballot_box.json: device {} is declared twice",
                chain.device_id
            )
        }));
    }
    for device in devices {
        results.push(ensure(declared_ids.contains(&device.device_id), || {
            format!(
                "device {}: published but not declared in ballot_box.json",
                device.device_id
            )
        }));
    }
    results
}
