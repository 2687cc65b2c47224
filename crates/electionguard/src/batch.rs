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

use crate::ballot::CiphertextBallot;
use crate::elgamal::EncryptionKey;
use crate::group::{g_pow_p, ElementModP, ElementModQ};
use crate::multiexp::multi_exp;

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
