//! Zero-knowledge proofs of ElectionGuard 1.0 exactly as electionguard-python 1.4 makes
//! and checks them: Schnorr (guardian keys), disjunctive Chaum-Pedersen (a selection is 0
//! or 1), constant Chaum-Pedersen (a contest adds up to its limit) and Chaum-Pedersen
//! (a decryption share is correct).
//!
//! Every proof an encryptor makes uses fixed bases only (g and the joint key K), since it
//! knows the nonce. Checking a proof needs variable bases; the verifier batches those.

use serde::{Deserialize, Serialize};

use crate::elgamal::{ElGamalCiphertext, EncryptionKey, SecretKey};
use crate::group::{g_pow_p, ElementModP, ElementModQ};
use crate::hash;
use crate::hash::Nonces;

/// The `usage` string each proof carries in records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProofUsage {
    #[serde(rename = "Unknown")]
    Unknown,
    #[serde(rename = "Prove knowledge of secret value")]
    SecretValue,
    #[serde(rename = "Prove value within selection's limit")]
    SelectionLimit,
    #[serde(rename = "Prove selection's value (0 or 1)")]
    SelectionValue,
}

/// The check of a proof that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProofError(pub &'static str);

fn require(ok: bool, what: &'static str) -> Result<(), ProofError> {
    if ok {
        Ok(())
    } else {
        Err(ProofError(what))
    }
}

fn residues(values: &[&ElementModP], what: &'static str) -> Result<(), ProofError> {
    require(values.iter().all(|v| v.is_valid_residue()), what)
}

/// Proof of knowledge of the secret behind a public key (guardian coefficients).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchnorrProof {
    pub public_key: ElementModP,
    pub commitment: ElementModP,
    pub challenge: ElementModQ,
    pub response: ElementModQ,
    pub usage: ProofUsage,
}

impl SchnorrProof {
    /// h = g^u, c = H(k, h), v = u + c·s.
    pub fn make(secret: &SecretKey, public_key: &ElementModP, nonce: &ElementModQ) -> SchnorrProof {
        let commitment = g_pow_p(nonce);
        let challenge = hash!(public_key, commitment);
        let response = ElementModQ::a_plus_bc(nonce, secret.expose(), &challenge);
        SchnorrProof {
            public_key: public_key.clone(),
            commitment,
            challenge,
            response,
            usage: ProofUsage::SecretValue,
        }
    }

    pub fn verify(&self) -> Result<(), ProofError> {
        require(
            self.public_key.is_valid_residue(),
            "public key is not in the group",
        )?;
        require(
            self.challenge == hash!(self.public_key, self.commitment),
            "challenge is not H(k, h)",
        )?;
        require(
            g_pow_p(&self.response) == self.commitment.mul(&self.public_key.pow(&self.challenge)),
            "g^u != h·k^c",
        )
    }
}

/// Proof that M = α^s for the s behind a public key k = g^s (decryption shares).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChaumPedersenProof {
    pub pad: ElementModP,
    pub data: ElementModP,
    pub challenge: ElementModQ,
    pub response: ElementModQ,
    pub usage: ProofUsage,
}

impl ChaumPedersenProof {
    /// a = g^u, b = α^u, c = H(Q̄, α, β, a, b, M), v = u + c·s.
    pub fn make(
        message: &ElGamalCiphertext,
        secret: &SecretKey,
        share: &ElementModP,
        seed: &ElementModQ,
        extended_base_hash: &ElementModQ,
    ) -> ChaumPedersenProof {
        let u = Nonces::new(seed, &[&"constant-chaum-pedersen-proof"]).get(0);
        let pad = g_pow_p(&u);
        let data = message.pad.pow_secret(&u);
        let challenge = hash!(
            extended_base_hash,
            message.pad,
            message.data,
            pad,
            data,
            share
        );
        let response = ElementModQ::a_plus_bc(&u, &challenge, secret.expose());
        ChaumPedersenProof {
            pad,
            data,
            challenge,
            response,
            usage: ProofUsage::SecretValue,
        }
    }

    /// The cheap part of verification: c = H(Q̄, α, β, a, b, M).
    pub(crate) fn challenge_holds(
        &self,
        message: &ElGamalCiphertext,
        share: &ElementModP,
        extended_base_hash: &ElementModQ,
    ) -> bool {
        let c = hash!(
            extended_base_hash,
            message.pad,
            message.data,
            self.pad,
            self.data,
            share
        );
        self.challenge == c
    }

    /// Checks the share M of `message` against the public key k.
    pub fn verify(
        &self,
        message: &ElGamalCiphertext,
        public_key: &ElementModP,
        share: &ElementModP,
        extended_base_hash: &ElementModQ,
    ) -> Result<(), ProofError> {
        residues(
            &[
                &message.pad,
                &message.data,
                public_key,
                share,
                &self.pad,
                &self.data,
            ],
            "a value is not in the group",
        )?;
        let c = hash!(
            extended_base_hash,
            message.pad,
            message.data,
            self.pad,
            self.data,
            share
        );
        require(self.challenge == c, "challenge is not H(Q̄, α, β, a, b, M)")?;
        require(
            g_pow_p(&self.response) == self.pad.mul(&public_key.pow(&c)),
            "g^v != a·k^c",
        )?;
        require(
            message.pad.pow(&self.response) == self.data.mul(&share.pow(&c)),
            "α^v != b·M^c",
        )
    }
}

/// Proof that a contest's selections add up to its limit L.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConstantChaumPedersenProof {
    pub pad: ElementModP,
    pub data: ElementModP,
    pub challenge: ElementModQ,
    pub response: ElementModQ,
    pub constant: u64,
    pub usage: ProofUsage,
}

impl ConstantChaumPedersenProof {
    /// a = g^u, b = K^u, c = H(Q̄, α, β, a, b), v = u + c·r, for the aggregate nonce r.
    pub fn make(
        message: &ElGamalCiphertext,
        constant: u64,
        r: &ElementModQ,
        key: &EncryptionKey,
        seed: &ElementModQ,
        extended_base_hash: &ElementModQ,
    ) -> ConstantChaumPedersenProof {
        let u = Nonces::new(seed, &[&"constant-chaum-pedersen-proof"]).get(0);
        let pad = key.g_pow(&u);
        let data = key.pow(&u);
        let challenge = hash!(extended_base_hash, message.pad, message.data, pad, data);
        let response = ElementModQ::a_plus_bc(&u, &challenge, r);
        ConstantChaumPedersenProof {
            pad,
            data,
            challenge,
            response,
            constant,
            usage: ProofUsage::SelectionLimit,
        }
    }

    pub fn verify(
        &self,
        message: &ElGamalCiphertext,
        key: &EncryptionKey,
        extended_base_hash: &ElementModQ,
    ) -> Result<(), ProofError> {
        residues(
            &[&message.pad, &message.data, &self.pad, &self.data],
            "a value is not in the group",
        )?;
        self.check_challenge(message, extended_base_hash)?;
        let c = &self.challenge;
        require(
            g_pow_p(&self.response) == self.pad.mul(&message.pad.pow(c)),
            "g^v != a·α^c",
        )?;
        let constant = ElementModQ::from_u64(self.constant).expect("checked above");
        require(
            g_pow_p(&c.mul(&constant)).mul(&key.pow(&self.response))
                == self.data.mul(&message.data.pow(c)),
            "g^(cL)·K^v != b·β^c",
        )
    }

    /// The cheap part of verification: a sane constant and c = H(Q̄, α, β, a, b).
    pub fn check_challenge(
        &self,
        message: &ElGamalCiphertext,
        extended_base_hash: &ElementModQ,
    ) -> Result<(), ProofError> {
        require(self.constant < 1_000_000_000, "constant is not sane")?;
        let c = hash!(
            extended_base_hash,
            message.pad,
            message.data,
            self.pad,
            self.data
        );
        require(self.challenge == c, "challenge is not H(Q̄, α, β, a, b)")
    }
}

/// Proof that a selection encrypts 0 or 1.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisjunctiveChaumPedersenProof {
    pub proof_zero_pad: ElementModP,
    pub proof_zero_data: ElementModP,
    pub proof_one_pad: ElementModP,
    pub proof_one_data: ElementModP,
    pub proof_zero_challenge: ElementModQ,
    pub proof_one_challenge: ElementModQ,
    pub challenge: ElementModQ,
    pub proof_zero_response: ElementModQ,
    pub proof_one_response: ElementModQ,
    pub usage: ProofUsage,
}

impl DisjunctiveChaumPedersenProof {
    /// The reference's `make_disjunctive_chaum_pedersen`: the real branch for `plaintext`,
    /// the other simulated, every exponentiation with base g or K.
    pub fn make(
        message: &ElGamalCiphertext,
        r: &ElementModQ,
        key: &EncryptionKey,
        extended_base_hash: &ElementModQ,
        seed: &ElementModQ,
        plaintext: u64,
    ) -> DisjunctiveChaumPedersenProof {
        let nonces = Nonces::new(seed, &[&"disjoint-chaum-pedersen-proof"]);
        let (n0, v, u) = (nonces.get(0), nonces.get(1), nonces.get(2));
        let hash_challenge =
            |a0: &ElementModP, b0: &ElementModP, a1: &ElementModP, b1: &ElementModP| {
                hash!(
                    extended_base_hash,
                    message.pad,
                    message.data,
                    a0,
                    b0,
                    a1,
                    b1
                )
            };
        let (a0, b0, a1, b1, c0, c1, c);
        if plaintext == 0 {
            // n0 is the simulated challenge c1; u is the real commitment nonce.
            (a0, b0) = (key.g_pow(&u), key.pow(&u));
            (a1, b1) = (key.g_pow(&v), key.pow_times_g_pow(&v, &n0));
            c = hash_challenge(&a0, &b0, &a1, &b1);
            c1 = n0;
            c0 = c.sub(&c1);
            let v0 = ElementModQ::a_plus_bc(&u, &c0, r);
            let v1 = ElementModQ::a_plus_bc(&v, &c1, r);
            return Self::assemble(a0, b0, a1, b1, c0, c1, c, v0, v1);
        }
        // n0 is w; the simulated branch is zero, with c0 = −w.
        (a0, b0) = (key.g_pow(&v), key.pow_times_g_pow(&v, &n0));
        (a1, b1) = (key.g_pow(&u), key.pow(&u));
        c = hash_challenge(&a0, &b0, &a1, &b1);
        c0 = n0.neg();
        c1 = c.add(&n0);
        let v0 = ElementModQ::a_plus_bc(&v, &c0, r);
        let v1 = ElementModQ::a_plus_bc(&u, &c1, r);
        Self::assemble(a0, b0, a1, b1, c0, c1, c, v0, v1)
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        a0: ElementModP,
        b0: ElementModP,
        a1: ElementModP,
        b1: ElementModP,
        c0: ElementModQ,
        c1: ElementModQ,
        c: ElementModQ,
        v0: ElementModQ,
        v1: ElementModQ,
    ) -> Self {
        DisjunctiveChaumPedersenProof {
            proof_zero_pad: a0,
            proof_zero_data: b0,
            proof_one_pad: a1,
            proof_one_data: b1,
            proof_zero_challenge: c0,
            proof_one_challenge: c1,
            challenge: c,
            proof_zero_response: v0,
            proof_one_response: v1,
            usage: ProofUsage::SelectionValue,
        }
    }

    /// The cheap part of verification: c0 + c1 = c = H(Q̄, α, β, a0, b0, a1, b1).
    pub fn check_challenge(
        &self,
        message: &ElGamalCiphertext,
        extended_base_hash: &ElementModQ,
    ) -> Result<(), ProofError> {
        let expected = hash!(
            extended_base_hash,
            message.pad,
            message.data,
            self.proof_zero_pad,
            self.proof_zero_data,
            self.proof_one_pad,
            self.proof_one_data
        );
        require(
            self.proof_zero_challenge.add(&self.proof_one_challenge) == self.challenge
                && self.challenge == expected,
            "c0 + c1 != c = H(Q̄, α, β, a0, b0, a1, b1)",
        )
    }

    pub fn verify(
        &self,
        message: &ElGamalCiphertext,
        key: &EncryptionKey,
        extended_base_hash: &ElementModQ,
    ) -> Result<(), ProofError> {
        let (alpha, beta) = (&message.pad, &message.data);
        residues(
            &[
                alpha,
                beta,
                &self.proof_zero_pad,
                &self.proof_zero_data,
                &self.proof_one_pad,
                &self.proof_one_data,
            ],
            "a value is not in the group",
        )?;
        let (c0, c1) = (&self.proof_zero_challenge, &self.proof_one_challenge);
        let (v0, v1) = (&self.proof_zero_response, &self.proof_one_response);
        self.check_challenge(message, extended_base_hash)?;
        require(
            g_pow_p(v0) == self.proof_zero_pad.mul(&alpha.pow(c0)),
            "g^v0 != a0·α^c0",
        )?;
        require(
            g_pow_p(v1) == self.proof_one_pad.mul(&alpha.pow(c1)),
            "g^v1 != a1·α^c1",
        )?;
        require(
            key.pow(v0) == self.proof_zero_data.mul(&beta.pow(c0)),
            "K^v0 != b0·β^c0",
        )?;
        require(
            g_pow_p(c1).mul(&key.pow(v1)) == self.proof_one_data.mul(&beta.pow(c1)),
            "g^c1·K^v1 != b1·β^c1",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elgamal::ElGamalKeyPair;

    fn setup() -> (ElGamalKeyPair, EncryptionKey, ElementModQ) {
        let keys = ElGamalKeyPair::from_secret(ElementModQ::random_at_least_two());
        let key = EncryptionKey::new(&keys.public_key);
        (keys, key, ElementModQ::random())
    }

    #[test]
    fn disjunctive_proofs_verify_for_zero_and_one_only() {
        let (_, key, qbar) = setup();
        for m in [0, 1] {
            let r = ElementModQ::random();
            let ct = ElGamalCiphertext::encrypt(m, &r, &key);
            let proof = DisjunctiveChaumPedersenProof::make(
                &ct,
                &r,
                &key,
                &qbar,
                &ElementModQ::random(),
                m,
            );
            assert_eq!(proof.verify(&ct, &key, &qbar), Ok(()));
        }
        let r = ElementModQ::random();
        let two = ElGamalCiphertext::encrypt(2, &r, &key);
        let forged =
            DisjunctiveChaumPedersenProof::make(&two, &r, &key, &qbar, &ElementModQ::random(), 1);
        assert!(forged.verify(&two, &key, &qbar).is_err());
    }

    #[test]
    fn constant_and_share_proofs_verify_and_reject_tampering() {
        let (keys, key, qbar) = setup();
        let r = ElementModQ::random();
        let ct = ElGamalCiphertext::encrypt(1, &r, &key);
        let proof =
            ConstantChaumPedersenProof::make(&ct, 1, &r, &key, &ElementModQ::random(), &qbar);
        assert_eq!(proof.verify(&ct, &key, &qbar), Ok(()));
        let wrong = ConstantChaumPedersenProof {
            constant: 2,
            ..proof
        };
        assert!(wrong.verify(&ct, &key, &qbar).is_err());

        let share = ct.partial_decrypt(&keys.secret_key);
        let proof =
            ChaumPedersenProof::make(&ct, &keys.secret_key, &share, &ElementModQ::random(), &qbar);
        assert_eq!(proof.verify(&ct, &keys.public_key, &share, &qbar), Ok(()));
        let other = share.mul(&ElementModP::generator());
        assert!(proof.verify(&ct, &keys.public_key, &other, &qbar).is_err());

        let schnorr =
            SchnorrProof::make(&keys.secret_key, &keys.public_key, &ElementModQ::random());
        assert_eq!(schnorr.verify(), Ok(()));
        let bad = SchnorrProof {
            response: schnorr.response.add(&ElementModQ::one()),
            ..schnorr
        };
        assert!(bad.verify().is_err());
    }
}
