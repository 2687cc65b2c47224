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

/// `ballot_box.json`: the ballot box's own declaration of what it holds, so that the
/// record proves its completeness. Every ballot the box accepted is counted here and lies
/// on one device's code chain; a verifier walks each chain back from `last_code` to the
/// device hash, so a ballot removed from the record breaks a chain or a count.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BallotBox {
    /// Submitted ballots in state cast.
    pub cast: u64,
    /// Submitted ballots in state spoiled.
    pub spoiled: u64,
    /// One chain per encryption device.
    pub devices: Vec<DeviceChain>,
}

/// One device's code chain as the ballot box declares it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceChain {
    pub device_id: u64,
    /// How many ballots the chain holds.
    pub ballots: u64,
    /// The code of the device's last ballot; `None` when it has none.
    pub last_code: Option<ElementModQ>,
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
    /// `ballot_box.json`; records of producers that declare nothing (the reference
    /// library, MITRE's example) have none.
    pub ballot_box: Option<BallotBox>,
}

/// File names of the reference layout, relative to the record's root.
pub mod layout {
    pub const CONSTANTS: &str = "constants.json";
    pub const MANIFEST: &str = "manifest.json";
    pub const CONTEXT: &str = "context.json";
    pub const ENCRYPTED_TALLY: &str = "encrypted_tally.json";
    pub const COEFFICIENTS: &str = "coefficients.json";
    pub const TALLY: &str = "tally.json";
    pub const BALLOT_BOX: &str = "ballot_box.json";
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::{from_json, to_reference_json};

    #[test]
    fn ballot_box_round_trips_with_uppercase_hex() {
        let declared = BallotBox {
            cast: 9,
            spoiled: 3,
            devices: vec![
                DeviceChain {
                    device_id: 1007,
                    ballots: 12,
                    last_code: Some(ElementModQ::from_u64(0xabcdef).unwrap()),
                },
                DeviceChain {
                    device_id: 1008,
                    ballots: 0,
                    last_code: None,
                },
            ],
        };
        let text = to_reference_json(&declared);
        assert_eq!(
            text,
            r#"{"cast": 9, "spoiled": 3, "devices": [{"device_id": 1007, "ballots": 12, "last_code": "ABCDEF"}, {"device_id": 1008, "ballots": 0, "last_code": null}]}"#
        );
        let back: BallotBox = from_json(&text).unwrap();
        assert_eq!(back, declared);
        assert_eq!(to_reference_json(&back), text);
    }
}
