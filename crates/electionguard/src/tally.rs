//! The homomorphic tally: per selection, the product of the cast ballots' ciphertexts.
//!
//! Tallies of disjoint sets of ballots merge by the same product, so chunk tallies combine
//! into the election tally in any order and grouping (the product is associative and
//! commutative); only that one election tally is ever decrypted.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::ballot::CiphertextBallot;
use crate::elgamal::ElGamalCiphertext;
use crate::group::{ElementModP, ElementModQ, RunningProduct};
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
    #[error("tally input {0}: {1}")]
    BadInput(usize, &'static str),
}

/// Bytes of one group element in a tally input: p has 4096 bits.
const ELEMENT_BYTES: usize = 512;

/// Where each selection of a manifest sits in a compact tally input: what the tally reads of
/// a cast ballot, and nothing else. An input is, per selection of the manifest (placeholders
/// excluded) in the tally's order, α and β as 512-byte big-endian numbers: 5 KB for a
/// 1 × 4 contest instead of a 22 KB stored ballot with its proofs. A contest the ballot
/// does not carry is the identity (1, 1), which leaves a product unchanged.
#[derive(Clone, Debug)]
pub struct TallyLayout {
    contests: IndexMap<String, IndexMap<String, usize>>,
    selections: usize,
}

impl TallyLayout {
    pub fn new(manifest: &Manifest) -> TallyLayout {
        let mut selections = 0;
        let contests = manifest
            .contests
            .iter()
            .map(|contest| {
                let places = contest
                    .ballot_selections
                    .iter()
                    .map(|s| {
                        selections += 1;
                        (s.object_id.clone(), selections - 1)
                    })
                    .collect();
                (contest.object_id.clone(), places)
            })
            .collect();
        TallyLayout {
            contests,
            selections,
        }
    }

    /// The length of every input of this layout.
    pub fn input_len(&self) -> usize {
        self.selections * 2 * ELEMENT_BYTES
    }

    /// A ballot's tally input; refused if it names a contest the manifest lacks.
    pub fn input_of(&self, ballot: &CiphertextBallot) -> Result<Vec<u8>, TallyError> {
        let mut input = vec![0u8; self.input_len()];
        let mut present = vec![false; self.selections];
        for contest in &ballot.contests {
            let places = self.contests.get(&contest.object_id).ok_or_else(|| {
                TallyError::UnknownContest {
                    ballot: ballot.object_id.clone(),
                    contest: contest.object_id.clone(),
                }
            })?;
            for selection in &contest.ballot_selections {
                if let Some(&at) = places.get(&selection.object_id) {
                    let slot = &mut input[at * 2 * ELEMENT_BYTES..(at + 1) * 2 * ELEMENT_BYTES];
                    let (pad, data) = slot.split_at_mut(ELEMENT_BYTES);
                    write_element(pad, &selection.ciphertext.pad);
                    write_element(data, &selection.ciphertext.data);
                    present[at] = true;
                }
            }
        }
        for (at, _) in present.iter().enumerate().filter(|(_, p)| !**p) {
            let slot = &mut input[at * 2 * ELEMENT_BYTES..(at + 1) * 2 * ELEMENT_BYTES];
            slot[ELEMENT_BYTES - 1] = 1;
            slot[2 * ELEMENT_BYTES - 1] = 1;
        }
        Ok(input)
    }
}

impl TallyLayout {
    /// The product of tally inputs, itself an input: of all their ballots together. How a
    /// running product kept at cast time takes in one more ballot.
    pub fn product(&self, inputs: &[&[u8]]) -> Result<Vec<u8>, TallyError> {
        let one = ElementModP::one();
        let start = vec![&one; self.selections * 2];
        let mut product = vec![0u8; self.input_len()];
        let elements = multiply_inputs(&start, inputs)?;
        for (slot, element) in product.chunks_exact_mut(ELEMENT_BYTES).zip(&elements) {
            write_element(slot, element);
        }
        Ok(product)
    }
}

/// Per element of the layout, its start value times that element of every input.
fn multiply_inputs(
    start: &[&ElementModP],
    inputs: &[&[u8]],
) -> Result<Vec<ElementModP>, TallyError> {
    let mut products: Vec<RunningProduct> = start.iter().map(|e| RunningProduct::new(e)).collect();
    for (i, input) in inputs.iter().enumerate() {
        if input.len() != start.len() * ELEMENT_BYTES {
            return Err(TallyError::BadInput(i, "its length is not this tally's"));
        }
        for (product, bytes) in products.iter_mut().zip(input.chunks_exact(ELEMENT_BYTES)) {
            // Zero or a number not below p cannot come from a ciphertext: a corrupt input.
            let element = ElementModP::from_bytes_be(bytes)
                .ok()
                .filter(|e| !e.is_zero())
                .ok_or(TallyError::BadInput(i, "a number is not in the group"))?;
            product.multiply(&element);
        }
    }
    Ok(products.into_iter().map(RunningProduct::finish).collect())
}

/// Big-endian, left-padded with zeros to the slot's width.
fn write_element(slot: &mut [u8], element: &ElementModP) {
    let bytes = element.to_bytes_be();
    slot[ELEMENT_BYTES - bytes.len()..].copy_from_slice(&bytes);
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

    /// Adds cast ballots by their tally inputs (of [`TallyLayout::new`] for this tally's
    /// manifest). Nothing is added if any input is malformed (a wrong length, or a number
    /// that is zero or not below p); the index in the error is the input's place in `inputs`.
    pub fn append_inputs(&mut self, inputs: &[&[u8]]) -> Result<(), TallyError> {
        let start: Vec<&ElementModP> = self
            .contests
            .values()
            .flat_map(|c| c.selections.values())
            .flat_map(|s| [&s.ciphertext.pad, &s.ciphertext.data])
            .collect();
        let mut products = multiply_inputs(&start, inputs)?.into_iter();
        let all = self
            .contests
            .values_mut()
            .flat_map(|c| c.selections.values_mut());
        for (selection, (pad, data)) in
            all.zip(std::iter::from_fn(|| products.next().zip(products.next())))
        {
            selection.ciphertext = ElGamalCiphertext { pad, data };
        }
        Ok(())
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
