//! The published election record in the reference export layout, and its file names.
//!
//! Reading and writing files belongs to the caller (this crate does no I/O): it parses
//! each file with [`crate::json::from_json`] and writes with [`crate::json::to_reference_json`].

use serde::{Deserialize, Serialize};

use crate::ballot::{CiphertextBallot, EncryptionDevice};
use crate::context::CiphertextElectionContext;
use crate::decrypt::{LagrangeCoefficientsRecord, PlaintextTally};
use crate::group::{ElementModP, ElementModQ};
use crate::key_ceremony::GuardianRecord;
use crate::manifest::Manifest;
use crate::tally::CiphertextTally;

/// `constants.json`: p, q, r, g as hex.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElectionConstants {
    pub large_prime: String,
    pub small_prime: String,
    pub cofactor: String,
    pub generator: String,
}

impl ElectionConstants {
    /// The standard ElectionGuard 1.0 parameters.
    pub fn standard() -> ElectionConstants {
        ElectionConstants {
            large_prime: ElementModP::p_hex(),
            small_prime: ElementModQ::q_hex(),
            cofactor: ElementModP::cofactor_hex(),
            generator: ElementModP::g_hex(),
        }
    }
}

/// Everything a verifier reads: the whole published record.
#[derive(Clone, Debug)]
pub struct ElectionRecord {
    pub constants: ElectionConstants,
    pub manifest: Manifest,
    pub context: CiphertextElectionContext,
    pub devices: Vec<EncryptionDevice>,
    pub guardians: Vec<GuardianRecord>,
    pub submitted_ballots: Vec<CiphertextBallot>,
    pub encrypted_tally: Option<CiphertextTally>,
    pub coefficients: Option<LagrangeCoefficientsRecord>,
    pub tally: Option<PlaintextTally>,
    pub spoiled_ballots: Vec<PlaintextTally>,
}

/// File names of the reference layout, relative to the record's root.
pub mod layout {
    pub const CONSTANTS: &str = "constants.json";
    pub const MANIFEST: &str = "manifest.json";
    pub const CONTEXT: &str = "context.json";
    pub const ENCRYPTED_TALLY: &str = "encrypted_tally.json";
    pub const COEFFICIENTS: &str = "coefficients.json";
    pub const TALLY: &str = "tally.json";
    pub const DEVICES_DIR: &str = "encryption_devices";
    pub const GUARDIANS_DIR: &str = "guardians";
    pub const SUBMITTED_BALLOTS_DIR: &str = "submitted_ballots";
    pub const SPOILED_BALLOTS_DIR: &str = "spoiled_ballots";

    pub fn device(device_id: u64) -> String {
        format!("{DEVICES_DIR}/device_{device_id}.json")
    }

    pub fn guardian(guardian_id: &str) -> String {
        format!("{GUARDIANS_DIR}/guardian_{guardian_id}.json")
    }

    pub fn submitted_ballot(ballot_id: &str) -> String {
        format!("{SUBMITTED_BALLOTS_DIR}/submitted_ballot_{ballot_id}.json")
    }

    pub fn spoiled_ballot(ballot_id: &str) -> String {
        format!("{SPOILED_BALLOTS_DIR}/spoiled_ballot_{ballot_id}.json")
    }
}
