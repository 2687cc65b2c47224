//! Batch verification of ballot proofs with random linear combinations.
//!
//! Each proof equation is rewritten as a product that must equal 1, e.g. a0·α^c0·g^(−v0) = 1,
//! raised to a fresh random 64-bit weight, and all are multiplied together: one
//! multi-exponentiation over every variable base, plus one table exponentiation each for
//! g and K. A false equation survives with probability at most 2^−64.
//!
//! Soundness needs to know the group each value lives in. Since (p−1)/q = 2·ℓ with ℓ
//! prime, Z_p* is C2 × Cq × Cℓ:
//! * a Jacobi symbol per value rules out the C2 part (GMP makes it cheap);
//! * α and β of every selection have exponents reduced mod q, which is only valid in Cq, so
//!   (Π α^r·β^s)^q = 1 is checked with fresh random weights (rules out the Cℓ part);
//! * every proof commitment gets its own weight in the main product, so a Cℓ part there
//!   survives with probability at most 2^−64.
//!
//! A batch that fails says nothing about which proof is wrong: the verifier then checks
//! that batch's ballots one by one to name the culprit.
//!
//! Decryptions batch the same way ([`decryptions_hold`]): every share's Chaum–Pedersen
//! proof (g^v = a·k^c and α^v = b·M^c), every missing guardian's share rebuilt from its
//! parts (M = Π Mℓ^λℓ) and every count (g^t·Π M = β), in one product where a base that
//! repeats (a guardian's key, a selection's α, a share in several equations) appears once.

use std::collections::HashMap;

use crate::ballot::CiphertextBallot;
use crate::elgamal::{ElGamalCiphertext, EncryptionKey};
use crate::group::{g_pow_p, ElementModP, ElementModQ};
use crate::multiexp::multi_exp;
use crate::proof::ChaumPedersenProof;

fn weight() -> ElementModQ {
    let mut bytes = [0u8; 8];
    openssl::rand::rand_bytes(&mut bytes).expect("OpenSSL RNG failure");
    ElementModQ::from_bytes_be(&bytes).expect("64 bits are below q")
}

/// The product being built: variable bases with exponents, and the exponents of g and K.
struct Product<'a> {
    terms: Vec<(&'a ElementModP, ElementModQ)>,
    g: ElementModQ,
    k: ElementModQ,
}

impl<'a> Product<'a> {
    fn holds(&self, key: &EncryptionKey) -> bool {
        product_of_powers(&self.terms)
            .mul(&g_pow_p(&self.g))
            .mul(&key.pow(&self.k))
            == ElementModP::one()
    }
}

/// Whether every selection and contest proof of these ballots holds. Structure, hashes and
/// challenges are the caller's to check (they are cheap and need no batching).
pub fn ballot_proofs_hold(ballots: &[&CiphertextBallot], key: &EncryptionKey) -> bool {
    let mut product = Product {
        terms: Vec::new(),
        g: ElementModQ::zero(),
        k: ElementModQ::zero(),
    };
    let mut members: Vec<(&ElementModP, ElementModQ)> = Vec::new();
    let mut residues: Vec<&ElementModP> = Vec::new();
    for contest in ballots.iter().flat_map(|b| &b.contests) {
        let Some(cp) = &contest.proof else {
            return false;
        };
        let (w5, w6) = (weight(), weight());
        for selection in &contest.ballot_selections {
            let Some(p) = &selection.proof else {
                return false;
            };
            let (alpha, beta) = (&selection.ciphertext.pad, &selection.ciphertext.data);
            let (w1, w2, w3, w4) = (weight(), weight(), weight(), weight());
            let (c0, c1) = (&p.proof_zero_challenge, &p.proof_one_challenge);
            let (v0, v1) = (&p.proof_zero_response, &p.proof_one_response);
            // a0·α^c0·g^−v0, a1·α^c1·g^−v1, b0·β^c0·K^−v0, b1·β^c1·g^−c1·K^−v1, and the
            // contest's a·A^c·g^−v, b·B^c·g^−cL·K^−v with A = Πα, B = Πβ folded into each α, β.
            let alpha_exp = c0.mul(&w1).add(&c1.mul(&w2)).add(&cp.challenge.mul(&w5));
            let beta_exp = c0.mul(&w3).add(&c1.mul(&w4)).add(&cp.challenge.mul(&w6));
            product.terms.extend([(alpha, alpha_exp), (beta, beta_exp)]);
            product.terms.extend([
                (&p.proof_zero_pad, w1.clone()),
                (&p.proof_one_pad, w2.clone()),
            ]);
            product.terms.extend([
                (&p.proof_zero_data, w3.clone()),
                (&p.proof_one_data, w4.clone()),
            ]);
            product.g = product
                .g
                .sub(&v0.mul(&w1))
                .sub(&v1.mul(&w2))
                .sub(&c1.mul(&w4));
            product.k = product.k.sub(&v0.mul(&w3)).sub(&v1.mul(&w4));
            members.extend([(alpha, weight()), (beta, weight())]);
            residues.extend([
                alpha,
                beta,
                &p.proof_zero_pad,
                &p.proof_one_pad,
                &p.proof_zero_data,
                &p.proof_one_data,
            ]);
        }
        let Ok(constant) = ElementModQ::from_u64(cp.constant) else {
            return false;
        };
        product
            .terms
            .extend([(&cp.pad, w5.clone()), (&cp.data, w6.clone())]);
        product.g = product
            .g
            .sub(&cp.response.mul(&w5))
            .sub(&cp.challenge.mul(&constant).mul(&w6));
        product.k = product.k.sub(&cp.response.mul(&w6));
        residues.extend([&cp.pad, &cp.data]);
    }
    residues.iter().all(|x| x.is_quadratic_residue()) && in_subgroup(&members) && product.holds(key)
}

/// (Π xᵢ^rᵢ)^q = 1 for values already known to be quadratic residues.
fn in_subgroup(members: &[(&ElementModP, ElementModQ)]) -> bool {
    let combined = product_of_powers(members);
    combined.pow(&ElementModQ::from_i64(-1)).mul(&combined) == ElementModP::one()
}

/// Π bᵢ^eᵢ over the weighted terms.
fn product_of_powers(terms: &[(&ElementModP, ElementModQ)]) -> ElementModP {
    let terms: Vec<_> = terms
        .iter()
        .map(|(base, exponent)| (*base, exponent.bignum()))
        .collect();
    multi_exp(&terms)
}

/// A share M with its Chaum–Pedersen proof against key k (a guardian's public key, or the
/// recovery key of a missing guardian at an available one's index).
pub struct ProvedShare<'a> {
    pub key: &'a ElementModP,
    pub share: &'a ElementModP,
    pub proof: &'a ChaumPedersenProof,
}

/// What vouches for one guardian's share of a selection.
pub enum ShareEvidence<'a> {
    /// The guardian's own proof (its `share` is the claimed share).
    Proved(ProvedShare<'a>),
    /// For a missing guardian: parts with their Lagrange coefficients, M = Π Mℓ^λℓ.
    Rebuilt {
        share: &'a ElementModP,
        parts: Vec<(ProvedShare<'a>, &'a ElementModQ)>,
    },
}

/// One selection's decryption: its ciphertext, each guardian's share, and the count a
/// published plaintext claims (g^count·Π M = β), if any.
pub struct DecryptionClaim<'a> {
    pub ciphertext: &'a ElGamalCiphertext,
    pub shares: Vec<ShareEvidence<'a>>,
    pub count: Option<u64>,
}

/// Weighted terms of one product that must equal 1, a base passed by the same reference
/// twice appearing once; and the values that must lie in the group of order q.
#[derive(Default)]
struct Terms<'a> {
    terms: Vec<(&'a ElementModP, ElementModQ)>,
    at: HashMap<*const ElementModP, usize>,
    g: Option<ElementModQ>,
    members: Vec<&'a ElementModP>,
    residues: Vec<&'a ElementModP>,
}

impl<'a> Terms<'a> {
    fn add(&mut self, base: &'a ElementModP, exponent: ElementModQ) {
        match self.at.get(&(base as *const ElementModP)) {
            Some(&i) => self.terms[i].1 = self.terms[i].1.add(&exponent),
            None => {
                self.at.insert(base as *const ElementModP, self.terms.len());
                self.terms.push((base, exponent));
            }
        }
    }

    fn add_g(&mut self, exponent: ElementModQ) {
        self.g = Some(match self.g.take() {
            Some(g) => g.add(&exponent),
            None => exponent,
        });
    }

    /// g^v = a·k^c as a^w1·k^(c·w1)·g^(−v·w1), and α^v = b·M^c as b^w2·M^(c·w2)·α^(−v·w2);
    /// `share_extra` joins M's exponent from the equations M takes part in besides.
    fn proof(&mut self, alpha: &'a ElementModP, p: &ProvedShare<'a>, share_extra: ElementModQ) {
        let (w1, w2) = (weight(), weight());
        let (c, v) = (&p.proof.challenge, &p.proof.response);
        self.add(&p.proof.pad, w1.clone());
        self.add(p.key, c.mul(&w1));
        self.add_g(v.mul(&w1).neg());
        self.add(&p.proof.data, w2.clone());
        self.add(p.share, c.mul(&w2).add(&share_extra));
        self.add(alpha, v.mul(&w2).neg());
        self.members.extend([p.key, p.share]);
        self.residues
            .extend([p.key, p.share, &p.proof.pad, &p.proof.data]);
    }

    fn holds(&self) -> bool {
        let mut members = self.members.clone();
        members.sort_by_key(|m| *m as *const ElementModP);
        members.dedup_by_key(|m| *m as *const ElementModP);
        let weighted: Vec<(&ElementModP, ElementModQ)> =
            members.into_iter().map(|m| (m, weight())).collect();
        let g = self.g.clone().unwrap_or_else(ElementModQ::zero);
        self.residues.iter().all(|x| x.is_quadratic_residue())
            && in_subgroup(&weighted)
            && product_of_powers(&self.terms).mul(&g_pow_p(&g)) == ElementModP::one()
    }
}

/// Whether every decryption in `claims` holds: each proof's challenge, each proof's two
/// equations, each rebuilt share and each count, with every value in the group. On
/// `false`, check the claims one by one to name what fails.
pub fn decryptions_hold(claims: &[DecryptionClaim<'_>], extended_base_hash: &ElementModQ) -> bool {
    let mut terms = Terms::default();
    for claim in claims {
        let (alpha, beta) = (&claim.ciphertext.pad, &claim.ciphertext.data);
        let proved = claim.shares.iter().flat_map(|s| match s {
            ShareEvidence::Proved(p) => vec![p],
            ShareEvidence::Rebuilt { parts, .. } => parts.iter().map(|(p, _)| p).collect(),
        });
        for p in proved {
            if !p
                .proof
                .challenge_holds(claim.ciphertext, p.share, extended_base_hash)
            {
                return false;
            }
        }
        // g^t·Π M = β as Π M^w4·g^(t·w4)·β^(−w4).
        let w4 = match claim.count {
            Some(count) => {
                let Ok(t) = ElementModQ::from_u64(count) else {
                    return false;
                };
                let w4 = weight();
                terms.add_g(t.mul(&w4));
                terms.add(beta, w4.neg());
                w4
            }
            None => ElementModQ::zero(),
        };
        for evidence in &claim.shares {
            match evidence {
                ShareEvidence::Proved(p) => terms.proof(alpha, p, w4.clone()),
                // M = Π Mℓ^λℓ as M^w3·Π Mℓ^(−λℓ·w3).
                ShareEvidence::Rebuilt { share, parts } => {
                    let w3 = weight();
                    for (p, coefficient) in parts {
                        terms.proof(alpha, p, coefficient.mul(&w3).neg());
                    }
                    terms.add(share, w3.add(&w4));
                    terms.members.push(share);
                    terms.residues.push(share);
                }
            }
        }
        terms.members.extend([alpha, beta]);
        terms.residues.extend([alpha, beta]);
    }
    terms.holds()
}
