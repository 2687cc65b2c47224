//! The key ceremony: each guardian's secret polynomial of degree k−1, its commitments
//! and Schnorr proofs, the partial key backups encrypted to each other guardian, their
//! verification (and the challenge when one fails), and the joint key.
//!
//! Each step runs with one guardian's own secrets only: generating backups needs the
//! sender's polynomial and the recipients' public keys; verifying one needs the
//! recipient's secret key and the sender's public commitments.

use serde::{Deserialize, Serialize};

use crate::elgamal::{
    pad_message, unpad_message, ElGamalKeyPair, EncryptionKey, HashedElGamalCiphertext, SecretKey,
};
use crate::group::{g_pow_p, ElementModP, ElementModQ};
use crate::hash;
use crate::json::{from_json, to_reference_json};
use crate::proof::SchnorrProof;

/// One coefficient of a guardian's secret polynomial.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coefficient {
    pub value: SecretKey,
    pub commitment: ElementModP,
    pub proof: SchnorrProof,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElectionPolynomial {
    pub coefficients: Vec<Coefficient>,
}

impl ElectionPolynomial {
    /// A random polynomial with `quorum` coefficients, each with its commitment and proof.
    pub fn random(quorum: u32) -> ElectionPolynomial {
        let coefficients = (0..quorum)
            .map(|_| {
                let keys = ElGamalKeyPair::from_secret(ElementModQ::random());
                let proof =
                    SchnorrProof::make(&keys.secret_key, &keys.public_key, &ElementModQ::random());
                Coefficient {
                    value: keys.secret_key.clone(),
                    commitment: keys.public_key,
                    proof,
                }
            })
            .collect();
        ElectionPolynomial { coefficients }
    }

    /// P(x) mod q: the coordinate sent to the guardian whose sequence order is x.
    pub fn coordinate(&self, x: u64) -> SecretKey {
        let x = ElementModQ::from_u64(x).expect("a sequence order is below q");
        let mut value = ElementModQ::zero();
        let mut power = ElementModQ::one();
        for coefficient in &self.coefficients {
            value = value.add(&coefficient.value.expose().mul(&power));
            power = power.mul(&x);
        }
        SecretKey::new(value)
    }

    pub fn commitments(&self) -> Vec<ElementModP> {
        self.coefficients
            .iter()
            .map(|c| c.commitment.clone())
            .collect()
    }

    pub fn proofs(&self) -> Vec<SchnorrProof> {
        self.coefficients.iter().map(|c| c.proof.clone()).collect()
    }
}

/// g^P(x) = Π K_j^(x^j): the public image of a coordinate, from the commitments alone.
pub fn commitment_image(x: u64, commitments: &[ElementModP]) -> ElementModP {
    let x = ElementModQ::from_u64(x).expect("a sequence order is below q");
    let mut power = ElementModQ::one();
    let mut product = ElementModP::one();
    for commitment in commitments {
        product = product.mul(&commitment.pow(&power));
        power = power.mul(&x);
    }
    product
}

/// Checks a coordinate against the sender's commitments: g^P(x) = Π K_j^(x^j).
pub fn verify_coordinate(coordinate: &ElementModQ, x: u64, commitments: &[ElementModP]) -> bool {
    g_pow_p(coordinate) == commitment_image(x, commitments)
}

/// A guardian's whole private state: key pair and polynomial (the reference's `ElectionKeyPair`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElectionKeyPair {
    pub owner_id: String,
    pub sequence_order: u64,
    pub key_pair: ElGamalKeyPair,
    pub polynomial: ElectionPolynomial,
}

impl ElectionKeyPair {
    pub fn generate(owner_id: &str, sequence_order: u64, quorum: u32) -> ElectionKeyPair {
        let polynomial = ElectionPolynomial::random(quorum);
        let first = &polynomial.coefficients[0];
        let key_pair = ElGamalKeyPair {
            secret_key: first.value.clone(),
            public_key: first.commitment.clone(),
        };
        ElectionKeyPair {
            owner_id: owner_id.to_string(),
            sequence_order,
            key_pair,
            polynomial,
        }
    }

    /// What the guardian announces to the others.
    pub fn share(&self) -> ElectionPublicKey {
        ElectionPublicKey {
            owner_id: self.owner_id.clone(),
            sequence_order: self.sequence_order,
            key: self.key_pair.public_key.clone(),
            coefficient_commitments: self.polynomial.commitments(),
            coefficient_proofs: self.polynomial.proofs(),
        }
    }
}

/// A guardian's public key, commitments and proofs, as exchanged in the ceremony.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElectionPublicKey {
    pub owner_id: String,
    pub sequence_order: u64,
    pub key: ElementModP,
    pub coefficient_commitments: Vec<ElementModP>,
    pub coefficient_proofs: Vec<SchnorrProof>,
}

/// Why a guardian's announcement or backup is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CeremonyError {
    #[error("guardian {guardian}: {problem}")]
    BadPublicKey { guardian: String, problem: String },
    #[error("backup from {owner} to {designated}: {problem}")]
    BadBackup {
        owner: String,
        designated: String,
        problem: String,
    },
}

impl ElectionPublicKey {
    /// The checks every other guardian (and the verifier) makes of an announcement.
    pub fn validate(&self, quorum: u32) -> Result<(), CeremonyError> {
        let fail = |problem: String| {
            Err(CeremonyError::BadPublicKey {
                guardian: self.owner_id.clone(),
                problem,
            })
        };
        if self.coefficient_commitments.len() != quorum as usize
            || self.coefficient_proofs.len() != quorum as usize
        {
            return fail(format!("expected {quorum} commitments and proofs"));
        }
        if self.coefficient_commitments.first() != Some(&self.key) {
            return fail("public key is not the first commitment".into());
        }
        for (j, (commitment, proof)) in self
            .coefficient_commitments
            .iter()
            .zip(&self.coefficient_proofs)
            .enumerate()
        {
            if &proof.public_key != commitment {
                return fail(format!("proof {j} is not for commitment {j}"));
            }
            if let Err(e) = proof.verify() {
                return fail(format!("Schnorr proof {j}: {e}"));
            }
        }
        Ok(())
    }
}

/// The published guardian record (`guardians/guardian_<id>.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardianRecord {
    pub guardian_id: String,
    pub sequence_order: u64,
    pub election_public_key: ElementModP,
    pub election_commitments: Vec<ElementModP>,
    pub election_proofs: Vec<SchnorrProof>,
}

impl From<&ElectionPublicKey> for GuardianRecord {
    fn from(key: &ElectionPublicKey) -> Self {
        GuardianRecord {
            guardian_id: key.owner_id.clone(),
            sequence_order: key.sequence_order,
            election_public_key: key.key.clone(),
            election_commitments: key.coefficient_commitments.clone(),
            election_proofs: key.coefficient_proofs.clone(),
        }
    }
}

impl From<&GuardianRecord> for ElectionPublicKey {
    fn from(record: &GuardianRecord) -> Self {
        ElectionPublicKey {
            owner_id: record.guardian_id.clone(),
            sequence_order: record.sequence_order,
            key: record.election_public_key.clone(),
            coefficient_commitments: record.election_commitments.clone(),
            coefficient_proofs: record.election_proofs.clone(),
        }
    }
}

/// P_i(ℓ) for guardian ℓ, encrypted to ℓ's public key with hashed ElGamal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElectionPartialKeyBackup {
    pub owner_id: String,
    pub designated_id: String,
    pub designated_sequence_order: u64,
    pub encrypted_coordinate: HashedElGamalCiphertext,
}

#[derive(Serialize, Deserialize)]
struct CoordinateData {
    coordinate: ElementModQ,
}

/// H(recipient id, recipient sequence order): the hashed-ElGamal seed of a backup.
fn backup_seed(designated_id: &str, sequence_order: u64) -> ElementModQ {
    hash!(designated_id, sequence_order)
}

impl ElectionPartialKeyBackup {
    /// The sender's backup for one recipient.
    pub fn generate(
        sender: &ElectionKeyPair,
        recipient: &ElectionPublicKey,
    ) -> ElectionPartialKeyBackup {
        let coordinate = sender.polynomial.coordinate(recipient.sequence_order);
        let data = CoordinateData {
            coordinate: coordinate.expose().clone(),
        };
        let message = pad_message(to_reference_json(&data).as_bytes()).expect("a coordinate fits");
        let seed = backup_seed(&recipient.owner_id, recipient.sequence_order);
        let encrypted_coordinate = HashedElGamalCiphertext::encrypt(
            &message,
            &ElementModQ::random(),
            &EncryptionKey::single_use(&recipient.key),
            &seed,
        );
        ElectionPartialKeyBackup {
            owner_id: sender.owner_id.clone(),
            designated_id: recipient.owner_id.clone(),
            designated_sequence_order: recipient.sequence_order,
            encrypted_coordinate,
        }
    }

    /// Opens the backup with the recipient's secret key.
    pub fn decrypt(&self, recipient: &ElectionKeyPair) -> Result<SecretKey, CeremonyError> {
        let fail = |problem: &str| CeremonyError::BadBackup {
            owner: self.owner_id.clone(),
            designated: self.designated_id.clone(),
            problem: problem.to_string(),
        };
        let seed = backup_seed(&recipient.owner_id, recipient.sequence_order);
        let bytes = self
            .encrypted_coordinate
            .decrypt(&recipient.key_pair.secret_key, &seed)
            .map_err(|e| fail(&e.to_string()))?;
        let text = unpad_message(&bytes)
            .and_then(|b| std::str::from_utf8(b).ok())
            .ok_or_else(|| fail("bad padding"))?;
        let data: CoordinateData = from_json(text).map_err(|e| fail(&e.to_string()))?;
        Ok(SecretKey::new(data.coordinate))
    }

    /// The recipient's check: the coordinate matches the sender's public commitments.
    pub fn verify(
        &self,
        recipient: &ElectionKeyPair,
        sender: &ElectionPublicKey,
    ) -> Result<SecretKey, CeremonyError> {
        let coordinate = self.decrypt(recipient)?;
        if !verify_coordinate(
            coordinate.expose(),
            self.designated_sequence_order,
            &sender.coefficient_commitments,
        ) {
            return Err(CeremonyError::BadBackup {
                owner: self.owner_id.clone(),
                designated: self.designated_id.clone(),
                problem: "coordinate does not match the sender's commitments".into(),
            });
        }
        Ok(coordinate)
    }
}

/// When a recipient disputes a backup, the sender publishes the coordinate in clear;
/// anyone can check it against the commitments.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElectionPartialKeyChallenge {
    pub owner_id: String,
    pub designated_id: String,
    pub designated_sequence_order: u64,
    pub value: ElementModQ,
    pub coefficient_commitments: Vec<ElementModP>,
    pub coefficient_proofs: Vec<SchnorrProof>,
}

impl ElectionPartialKeyChallenge {
    /// The sender's answer when `recipient` rejects its backup: the coordinate in clear.
    pub fn answer(sender: &ElectionKeyPair, recipient: &ElectionPublicKey) -> Self {
        ElectionPartialKeyChallenge {
            owner_id: sender.owner_id.clone(),
            designated_id: recipient.owner_id.clone(),
            designated_sequence_order: recipient.sequence_order,
            value: sender
                .polynomial
                .coordinate(recipient.sequence_order)
                .expose()
                .clone(),
            coefficient_commitments: sender.polynomial.commitments(),
            coefficient_proofs: sender.polynomial.proofs(),
        }
    }

    pub fn verify(&self) -> bool {
        verify_coordinate(
            &self.value,
            self.designated_sequence_order,
            &self.coefficient_commitments,
        )
    }
}

/// K = Π K_i and H(K_1,0 … K_n,k−1) over the guardians in the order given.
pub fn joint_key(guardians: &[ElectionPublicKey]) -> (ElementModP, ElementModQ) {
    let key = guardians
        .iter()
        .fold(ElementModP::one(), |acc, g| acc.mul(&g.key));
    let commitments: Vec<&ElementModP> = guardians
        .iter()
        .flat_map(|g| g.coefficient_commitments.iter())
        .collect();
    (key, hash!(commitments))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backups_verify_and_a_wrong_coordinate_is_caught() {
        let a = ElectionKeyPair::generate("a", 1, 2);
        let b = ElectionKeyPair::generate("b", 2, 2);
        let backup = ElectionPartialKeyBackup::generate(&a, &b.share());
        let coordinate = backup.verify(&b, &a.share()).unwrap();
        assert_eq!(coordinate, a.polynomial.coordinate(2));
        let other = ElectionKeyPair::generate("a", 1, 2);
        assert!(backup.verify(&b, &other.share()).is_err());
        let mut answer = ElectionPartialKeyChallenge::answer(&a, &b.share());
        assert!(answer.verify());
        assert_eq!(&answer.value, coordinate.expose());
        answer.value = ElementModQ::random();
        assert!(!answer.verify());
        a.share().validate(2).unwrap();
        assert!(a.share().validate(3).is_err());
    }
}
