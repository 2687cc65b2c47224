//! The decryptions of a record: the tally's and each spoiled ballot's shares, compensated
//! shares and counts, and the Lagrange coefficients.

use std::collections::{HashMap, HashSet};

use indexmap::IndexMap;
use rayon::prelude::*;

use super::outcome::{ensure, Outcome};
use crate::ballot::CiphertextBallot;
use crate::batch::{decryptions_hold, DecryptionClaim, ProvedShare, ShareEvidence};
use crate::decrypt::{
    lagrange_coefficients, recovery_public_key, LagrangeCoefficientsRecord, PlaintextTally,
    PlaintextTallySelection,
};
use crate::elgamal::ElGamalCiphertext;
use crate::group::{g_pow_p, ElementModP, ElementModQ};
use crate::key_ceremony::ElectionPublicKey;
use crate::record::ElectionRecord;

/// Checks each decrypted selection of a tally or spoiled ballot against its ciphertexts:
/// in batches ([`DECRYPTION_BATCH`] selections, every core), a batch that fails checked
/// again one selection at a time to name what fails.
pub(super) fn check_plaintext(
    record: &ElectionRecord,
    plaintext: &PlaintextTally,
    ciphertexts: &HashMap<(String, String), ElGamalCiphertext>,
    guardians: &Guardians,
) -> Vec<Outcome> {
    let selections: Vec<(&String, &PlaintextTallySelection)> = plaintext
        .contests
        .values()
        .flat_map(|c| c.selections.values().map(move |s| (&c.object_id, s)))
        .collect();
    let mut results: Vec<Outcome> = selections
        .par_chunks(DECRYPTION_BATCH)
        .flat_map_iter(|batch| {
            let found: Vec<_> = batch
                .iter()
                .map(|(contest, s)| ciphertexts.get(&((*contest).clone(), s.object_id.clone())))
                .collect();
            let qbar = &record.context.crypto_extended_base_hash;
            if found.iter().all(Option::is_some) && batch_holds(batch, &found, guardians, qbar) {
                return vec![Ok(()); batch.len()];
            }
            batch
                .iter()
                .zip(found)
                .map(|((_, selection), ciphertext)| {
                    let at = |what: String| {
                        format!(
                            "{} selection {}: {what}",
                            plaintext.object_id, selection.object_id
                        )
                    };
                    let ciphertext =
                        ciphertext.ok_or_else(|| at("no such encrypted selection".into()))?;
                    check_decrypted_selection(record, selection, ciphertext, &guardians.keys)
                        .map_err(at)
                })
                .collect()
        })
        .collect();
    results.push(check_coverage(record, plaintext, ciphertexts));
    results
}

/// Every selection of the manifest is decrypted once, each under its own id: a selection
/// listed twice (under another's key) cannot stand in for one left out.
fn check_coverage(
    record: &ElectionRecord,
    plaintext: &PlaintextTally,
    ciphertexts: &HashMap<(String, String), ElGamalCiphertext>,
) -> Outcome {
    let at = &plaintext.object_id;
    let mut decrypted: HashSet<(&str, &str)> = HashSet::new();
    for (key, contest) in &plaintext.contests {
        ensure(*key == contest.object_id, || {
            format!("{at}: contest {} is listed as {key}", contest.object_id)
        })?;
        for (key, selection) in &contest.selections {
            ensure(*key == selection.object_id, || {
                format!("{at}: selection {} is listed as {key}", selection.object_id)
            })?;
            ensure(
                decrypted.insert((&contest.object_id, &selection.object_id)),
                || format!("{at}: selection {} is decrypted twice", selection.object_id),
            )?;
        }
    }
    let expected: HashSet<(&str, &str)> = ciphertexts
        .keys()
        .filter(|(c, s)| is_manifest_selection(record, c, s))
        .map(|(c, s)| (c.as_str(), s.as_str()))
        .collect();
    ensure(decrypted == expected, || {
        format!(
            "{at}: {} selections decrypted, not the {} of the manifest",
            decrypted.len(),
            expected.len()
        )
    })
}

/// Selections per batch of decryption proofs: enough to share the squarings, few enough
/// that a failing batch is cheap to check again one by one.
const DECRYPTION_BATCH: usize = 16;

/// The guardians by id, and each recovery key g^P_missing(ℓ) computed once.
pub(super) struct Guardians {
    pub keys: IndexMap<String, ElectionPublicKey>,
    recovery: RecoveryKeys,
}

pub(super) type RecoveryKeys = HashMap<(String, String), ElementModP>;

impl Guardians {
    pub fn new(keys: IndexMap<String, ElectionPublicKey>) -> Guardians {
        let recovery = keys
            .values()
            .flat_map(|available| {
                keys.values()
                    .filter(|missing| missing.owner_id != available.owner_id)
                    .map(move |missing| {
                        let pair = (available.owner_id.clone(), missing.owner_id.clone());
                        (pair, recovery_public_key(available, missing))
                    })
            })
            .collect();
        Guardians { keys, recovery }
    }
}

/// Whether a batch of selections, each with its ciphertext, holds as a whole; `false` also
/// when one is malformed (the one-by-one check says how).
fn batch_holds(
    batch: &[(&String, &PlaintextTallySelection)],
    ciphertexts: &[Option<&ElGamalCiphertext>],
    guardians: &Guardians,
    qbar: &ElementModQ,
) -> bool {
    // Lagrange coefficients per share rebuilt from parts, owned here for the claims' sake.
    let coefficients: Vec<Vec<Option<IndexMap<String, ElementModQ>>>> = batch
        .iter()
        .map(|(_, selection)| {
            selection
                .shares
                .iter()
                .map(|share| {
                    let parts = share.recovered_parts.as_ref()?;
                    coefficients_for(parts.keys(), &guardians.keys).ok()
                })
                .collect()
        })
        .collect();
    let claims: Option<Vec<DecryptionClaim>> = batch
        .iter()
        .zip(ciphertexts)
        .zip(&coefficients)
        .map(|(((_, selection), ciphertext), coefficients)| {
            decryption_claim(selection, (*ciphertext)?, guardians, coefficients)
        })
        .collect();
    claims.is_some_and(|claims| decryptions_hold(&claims, qbar))
}

/// A selection's decryption as a batch claim, if it is well formed: its message is the
/// ciphertext, one share per guardian, its value is g^count, every recovery key is the
/// missing guardian's at that index.
fn decryption_claim<'a>(
    selection: &'a PlaintextTallySelection,
    ciphertext: &'a ElGamalCiphertext,
    guardians: &'a Guardians,
    coefficients: &'a [Option<IndexMap<String, ElementModQ>>],
) -> Option<DecryptionClaim<'a>> {
    let ids: HashSet<&String> = selection.shares.iter().map(|s| &s.guardian_id).collect();
    let well_formed = selection.message == *ciphertext
        && ids.len() == guardians.keys.len()
        && guardians.keys.keys().all(|g| ids.contains(g))
        && ElementModQ::from_u64(selection.tally).is_ok_and(|t| g_pow_p(&t) == selection.value);
    if !well_formed {
        return None;
    }
    let shares = selection
        .shares
        .iter()
        .zip(coefficients)
        .map(
            |(share, coefficients)| match (&share.proof, &share.recovered_parts, coefficients) {
                (Some(proof), None, _) => Some(ShareEvidence::Proved(ProvedShare {
                    key: &guardians.keys.get(&share.guardian_id)?.key,
                    share: &share.share,
                    proof,
                })),
                (None, Some(parts), Some(coefficients)) => {
                    let parts = parts
                        .iter()
                        .map(|(available, part)| {
                            let pair = (available.clone(), share.guardian_id.clone());
                            let key = guardians.recovery.get(&pair)?;
                            (*key == part.recovery_key).then_some((
                                ProvedShare {
                                    key,
                                    share: &part.share,
                                    proof: &part.proof,
                                },
                                coefficients.get(available)?,
                            ))
                        })
                        .collect::<Option<Vec<_>>>()?;
                    Some(ShareEvidence::Rebuilt {
                        share: &share.share,
                        parts,
                    })
                }
                _ => None,
            },
        )
        .collect::<Option<Vec<_>>>()?;
    Some(DecryptionClaim {
        ciphertext,
        shares,
        count: Some(selection.tally),
    })
}

fn is_manifest_selection(record: &ElectionRecord, contest: &str, selection: &str) -> bool {
    record
        .manifest
        .contest(contest)
        .is_some_and(|c| c.ballot_selections.iter().any(|s| s.object_id == selection))
}

fn check_decrypted_selection(
    record: &ElectionRecord,
    selection: &PlaintextTallySelection,
    ciphertext: &ElGamalCiphertext,
    guardians: &IndexMap<String, ElectionPublicKey>,
) -> Result<(), String> {
    let qbar = &record.context.crypto_extended_base_hash;
    ensure(&selection.message == ciphertext, || {
        "message is not the encrypted ciphertext".into()
    })?;
    let ids: HashSet<&String> = selection.shares.iter().map(|s| &s.guardian_id).collect();
    ensure(
        ids.len() == guardians.len() && guardians.keys().all(|g| ids.contains(g)),
        || "not one share per guardian".into(),
    )?;
    let mut product = ElementModP::one();
    for share in &selection.shares {
        let guardian = &guardians[&share.guardian_id];
        match (&share.proof, &share.recovered_parts) {
            (Some(proof), None) => proof
                .verify(ciphertext, &guardian.key, &share.share, qbar)
                .map_err(|e| format!("share of {}: {e}", share.guardian_id))?,
            (None, Some(parts)) => {
                let coefficients = coefficients_for(parts.keys(), guardians)?;
                let mut rebuilt = ElementModP::one();
                for (available_id, part) in parts {
                    let available = guardians
                        .get(available_id)
                        .ok_or_else(|| format!("unknown guardian {available_id}"))?;
                    let at = |what: &str| {
                        format!(
                            "compensated share of {available_id} for {}: {what}",
                            share.guardian_id
                        )
                    };
                    ensure(
                        part.recovery_key == recovery_public_key(available, guardian),
                        || at("recovery key is not from the commitments"),
                    )?;
                    part.proof
                        .verify(ciphertext, &part.recovery_key, &part.share, qbar)
                        .map_err(|e| at(&e.to_string()))?;
                    rebuilt = rebuilt.mul(&part.share.pow(&coefficients[available_id]));
                }
                ensure(rebuilt == share.share, || {
                    format!(
                        "share of {} is not Π M_ℓ^w_ℓ of its parts",
                        share.guardian_id
                    )
                })?;
            }
            _ => {
                return Err(format!(
                    "share of {} has neither exactly a proof nor recovered parts",
                    share.guardian_id
                ))
            }
        }
        product = product.mul(&share.share);
    }
    let value = ciphertext
        .data
        .mul(&product.inv().ok_or("shares multiply to zero")?);
    ensure(value == selection.value, || "value is not β / Π M_i".into())?;
    ensure(
        g_pow_p(&ElementModQ::from_u64(selection.tally).map_err(|e| e.to_string())?) == value,
        || format!("g^{} is not the decrypted value", selection.tally),
    )
}

fn coefficients_for<'a>(
    available: impl Iterator<Item = &'a String>,
    guardians: &IndexMap<String, ElectionPublicKey>,
) -> Result<IndexMap<String, ElementModQ>, String> {
    let keys: Vec<ElectionPublicKey> = available
        .map(|id| {
            guardians
                .get(id)
                .cloned()
                .ok_or_else(|| format!("unknown guardian {id}"))
        })
        .collect::<Result<_, _>>()?;
    Ok(lagrange_coefficients(&keys))
}

pub(super) fn check_coefficients(
    record: &ElectionRecord,
    published: &LagrangeCoefficientsRecord,
    guardians: &IndexMap<String, ElectionPublicKey>,
) -> Vec<Outcome> {
    let computed = match coefficients_for(published.coefficients.keys(), guardians) {
        Ok(c) => c,
        Err(e) => return vec![Err(format!("coefficients.json: {e}"))],
    };
    let mut results: Vec<Outcome> = published
        .coefficients
        .iter()
        .map(|(id, w)| {
            ensure(computed.get(id) == Some(w), || {
                format!("coefficients.json: coefficient of {id} is wrong")
            })
        })
        .collect();
    results.push(ensure(
        published.coefficients.len() >= record.context.quorum as usize,
        || "coefficients.json: fewer available guardians than the quorum".into(),
    ));
    results
}

/// A challenged ballot's published decryption against the ballot's ciphertexts.
pub(super) fn check_spoiled(
    record: &ElectionRecord,
    ballot: &CiphertextBallot,
    plaintext: &PlaintextTally,
    guardians: &Guardians,
) -> Vec<Outcome> {
    let ciphertexts = ballot
        .contests
        .iter()
        .flat_map(|c| {
            c.ballot_selections.iter().map(move |s| {
                (
                    (c.object_id.clone(), s.object_id.clone()),
                    s.ciphertext.clone(),
                )
            })
        })
        .collect();
    check_plaintext(record, plaintext, &ciphertexts, guardians)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::from_json;
    use crate::key_ceremony::GuardianRecord;
    use crate::tally::CiphertextTally;

    fn fixture<T: serde::de::DeserializeOwned>(name: &str) -> T {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/fixtures/electionguard-python-1.4"
        );
        let text = std::fs::read_to_string(format!("{dir}/{name}")).unwrap_or_else(|e| {
            panic!("fixture {name}: {e} (the shared folder must sit beside the project)")
        });
        from_json(&text).unwrap()
    }

    fn guardians() -> Guardians {
        let keys = (1..=4)
            .map(|i| {
                let record: GuardianRecord =
                    fixture(&format!("guardians/guardian_guardian-{i}.json"));
                let key = ElectionPublicKey::from(&record);
                (key.owner_id.clone(), key)
            })
            .collect();
        Guardians::new(keys)
    }

    /// The reference record's tally decryption holds as one batch, and one changed
    /// response anywhere makes the batch fail.
    #[test]
    fn an_honest_tally_holds_as_a_batch_and_one_changed_response_fails_it() {
        let mut tally: PlaintextTally = fixture("tally.json");
        let encrypted: CiphertextTally = fixture("encrypted_tally.json");
        let context: crate::context::CiphertextElectionContext = fixture("context.json");
        let qbar = &context.crypto_extended_base_hash;
        let ciphertexts = super::super::tally_ciphertext_index(&encrypted);
        let guardians = guardians();
        let holds = |tally: &PlaintextTally| {
            let batch: Vec<(&String, &PlaintextTallySelection)> = tally
                .contests
                .values()
                .flat_map(|c| c.selections.values().map(move |s| (&c.object_id, s)))
                .collect();
            let found: Vec<_> = batch
                .iter()
                .map(|(c, s)| ciphertexts.get(&((*c).clone(), s.object_id.clone())))
                .collect();
            assert!(found.iter().all(Option::is_some));
            batch_holds(&batch, &found, &guardians, qbar)
        };
        assert!(holds(&tally), "an honest tally holds");
        let last = tally
            .contests
            .last_mut()
            .unwrap()
            .1
            .selections
            .last_mut()
            .unwrap()
            .1;
        let share = last.shares.iter_mut().find(|s| s.proof.is_some()).unwrap();
        let proof = share.proof.as_mut().unwrap();
        proof.response = proof.response.add(&ElementModQ::one());
        assert!(!holds(&tally), "one changed response fails the batch");
    }
}
