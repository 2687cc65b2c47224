//! Decryption: each available guardian's shares with Chaum-Pedersen proofs, compensated
//! shares for missing guardians, Lagrange coefficients, and the combination into counts.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::ballot::CiphertextBallot;
use crate::batch::{decryptions_hold, DecryptionClaim, ProvedShare, ShareEvidence};
use crate::elgamal::{ElGamalCiphertext, SecretKey};
use crate::group::{ElementModP, ElementModQ};
use crate::key_ceremony::{commitment_image, ElectionKeyPair, ElectionPublicKey};
use crate::manifest::Manifest;
use crate::proof::ChaumPedersenProof;
use crate::tally::CiphertextTally;

/// The ciphertexts of one contest to decrypt: of a tally or of a spoiled ballot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContestCiphertexts {
    pub object_id: String,
    pub description_hash: ElementModQ,
    pub selections: Vec<(String, ElGamalCiphertext)>,
}

/// The contests of an encrypted tally, in order.
pub fn tally_ciphertexts(tally: &CiphertextTally) -> Vec<ContestCiphertexts> {
    tally
        .contests
        .values()
        .map(|c| ContestCiphertexts {
            object_id: c.object_id.clone(),
            description_hash: c.description_hash.clone(),
            selections: c
                .selections
                .values()
                .map(|s| (s.object_id.clone(), s.ciphertext.clone()))
                .collect(),
        })
        .collect()
}

/// The contests of a ballot, placeholders included (as the reference decrypts them).
pub fn ballot_ciphertexts(ballot: &CiphertextBallot) -> Vec<ContestCiphertexts> {
    ballot
        .contests
        .iter()
        .map(|c| ContestCiphertexts {
            object_id: c.object_id.clone(),
            description_hash: c.description_hash.clone(),
            selections: c
                .ballot_selections
                .iter()
                .map(|s| (s.object_id.clone(), s.ciphertext.clone()))
                .collect(),
        })
        .collect()
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CiphertextCompensatedDecryptionSelection {
    pub object_id: String,
    pub guardian_id: String,
    pub missing_guardian_id: String,
    pub share: ElementModP,
    pub recovery_key: ElementModP,
    pub proof: ChaumPedersenProof,
}

/// One guardian's share of one selection: with a proof if the guardian took part, or with
/// the parts other guardians computed on its behalf if it was missing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CiphertextDecryptionSelection {
    pub object_id: String,
    pub guardian_id: String,
    pub share: ElementModP,
    pub proof: Option<ChaumPedersenProof>,
    pub recovered_parts: Option<IndexMap<String, CiphertextCompensatedDecryptionSelection>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CiphertextDecryptionContest {
    pub object_id: String,
    pub guardian_id: String,
    pub description_hash: ElementModQ,
    pub selections: IndexMap<String, CiphertextDecryptionSelection>,
}

/// A guardian's shares of a whole tally or ballot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecryptionShare {
    pub object_id: String,
    pub guardian_id: String,
    pub public_key: ElementModP,
    pub contests: IndexMap<String, CiphertextDecryptionContest>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CiphertextCompensatedDecryptionContest {
    pub object_id: String,
    pub guardian_id: String,
    pub missing_guardian_id: String,
    pub description_hash: ElementModQ,
    pub selections: IndexMap<String, CiphertextCompensatedDecryptionSelection>,
}

/// An available guardian's shares on behalf of a missing one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompensatedDecryptionShare {
    pub object_id: String,
    pub guardian_id: String,
    pub missing_guardian_id: String,
    pub public_key: ElementModP,
    pub contests: IndexMap<String, CiphertextCompensatedDecryptionContest>,
}

/// A selection id, its share M = α^s, and the proof that M used the guardian's secret.
type ShareWithProof = (String, ElementModP, ChaumPedersenProof);

/// M = α^s with its Chaum-Pedersen proof, for every selection of every contest, keyed by
/// contest and selection id: the computation both kinds of share have in common.
fn prove_shares<'a>(
    contests: &'a [ContestCiphertexts],
    secret: &SecretKey,
    extended_base_hash: &ElementModQ,
) -> Vec<(&'a ContestCiphertexts, Vec<ShareWithProof>)> {
    contests
        .iter()
        .map(|c| {
            let shares = c
                .selections
                .iter()
                .map(|(id, ct)| {
                    let share = ct.partial_decrypt(secret);
                    let proof = ChaumPedersenProof::make(
                        ct,
                        secret,
                        &share,
                        &ElementModQ::random(),
                        extended_base_hash,
                    );
                    (id.clone(), share, proof)
                })
                .collect();
            (c, shares)
        })
        .collect()
}

/// The guardian's shares M = α^s with proofs, using only that guardian's secret key.
pub fn compute_decryption_share(
    object_id: &str,
    guardian: &ElectionKeyPair,
    contests: &[ContestCiphertexts],
    extended_base_hash: &ElementModQ,
) -> DecryptionShare {
    let guardian_id = &guardian.owner_id;
    let contests = prove_shares(contests, &guardian.key_pair.secret_key, extended_base_hash)
        .into_iter()
        .map(|(c, shares)| {
            let selections = shares
                .into_iter()
                .map(|(id, share, proof)| {
                    let selection = CiphertextDecryptionSelection {
                        object_id: id.clone(),
                        guardian_id: guardian_id.clone(),
                        share,
                        proof: Some(proof),
                        recovered_parts: None,
                    };
                    (id, selection)
                })
                .collect();
            let contest = CiphertextDecryptionContest {
                object_id: c.object_id.clone(),
                guardian_id: guardian_id.clone(),
                description_hash: c.description_hash.clone(),
                selections,
            };
            (c.object_id.clone(), contest)
        })
        .collect();
    DecryptionShare {
        object_id: object_id.to_string(),
        guardian_id: guardian_id.clone(),
        public_key: guardian.key_pair.public_key.clone(),
        contests,
    }
}

/// The recovery key g^P_missing(ℓ) of an available guardian ℓ, from the missing guardian's commitments.
/// Checks shares a guardian computed elsewhere (on its own machine): they are for
/// `object_id`, carry the guardian's public key, and hold one share per selection of
/// `contests` whose proof verifies. The error names the contest and selection at fault.
pub fn verify_decryption_share(
    share: &DecryptionShare,
    object_id: &str,
    guardian: &ElectionPublicKey,
    contests: &[ContestCiphertexts],
    extended_base_hash: &ElementModQ,
) -> Result<(), String> {
    if share.object_id != object_id || share.guardian_id != guardian.owner_id {
        return Err(format!(
            "shares of {object_id} by {} expected",
            guardian.owner_id
        ));
    }
    if share.public_key != guardian.key {
        return Err("public_key: not the guardian's announced key".into());
    }
    let claims = claims_of(contests, |contest, selection| {
        let s = share.contests.get(contest)?.selections.get(selection)?;
        Some(ProvedShare {
            key: &guardian.key,
            share: &s.share,
            proof: s.proof.as_ref()?,
        })
    });
    if share.contests.len() == contests.len() && holds(claims, extended_base_hash) {
        return Ok(());
    }
    check_selections(
        object_id,
        contests,
        share.contests.len(),
        |contest, selection, ct| {
            let s = share.contests.get(contest)?.selections.get(selection)?;
            let proof = s.proof.as_ref()?;
            Some(
                proof
                    .verify(ct, &guardian.key, &s.share, extended_base_hash)
                    .map_err(|e| e.to_string()),
            )
        },
    )
}

/// Checks compensated shares computed elsewhere: as [`verify_decryption_share`], each
/// proof against the recovery key of the missing guardian at the available one's index.
pub fn verify_compensated_share(
    share: &CompensatedDecryptionShare,
    object_id: &str,
    available: &ElectionPublicKey,
    missing: &ElectionPublicKey,
    contests: &[ContestCiphertexts],
    extended_base_hash: &ElementModQ,
) -> Result<(), String> {
    if share.object_id != object_id
        || share.guardian_id != available.owner_id
        || share.missing_guardian_id != missing.owner_id
    {
        return Err(format!(
            "shares of {object_id} by {} for {} expected",
            available.owner_id, missing.owner_id
        ));
    }
    let recovery_key = recovery_public_key(available, missing);
    let claims = claims_of(contests, |contest, selection| {
        let s = share.contests.get(contest)?.selections.get(selection)?;
        (s.recovery_key == recovery_key).then_some(ProvedShare {
            key: &recovery_key,
            share: &s.share,
            proof: &s.proof,
        })
    });
    if share.contests.len() == contests.len() && holds(claims, extended_base_hash) {
        return Ok(());
    }
    check_selections(
        object_id,
        contests,
        share.contests.len(),
        |contest, selection, ct| {
            let s = share.contests.get(contest)?.selections.get(selection)?;
            if s.recovery_key != recovery_key {
                return Some(Err(
                    "recovery_key: not the missing guardian's at this index".into(),
                ));
            }
            Some(
                s.proof
                    .verify(ct, &recovery_key, &s.share, extended_base_hash)
                    .map_err(|e| e.to_string()),
            )
        },
    )
}

/// Every selection's share as a batch claim (no count), or `None` if one is missing.
fn claims_of<'a>(
    contests: &'a [ContestCiphertexts],
    proved: impl Fn(&str, &str) -> Option<ProvedShare<'a>>,
) -> Option<Vec<DecryptionClaim<'a>>> {
    contests
        .iter()
        .flat_map(|c| c.selections.iter().map(move |s| (c, s)))
        .map(|(contest, (selection, ciphertext))| {
            Some(DecryptionClaim {
                ciphertext,
                shares: vec![ShareEvidence::Proved(proved(
                    &contest.object_id,
                    selection,
                )?)],
                count: None,
            })
        })
        .collect()
}

/// Whether the claims hold as one batch; when not (or none could be made), the caller
/// checks one by one to name what fails.
fn holds(claims: Option<Vec<DecryptionClaim>>, extended_base_hash: &ElementModQ) -> bool {
    claims.is_some_and(|claims| decryptions_hold(&claims, extended_base_hash))
}

/// Runs `check` on every selection; `None` from it means the share lacks that selection.
fn check_selections(
    object_id: &str,
    contests: &[ContestCiphertexts],
    contests_shared: usize,
    check: impl Fn(&str, &str, &ElGamalCiphertext) -> Option<Result<(), String>>,
) -> Result<(), String> {
    if contests_shared != contests.len() {
        return Err(format!("{object_id}: one share per contest is needed"));
    }
    for contest in contests {
        for (selection, ciphertext) in &contest.selections {
            let at = || format!("{object_id}/{}/{selection}", contest.object_id);
            match check(&contest.object_id, selection, ciphertext) {
                None => return Err(format!("{}: no share with a proof", at())),
                Some(Err(e)) => return Err(format!("{}: {e}", at())),
                Some(Ok(())) => {}
            }
        }
    }
    Ok(())
}

pub fn recovery_public_key(
    available: &ElectionPublicKey,
    missing: &ElectionPublicKey,
) -> ElementModP {
    commitment_image(available.sequence_order, &missing.coefficient_commitments)
}

/// The available guardian's shares for a missing guardian, from the backup coordinate
/// P_missing(ℓ) that the available guardian holds.
pub fn compute_compensated_share(
    object_id: &str,
    coordinate: &SecretKey,
    available: &ElectionPublicKey,
    missing: &ElectionPublicKey,
    contests: &[ContestCiphertexts],
    extended_base_hash: &ElementModQ,
) -> CompensatedDecryptionShare {
    let recovery_key = recovery_public_key(available, missing);
    let contests = prove_shares(contests, coordinate, extended_base_hash)
        .into_iter()
        .map(|(c, shares)| {
            let selections = shares
                .into_iter()
                .map(|(id, share, proof)| {
                    let selection = CiphertextCompensatedDecryptionSelection {
                        object_id: id.clone(),
                        guardian_id: available.owner_id.clone(),
                        missing_guardian_id: missing.owner_id.clone(),
                        share,
                        recovery_key: recovery_key.clone(),
                        proof,
                    };
                    (id, selection)
                })
                .collect();
            let contest = CiphertextCompensatedDecryptionContest {
                object_id: c.object_id.clone(),
                guardian_id: available.owner_id.clone(),
                missing_guardian_id: missing.owner_id.clone(),
                description_hash: c.description_hash.clone(),
                selections,
            };
            (c.object_id.clone(), contest)
        })
        .collect();
    CompensatedDecryptionShare {
        object_id: object_id.to_string(),
        guardian_id: available.owner_id.clone(),
        missing_guardian_id: missing.owner_id.clone(),
        public_key: available.key.clone(),
        contests,
    }
}

/// w_i = Π_{j≠i} j / (j − i) mod q, over the sequence orders of the available guardians.
pub fn lagrange_coefficient(sequence_order: u64, others: &[u64]) -> ElementModQ {
    let i = ElementModQ::from_u64(sequence_order).expect("small");
    let mut numerator = ElementModQ::one();
    let mut denominator = ElementModQ::one();
    for &j in others.iter().filter(|&&j| j != sequence_order) {
        let j = ElementModQ::from_u64(j).expect("small");
        numerator = numerator.mul(&j);
        denominator = denominator.mul(&j.sub(&i));
    }
    numerator.mul(&denominator.inv().expect("sequence orders are distinct"))
}

/// The Lagrange coefficients of the available guardians, keyed by guardian id.
pub fn lagrange_coefficients(available: &[ElectionPublicKey]) -> IndexMap<String, ElementModQ> {
    let orders: Vec<u64> = available.iter().map(|g| g.sequence_order).collect();
    available
        .iter()
        .map(|g| {
            (
                g.owner_id.clone(),
                lagrange_coefficient(g.sequence_order, &orders),
            )
        })
        .collect()
}

/// Why shares could not be combined.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecryptError {
    #[error("no share of guardian {guardian} for selection {selection}")]
    MissingShare { guardian: String, selection: String },
    #[error("no Lagrange coefficient for guardian {0}")]
    MissingCoefficient(String),
    #[error("selection {0} does not decrypt to a count")]
    NoDiscreteLog(String),
}

/// The missing guardian's share M = Π M_ℓ^(w_ℓ), keeping each part as published evidence.
pub fn reconstruct_share(
    missing: &ElectionPublicKey,
    contests: &[ContestCiphertexts],
    parts: &[CompensatedDecryptionShare],
    coefficients: &IndexMap<String, ElementModQ>,
) -> Result<DecryptionShare, DecryptError> {
    let mut out = IndexMap::new();
    for c in contests {
        let mut selections = IndexMap::new();
        for (id, _) in &c.selections {
            let mut product = ElementModP::one();
            let mut recovered = IndexMap::new();
            for part in parts {
                let selection = part
                    .contests
                    .get(&c.object_id)
                    .and_then(|pc| pc.selections.get(id))
                    .ok_or_else(|| DecryptError::MissingShare {
                        guardian: part.guardian_id.clone(),
                        selection: id.clone(),
                    })?;
                let w = coefficients
                    .get(&part.guardian_id)
                    .ok_or_else(|| DecryptError::MissingCoefficient(part.guardian_id.clone()))?;
                product = product.mul(&selection.share.pow(w));
                recovered.insert(part.guardian_id.clone(), selection.clone());
            }
            let selection = CiphertextDecryptionSelection {
                object_id: id.clone(),
                guardian_id: missing.owner_id.clone(),
                share: product,
                proof: None,
                recovered_parts: Some(recovered),
            };
            selections.insert(id.clone(), selection);
        }
        let contest = CiphertextDecryptionContest {
            object_id: c.object_id.clone(),
            guardian_id: missing.owner_id.clone(),
            description_hash: c.description_hash.clone(),
            selections,
        };
        out.insert(c.object_id.clone(), contest);
    }
    let object_id = parts
        .first()
        .map(|p| p.object_id.clone())
        .unwrap_or_default();
    Ok(DecryptionShare {
        object_id,
        guardian_id: missing.owner_id.clone(),
        public_key: missing.key.clone(),
        contests: out,
    })
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaintextTallySelection {
    pub object_id: String,
    pub tally: u64,
    pub value: ElementModP,
    pub message: ElGamalCiphertext,
    pub shares: Vec<CiphertextDecryptionSelection>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaintextTallyContest {
    pub object_id: String,
    pub selections: IndexMap<String, PlaintextTallySelection>,
}

/// The decrypted tally (`tally.json`), or a decrypted spoiled ballot, with every share.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaintextTally {
    pub object_id: String,
    pub contests: IndexMap<String, PlaintextTallyContest>,
}

/// Combines every guardian's share (direct or reconstructed): value = β / Π M_i, count = log_g value.
/// Placeholder selections and contests outside the manifest are left out, as the reference does.
pub fn combine_shares(
    object_id: &str,
    contests: &[ContestCiphertexts],
    shares: &[DecryptionShare],
    manifest: &Manifest,
) -> Result<PlaintextTally, DecryptError> {
    let mut out = IndexMap::new();
    for c in contests {
        let Some(description) = manifest.contest(&c.object_id) else {
            continue;
        };
        let mut selections = IndexMap::new();
        for (id, ciphertext) in &c.selections {
            if !description
                .ballot_selections
                .iter()
                .any(|s| &s.object_id == id)
            {
                continue;
            }
            let mut parts = Vec::with_capacity(shares.len());
            for share in shares {
                let part = share
                    .contests
                    .get(&c.object_id)
                    .and_then(|sc| sc.selections.get(id))
                    .ok_or_else(|| DecryptError::MissingShare {
                        guardian: share.guardian_id.clone(),
                        selection: id.clone(),
                    })?;
                parts.push(part.clone());
            }
            let product = parts
                .iter()
                .fold(ElementModP::one(), |acc, p| acc.mul(&p.share));
            let inverse = product
                .inv()
                .ok_or_else(|| DecryptError::NoDiscreteLog(id.clone()))?;
            let value = ciphertext.data.mul(&inverse);
            let tally = crate::dlog::discrete_log(&value)
                .ok_or_else(|| DecryptError::NoDiscreteLog(id.clone()))?;
            let selection = PlaintextTallySelection {
                object_id: id.clone(),
                tally,
                value,
                message: ciphertext.clone(),
                shares: parts,
            };
            selections.insert(id.clone(), selection);
        }
        out.insert(
            c.object_id.clone(),
            PlaintextTallyContest {
                object_id: c.object_id.clone(),
                selections,
            },
        );
    }
    Ok(PlaintextTally {
        object_id: object_id.to_string(),
        contests: out,
    })
}

/// Lagrange coefficients as published (`coefficients.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LagrangeCoefficientsRecord {
    pub coefficients: IndexMap<String, ElementModQ>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elgamal::EncryptionKey;
    use crate::key_ceremony::{joint_key, ElectionPartialKeyBackup};

    fn contests(key: &ElementModP) -> Vec<ContestCiphertexts> {
        let key = EncryptionKey::new(key);
        vec![ContestCiphertexts {
            object_id: "contest-1".into(),
            description_hash: ElementModQ::from_i64(7),
            selections: (0..2)
                .map(|i| {
                    (
                        format!("s-{i}"),
                        ElGamalCiphertext::encrypt(i, &ElementModQ::random(), &key),
                    )
                })
                .collect(),
        }]
    }

    #[test]
    fn shares_made_elsewhere_verify_and_a_forged_one_is_named() {
        let keys = [
            ElectionKeyPair::generate("g1", 1, 2),
            ElectionKeyPair::generate("g2", 2, 2),
        ];
        let public: Vec<ElectionPublicKey> = keys.iter().map(ElectionKeyPair::share).collect();
        let contests = contests(&joint_key(&public).0);
        let qbar = ElementModQ::from_i64(42);
        let share = compute_decryption_share("tally", &keys[0], &contests, &qbar);
        assert_eq!(
            verify_decryption_share(&share, "tally", &public[0], &contests, &qbar),
            Ok(())
        );
        assert!(verify_decryption_share(&share, "tally", &public[1], &contests, &qbar).is_err());
        let mut forged = share.clone();
        let contest = forged.contests.get_mut("contest-1").unwrap();
        let selection = contest.selections.get_mut("s-1").unwrap();
        selection.share = selection.share.mul(&public[1].key);
        let error =
            verify_decryption_share(&forged, "tally", &public[0], &contests, &qbar).unwrap_err();
        assert!(error.starts_with("tally/contest-1/s-1"), "{error}");

        let coordinate = ElectionPartialKeyBackup::generate(&keys[1], &public[0])
            .verify(&keys[0], &public[1])
            .unwrap();
        let compensated = compute_compensated_share(
            "tally",
            &coordinate,
            &public[0],
            &public[1],
            &contests,
            &qbar,
        );
        assert_eq!(
            verify_compensated_share(
                &compensated,
                "tally",
                &public[0],
                &public[1],
                &contests,
                &qbar
            ),
            Ok(())
        );
        assert!(verify_compensated_share(
            &compensated,
            "ballot-9",
            &public[0],
            &public[1],
            &contests,
            &qbar
        )
        .is_err());
    }
}
