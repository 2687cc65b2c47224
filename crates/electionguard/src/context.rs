//! The ciphertext election context: joint key, base hashes and configuration.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::group::{ElementModP, ElementModQ};
use crate::hash;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Configuration {
    pub allow_overvotes: bool,
    pub max_votes: u64,
}

impl Default for Configuration {
    fn default() -> Self {
        Configuration {
            allow_overvotes: true,
            max_votes: 1_000_000,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CiphertextElectionContext {
    pub number_of_guardians: u32,
    pub quorum: u32,
    pub elgamal_public_key: ElementModP,
    pub commitment_hash: ElementModQ,
    pub manifest_hash: ElementModQ,
    pub crypto_base_hash: ElementModQ,
    pub crypto_extended_base_hash: ElementModQ,
    pub extended_data: Option<IndexMap<String, String>>,
    pub configuration: Configuration,
}

/// Q = H(p, q, g, n, k, manifest hash), as the reference computes it.
pub fn crypto_base_hash(
    number_of_guardians: u32,
    quorum: u32,
    manifest_hash: &ElementModQ,
) -> ElementModQ {
    hash!(
        ElementModP::p_hex(),
        ElementModQ::q_hex(),
        ElementModP::g_hex(),
        number_of_guardians,
        quorum,
        manifest_hash
    )
}

/// Q̄ = H(Q, commitment hash).
pub fn crypto_extended_base_hash(
    base_hash: &ElementModQ,
    commitment_hash: &ElementModQ,
) -> ElementModQ {
    hash!(base_hash, commitment_hash)
}

impl CiphertextElectionContext {
    pub fn new(
        number_of_guardians: u32,
        quorum: u32,
        elgamal_public_key: ElementModP,
        commitment_hash: ElementModQ,
        manifest_hash: ElementModQ,
    ) -> Self {
        let crypto_base_hash = crypto_base_hash(number_of_guardians, quorum, &manifest_hash);
        let crypto_extended_base_hash =
            crypto_extended_base_hash(&crypto_base_hash, &commitment_hash);
        CiphertextElectionContext {
            number_of_guardians,
            quorum,
            elgamal_public_key,
            commitment_hash,
            manifest_hash,
            crypto_base_hash,
            crypto_extended_base_hash,
            extended_data: None,
            configuration: Configuration::default(),
        }
    }
}
