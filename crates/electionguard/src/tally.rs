//! The homomorphic tally: per selection, the product of the cast ballots' ciphertexts.
//!
//! Tallies of disjoint sets of ballots merge by the same product, so chunk tallies combine
//! into the election tally in any order and grouping (the product is associative and
//! commutative); only that one election tally is ever decrypted.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::ballot::CiphertextBallot;
use crate::elgamal::ElGamalCiphertext;
use crate::group::{ElementModQ, RunningProduct};
use crate::manifest::Manifest;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CiphertextTallySelection {
    pub object_id: String,
    pub sequence_order: u64,
    pub description_hash: ElementModQ,
    pub ciphertext: ElGamalCiphertext,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CiphertextTallyContest {
    pub object_id: String,
    pub sequence_order: u64,
    pub description_hash: ElementModQ,
    pub selections: IndexMap<String, CiphertextTallySelection>,
}

/// The published encrypted tally (`encrypted_tally.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CiphertextTally {
    pub object_id: String,
    pub contests: IndexMap<String, CiphertextTallyContest>,
}

/// A ballot that does not fit the tally's manifest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TallyError {
    #[error("ballot {ballot}: unknown contest {contest}")]
    UnknownContest { ballot: String, contest: String },
    #[error("ballot {0} is not cast")]
    NotCast(String),
    #[error("tallies are of different contests or selections")]
    Mismatch,
}

impl CiphertextTally {
    /// The tally of no ballots: every selection (placeholders excluded) at the identity.
    pub fn empty(object_id: &str, manifest: &Manifest) -> CiphertextTally {
        let contests = manifest
            .contests
            .iter()
            .map(|contest| {
                let selections = contest
                    .ballot_selections
                    .iter()
                    .map(|s| {
                        let selection = CiphertextTallySelection {
                            object_id: s.object_id.clone(),
                            sequence_order: s.sequence_order,
                            description_hash: s.crypto_hash(),
                            ciphertext: ElGamalCiphertext::identity(),
                        };
                        (s.object_id.clone(), selection)
                    })
                    .collect();
                let tally_contest = CiphertextTallyContest {
                    object_id: contest.object_id.clone(),
                    sequence_order: contest.sequence_order,
                    description_hash: contest.crypto_hash(),
                    selections,
                };
                (contest.object_id.clone(), tally_contest)
            })
            .collect();
        CiphertextTally {
            object_id: object_id.to_string(),
            contests,
        }
    }

    /// Adds one cast ballot (whose proofs the caller has checked).
    pub fn append(&mut self, ballot: &CiphertextBallot) -> Result<(), TallyError> {
        self.append_all(&[ballot])
    }

    /// Adds cast ballots (whose proofs the caller has checked), one Montgomery
    /// multiplication per ciphertext component. Nothing is added if any ballot is refused.
    pub fn append_all(&mut self, ballots: &[&CiphertextBallot]) -> Result<(), TallyError> {
        for ballot in ballots {
            self.check_ballot(ballot)?;
        }
        let mut products: Vec<Vec<(RunningProduct, RunningProduct)>> = self
            .contests
            .values()
            .map(|c| {
                c.selections
                    .values()
                    .map(|s| {
                        (
                            RunningProduct::new(&s.ciphertext.pad),
                            RunningProduct::new(&s.ciphertext.data),
                        )
                    })
                    .collect()
            })
            .collect();
        for contest in ballots.iter().flat_map(|b| &b.contests) {
            let (c, _, tally) = self
                .contests
                .get_full(&contest.object_id)
                .expect("checked above");
            for selection in &contest.ballot_selections {
                if let Some(s) = tally.selections.get_index_of(&selection.object_id) {
                    products[c][s].0.multiply(&selection.ciphertext.pad);
                    products[c][s].1.multiply(&selection.ciphertext.data);
                }
            }
        }
        for (contest, products) in self.contests.values_mut().zip(products) {
            for (selection, (pad, data)) in contest.selections.values_mut().zip(products) {
                selection.ciphertext = ElGamalCiphertext {
                    pad: pad.finish(),
                    data: data.finish(),
                };
            }
        }
        Ok(())
    }

    fn check_ballot(&self, ballot: &CiphertextBallot) -> Result<(), TallyError> {
        if !ballot.is_cast() {
            return Err(TallyError::NotCast(ballot.object_id.clone()));
        }
        match ballot
            .contests
            .iter()
            .find(|c| !self.contests.contains_key(&c.object_id))
        {
            Some(c) => Err(TallyError::UnknownContest {
                ballot: ballot.object_id.clone(),
                contest: c.object_id.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Merges the tally of another, disjoint set of ballots into this one.
    pub fn merge(&mut self, other: &CiphertextTally) -> Result<(), TallyError> {
        if self.contests.len() != other.contests.len() {
            return Err(TallyError::Mismatch);
        }
        for (id, contest) in &mut self.contests {
            let theirs = other.contests.get(id).ok_or(TallyError::Mismatch)?;
            if theirs.selections.len() != contest.selections.len() {
                return Err(TallyError::Mismatch);
            }
            for (sid, selection) in &mut contest.selections {
                let t = theirs.selections.get(sid).ok_or(TallyError::Mismatch)?;
                selection.ciphertext = selection.ciphertext.add(&t.ciphertext);
            }
        }
        Ok(())
    }
}
