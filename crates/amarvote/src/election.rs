//! Building an ElectionGuard election from an administrator's description: the manifest
//! from contest specs, the key ceremony, and the ciphertext election context.

use anyhow::{ensure, Context, Result};
use electionguard::context::CiphertextElectionContext;
use electionguard::elgamal::SecretKey;
use electionguard::key_ceremony::{
    joint_key, ElectionKeyPair, ElectionPartialKeyBackup, ElectionPublicKey,
};
use electionguard::manifest::{
    BallotStyle, Candidate, ContestDescription, GeopoliticalUnit, InternationalizedText, Language,
    Manifest, SelectionDescription,
};
use rayon::prelude::*;

fn text(value: &str) -> InternationalizedText {
    InternationalizedText {
        text: vec![Language {
            value: value.to_string(),
            language: "en".to_string(),
        }],
    }
}

/// One contest as an administrator describes it: a title, how many may be chosen, the choices.
#[derive(Clone, Debug)]
pub struct ContestSpec {
    pub title: String,
    pub votes_allowed: u32,
    pub choices: Vec<String>,
}

/// A manifest of the given contests in one district and one ballot style. Contest `c`
/// is `contest-c`, its choices `contest-c-selection-s` (candidates `contest-c-candidate-s`).
pub fn build_manifest(
    scope_id: &str,
    title: &str,
    contests: &[ContestSpec],
    start: &str,
    end: &str,
) -> Manifest {
    let mut candidates = Vec::new();
    let contests = contests
        .iter()
        .enumerate()
        .map(|(c, spec)| {
            let c = c + 1;
            let selections = spec
                .choices
                .iter()
                .enumerate()
                .map(|(s, name)| {
                    let candidate_id = format!("contest-{c}-candidate-{}", s + 1);
                    candidates.push(Candidate {
                        object_id: candidate_id.clone(),
                        name: text(name),
                        party_id: None,
                        image_uri: None,
                        is_write_in: None,
                    });
                    SelectionDescription {
                        object_id: format!("contest-{c}-selection-{}", s + 1),
                        sequence_order: s as u64,
                        candidate_id,
                    }
                })
                .collect();
            ContestDescription {
                object_id: format!("contest-{c}"),
                sequence_order: (c - 1) as u64,
                electoral_district_id: "district-1".into(),
                vote_variation: if spec.votes_allowed == 1 {
                    "one_of_m"
                } else {
                    "n_of_m"
                }
                .into(),
                number_elected: u64::from(spec.votes_allowed),
                votes_allowed: Some(u64::from(spec.votes_allowed)),
                name: spec.title.clone(),
                ballot_selections: selections,
                ballot_title: Some(text(&spec.title)),
                ballot_subtitle: None,
                primary_party_ids: Some(vec![]),
            }
        })
        .collect();
    Manifest {
        election_scope_id: scope_id.to_string(),
        spec_version: "1.0".into(),
        election_type: "general".into(),
        start_date: start.to_string(),
        end_date: end.to_string(),
        geopolitical_units: vec![GeopoliticalUnit {
            object_id: "district-1".into(),
            name: "District 1".into(),
            unit_type: "county".into(),
            contact_information: None,
        }],
        parties: vec![],
        candidates,
        contests,
        ballot_styles: vec![BallotStyle {
            object_id: BALLOT_STYLE.into(),
            geopolitical_unit_ids: Some(vec!["district-1".into()]),
            party_ids: None,
            image_uri: None,
        }],
        name: Some(text(title)),
        contact_information: None,
    }
}

/// The one ballot style of a built manifest.
pub const BALLOT_STYLE: &str = "ballot-style-1";

/// The guardians after a successful ceremony: their key pairs and, for each guardian,
/// the coordinates the others sent it (checked against their commitments).
pub struct Ceremony {
    pub guardians: Vec<ElectionKeyPair>,
    pub public_keys: Vec<ElectionPublicKey>,
    /// received[r][s]: P_s(r) as guardian r decrypted it from s's backup.
    pub received: Vec<Vec<SecretKey>>,
}

/// Every guardian generates keys, checks the others' proofs, sends and verifies backups.
pub fn key_ceremony(guardians: u32, quorum: u32) -> Result<Ceremony> {
    ensure!(
        quorum >= 1 && quorum <= guardians,
        "quorum must be between 1 and the number of guardians"
    );
    let keys: Vec<ElectionKeyPair> = (1..=guardians)
        .into_par_iter()
        .map(|i| ElectionKeyPair::generate(&format!("guardian-{i}"), u64::from(i), quorum))
        .collect();
    let public_keys: Vec<ElectionPublicKey> = keys.iter().map(ElectionKeyPair::share).collect();
    for key in &public_keys {
        key.validate(quorum)
            .with_context(|| format!("announcement of {}", key.owner_id))?;
    }
    let received = keys
        .par_iter()
        .map(|recipient| {
            keys.iter()
                .map(|sender| {
                    let backup = ElectionPartialKeyBackup::generate(sender, &recipient.share());
                    backup
                        .verify(recipient, &sender.share())
                        .map_err(anyhow::Error::from)
                })
                .collect::<Result<Vec<_>>>()
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Ceremony {
        guardians: keys,
        public_keys,
        received,
    })
}

/// The context for the ceremony's joint key.
pub fn context(
    manifest: &Manifest,
    public_keys: &[ElectionPublicKey],
    quorum: u32,
) -> CiphertextElectionContext {
    let (key, commitment_hash) = joint_key(public_keys);
    CiphertextElectionContext::new(
        public_keys.len() as u32,
        quorum,
        key,
        commitment_hash,
        manifest.crypto_hash(),
    )
}
