//! The Benaloh challenge, from the voter's side.
//!
//! A voter who doubts the encryption device challenges (spoils) a ballot instead of
//! casting it; the device then hands over that ballot's nonces. With them, and nothing
//! secret of the guardians, the voter's own software opens every selection
//! ([`open_challenged_ballot`]) and re-encrypts the opened choices to check that they are
//! exactly what the device encrypted ([`verify_challenge`]). A device that encrypts other
//! choices than the voter's is caught whenever it cannot tell which ballots will be challenged.
//!
//! The contests' extended data (write-ins, the record of an overvote) is not opened, so a
//! ballot that carries write-ins or an overvote does not re-encrypt to the same bytes.

use crate::ballot::{
    CiphertextBallot, CiphertextBallotContest, CiphertextBallotSelection, PlaintextBallot,
    PlaintextBallotContest, PlaintextBallotSelection,
};
use crate::context::CiphertextElectionContext;
use crate::encrypt::{EncryptError, Encryptor};
use crate::group::{g_pow_p, ElementModP};
use crate::manifest::{ContestDescription, Manifest};

/// Why a challenged ballot does not open, or does not prove what it encrypts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    #[error("ballot {ballot} carries no master nonce")]
    MissingMasterNonce { ballot: String },
    #[error("ballot {ballot}: contest {contest} is not in the manifest")]
    UnknownContest { ballot: String, contest: String },
    #[error("ballot {ballot}: selection {selection} {problem}")]
    Selection {
        ballot: String,
        selection: String,
        problem: SelectionProblem,
    },
    #[error("ballot {ballot}: the revealed choices cannot be encrypted: {source}")]
    Unencryptable {
        ballot: String,
        #[source]
        source: EncryptError,
    },
    #[error("ballot {ballot}: re-encrypting the revealed choices does not reproduce {location}")]
    NotReproduced { ballot: String, location: String },
}

/// What is wrong with one selection of a challenged ballot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SelectionProblem {
    #[error("carries no nonce")]
    MissingNonce,
    #[error("has a pad that is not g^nonce")]
    PadMismatch,
    #[error("decrypts to neither 0 nor 1")]
    NotZeroOrOne,
}

/// Opens every selection of a challenged ballot with its own nonce, under the joint key.
///
/// Placeholder selections are opened and checked too, but left out of the result: they
/// only pad each contest to its limit and are not the voter's choices.
pub fn open_challenged_ballot(
    ballot: &CiphertextBallot,
    manifest: &Manifest,
    context: &CiphertextElectionContext,
) -> Result<PlaintextBallot, ChallengeError> {
    let contests = ballot
        .contests
        .iter()
        .map(|contest| {
            open_contest(
                &ballot.object_id,
                contest,
                manifest,
                &context.elgamal_public_key,
            )
        })
        .collect::<Result<_, _>>()?;
    Ok(PlaintextBallot {
        object_id: ballot.object_id.clone(),
        style_id: ballot.style_id.clone(),
        contests,
    })
}

fn open_contest(
    ballot_id: &str,
    contest: &CiphertextBallotContest,
    manifest: &Manifest,
    joint_key: &ElementModP,
) -> Result<PlaintextBallotContest, ChallengeError> {
    let description =
        manifest
            .contest(&contest.object_id)
            .ok_or_else(|| ChallengeError::UnknownContest {
                ballot: ballot_id.to_string(),
                contest: contest.object_id.clone(),
            })?;
    let mut ballot_selections = Vec::with_capacity(description.ballot_selections.len());
    for selection in &contest.ballot_selections {
        let vote =
            open_selection(selection, joint_key).map_err(|problem| ChallengeError::Selection {
                ballot: ballot_id.to_string(),
                selection: selection.object_id.clone(),
                problem,
            })?;
        // The manifest, not the device's placeholder flag, says which selections are choices.
        if is_choice(description, &selection.object_id) {
            ballot_selections.push(PlaintextBallotSelection {
                object_id: selection.object_id.clone(),
                vote,
                is_placeholder_selection: false,
                write_in: None,
            });
        }
    }
    Ok(PlaintextBallotContest {
        object_id: contest.object_id.clone(),
        ballot_selections,
    })
}

fn is_choice(description: &ContestDescription, selection_id: &str) -> bool {
    description
        .ballot_selections
        .iter()
        .any(|s| s.object_id == selection_id)
}

/// The selection's vote, from (α, β) = (g^r, g^v · K^r) and r.
///
/// A vote can only be 0 or 1, so β is compared with K^r and g · K^r instead of searching
/// for a discrete log: that search takes seconds on a tampered ciphertext (all counts up
/// to 2^32), and a voter's device must not be made to stall by the machine it checks.
fn open_selection(
    selection: &CiphertextBallotSelection,
    joint_key: &ElementModP,
) -> Result<u64, SelectionProblem> {
    let nonce = selection
        .nonce
        .as_ref()
        .ok_or(SelectionProblem::MissingNonce)?;
    if selection.ciphertext.pad != g_pow_p(nonce) {
        return Err(SelectionProblem::PadMismatch);
    }
    let blinding = joint_key.pow_secret(nonce);
    let data = &selection.ciphertext.data;
    if *data == blinding {
        Ok(0)
    } else if *data == blinding.mul(&ElementModP::generator()) {
        Ok(1)
    } else {
        Err(SelectionProblem::NotZeroOrOne)
    }
}

/// Checks that `plaintext` is what the device encrypted: re-encrypting it with the
/// ballot's master nonce, code seed and timestamp must give the ballot exactly, every
/// ciphertext, proof, hash and the ballot code included.
pub fn verify_challenge(
    ballot: &CiphertextBallot,
    plaintext: &PlaintextBallot,
    manifest: &Manifest,
    context: &CiphertextElectionContext,
) -> Result<(), ChallengeError> {
    let master_nonce = ballot
        .nonce
        .as_ref()
        .ok_or_else(|| ChallengeError::MissingMasterNonce {
            ballot: ballot.object_id.clone(),
        })?;
    let mut reencrypted = Encryptor::new(manifest, context)
        .encrypt(plaintext, &ballot.code_seed, master_nonce, ballot.timestamp)
        .map_err(|source| ChallengeError::Unencryptable {
            ballot: ballot.object_id.clone(),
            source,
        })?;
    // The ballot-box state is not encrypted content: a challenged ballot may already be marked spoiled.
    reencrypted.state = ballot.state;
    match first_difference(&reencrypted, ballot) {
        None => Ok(()),
        Some(location) => Err(ChallengeError::NotReproduced {
            ballot: ballot.object_id.clone(),
            location,
        }),
    }
}

/// Where `actual` first departs from `expected`, named for the voter; `None` if they are equal.
fn first_difference(expected: &CiphertextBallot, actual: &CiphertextBallot) -> Option<String> {
    if expected == actual {
        return None;
    }
    for (ours, theirs) in expected.contests.iter().zip(&actual.contests) {
        let differing = ours
            .ballot_selections
            .iter()
            .zip(&theirs.ballot_selections)
            .find(|(a, b)| a != b);
        if let Some((selection, _)) = differing {
            return Some(format!("selection {}", selection.object_id));
        }
        if ours != theirs {
            return Some(format!("contest {}", ours.object_id));
        }
    }
    Some("the ballot's contests, hash or code".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elgamal::ElGamalKeyPair;
    use crate::group::ElementModQ;
    use crate::manifest::{
        BallotStyle, Candidate, GeopoliticalUnit, InternationalizedText, SelectionDescription,
    };

    /// One contest, choose one of three.
    fn manifest() -> Manifest {
        let candidates = ["a", "b", "c"];
        let selections = candidates
            .iter()
            .enumerate()
            .map(|(i, c)| SelectionDescription {
                object_id: format!("select-{c}"),
                sequence_order: i as u64,
                candidate_id: c.to_string(),
            })
            .collect();
        Manifest {
            election_scope_id: "challenge-test".into(),
            spec_version: "1.0".into(),
            election_type: "general".into(),
            start_date: "2026-01-01T08:00:00+00:00".into(),
            end_date: "2026-01-01T20:00:00+00:00".into(),
            geopolitical_units: vec![GeopoliticalUnit {
                object_id: "district".into(),
                name: "District".into(),
                unit_type: "county".into(),
                contact_information: None,
            }],
            parties: vec![],
            candidates: candidates
                .iter()
                .map(|c| Candidate {
                    object_id: c.to_string(),
                    name: InternationalizedText { text: vec![] },
                    party_id: None,
                    image_uri: None,
                    is_write_in: None,
                })
                .collect(),
            contests: vec![ContestDescription {
                object_id: "contest".into(),
                sequence_order: 0,
                electoral_district_id: "district".into(),
                vote_variation: "one_of_m".into(),
                number_elected: 1,
                votes_allowed: Some(1),
                name: "Contest".into(),
                ballot_selections: selections,
                ballot_title: None,
                ballot_subtitle: None,
                primary_party_ids: None,
            }],
            ballot_styles: vec![BallotStyle {
                object_id: "style".into(),
                geopolitical_unit_ids: Some(vec!["district".into()]),
                party_ids: None,
                image_uri: None,
            }],
            name: None,
            contact_information: None,
        }
    }

    fn context(manifest: &Manifest) -> CiphertextElectionContext {
        let keys = ElGamalKeyPair::from_secret(ElementModQ::random_at_least_two());
        CiphertextElectionContext::new(
            1,
            1,
            keys.public_key,
            ElementModQ::random(),
            manifest.crypto_hash(),
        )
    }

    /// The voter's choice of candidate `chosen`, every selection listed.
    fn choices(manifest: &Manifest, chosen: usize) -> PlaintextBallot {
        let ballot_selections = manifest.contests[0]
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
        PlaintextBallot {
            object_id: "ballot-1".into(),
            style_id: "style".into(),
            contests: vec![PlaintextBallotContest {
                object_id: "contest".into(),
                ballot_selections,
            }],
        }
    }

    fn encrypt(
        manifest: &Manifest,
        context: &CiphertextElectionContext,
        plaintext: &PlaintextBallot,
    ) -> CiphertextBallot {
        Encryptor::new(manifest, context)
            .encrypt(
                plaintext,
                &ElementModQ::random(),
                &ElementModQ::random(),
                1_700_000_000,
            )
            .unwrap()
    }

    fn selection_error(selection: &str, problem: SelectionProblem) -> ChallengeError {
        ChallengeError::Selection {
            ballot: "ballot-1".into(),
            selection: selection.into(),
            problem,
        }
    }

    #[test]
    fn a_challenged_ballot_opens_to_the_voters_choices_and_verifies() {
        let manifest = manifest();
        let context = context(&manifest);
        let voter = choices(&manifest, 1);
        let ballot = encrypt(&manifest, &context, &voter);
        let opened = open_challenged_ballot(&ballot, &manifest, &context).unwrap();
        assert_eq!(opened, voter);
        verify_challenge(&ballot, &opened, &manifest, &context).unwrap();
        // The ballot box's spoiled mark does not change what was encrypted.
        let mut spoiled = ballot.clone();
        spoiled.state = Some(crate::ballot::BallotBoxState::Spoiled);
        verify_challenge(&spoiled, &opened, &manifest, &context).unwrap();
    }

    #[test]
    fn an_altered_selection_ciphertext_is_named() {
        let manifest = manifest();
        let context = context(&manifest);
        let ballot = encrypt(&manifest, &context, &choices(&manifest, 0));
        let error = |ballot: &CiphertextBallot| {
            open_challenged_ballot(ballot, &manifest, &context).unwrap_err()
        };

        let mut pad_changed = ballot.clone();
        let selection = &mut pad_changed.contests[0].ballot_selections[2];
        selection.ciphertext.pad = selection.ciphertext.pad.mul(&ElementModP::generator());
        let expected = selection_error("select-c", SelectionProblem::PadMismatch);
        assert_eq!(error(&pad_changed), expected);

        // An arbitrary β is rejected at once, without a discrete-log search.
        let mut data_changed = ballot.clone();
        data_changed.contests[0].ballot_selections[0]
            .ciphertext
            .data = g_pow_p(&ElementModQ::random());
        let expected = selection_error("select-a", SelectionProblem::NotZeroOrOne);
        assert_eq!(error(&data_changed), expected);
    }

    #[test]
    fn a_selection_changed_to_another_valid_vote_opens_but_does_not_verify() {
        let manifest = manifest();
        let context = context(&manifest);
        let mut ballot = encrypt(&manifest, &context, &choices(&manifest, 0));
        // β / g turns the chosen selection's 1 into a 0; its proof still proves the 1.
        let selection = &mut ballot.contests[0].ballot_selections[0];
        selection.ciphertext.data = selection
            .ciphertext
            .data
            .mul(&ElementModP::generator().inv().unwrap());
        let opened = open_challenged_ballot(&ballot, &manifest, &context).unwrap();
        assert!(opened.contests[0]
            .ballot_selections
            .iter()
            .all(|s| s.vote == 0));
        let expected = ChallengeError::NotReproduced {
            ballot: "ballot-1".into(),
            location: "selection select-a".into(),
        };
        assert_eq!(
            verify_challenge(&ballot, &opened, &manifest, &context),
            Err(expected)
        );
    }

    #[test]
    fn claiming_other_choices_fails_verification() {
        let manifest = manifest();
        let context = context(&manifest);
        let ballot = encrypt(&manifest, &context, &choices(&manifest, 0));
        let claimed = choices(&manifest, 2);
        let expected = ChallengeError::NotReproduced {
            ballot: "ballot-1".into(),
            location: "selection select-a".into(),
        };
        assert_eq!(
            verify_challenge(&ballot, &claimed, &manifest, &context),
            Err(expected)
        );
    }

    #[test]
    fn a_ballot_without_its_nonces_cannot_be_opened() {
        let manifest = manifest();
        let context = context(&manifest);
        let submitted = encrypt(&manifest, &context, &choices(&manifest, 0))
            .submit(crate::ballot::BallotBoxState::Spoiled);
        let expected = selection_error("select-a", SelectionProblem::MissingNonce);
        assert_eq!(
            open_challenged_ballot(&submitted, &manifest, &context),
            Err(expected)
        );
        let expected = ChallengeError::MissingMasterNonce {
            ballot: "ballot-1".into(),
        };
        assert_eq!(
            verify_challenge(&submitted, &choices(&manifest, 0), &manifest, &context),
            Err(expected)
        );
    }
}
