//! Plaintext and encrypted ballots, their crypto hashes and ballot codes (tracking codes).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::elgamal::{ElGamalCiphertext, HashedElGamalCiphertext};
use crate::group::ElementModQ;
use crate::hash;
use crate::proof::{ConstantChaumPedersenProof, DisjunctiveChaumPedersenProof};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaintextBallotSelection {
    pub object_id: String,
    pub vote: u64,
    pub is_placeholder_selection: bool,
    pub write_in: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaintextBallotContest {
    pub object_id: String,
    pub ballot_selections: Vec<PlaintextBallotSelection>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaintextBallot {
    pub object_id: String,
    pub style_id: String,
    pub contests: Vec<PlaintextBallotContest>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CiphertextBallotSelection {
    pub object_id: String,
    pub sequence_order: u64,
    pub description_hash: ElementModQ,
    pub ciphertext: ElGamalCiphertext,
    pub crypto_hash: ElementModQ,
    pub is_placeholder_selection: bool,
    pub nonce: Option<ElementModQ>,
    pub proof: Option<DisjunctiveChaumPedersenProof>,
}

impl CiphertextBallotSelection {
    /// H(object id, description hash, H(α, β)).
    pub fn compute_crypto_hash(
        object_id: &str,
        description_hash: &ElementModQ,
        ciphertext: &ElGamalCiphertext,
    ) -> ElementModQ {
        hash!(object_id, description_hash, ciphertext.crypto_hash())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CiphertextBallotContest {
    pub object_id: String,
    pub sequence_order: u64,
    pub description_hash: ElementModQ,
    pub ballot_selections: Vec<CiphertextBallotSelection>,
    pub ciphertext_accumulation: ElGamalCiphertext,
    pub crypto_hash: ElementModQ,
    pub nonce: Option<ElementModQ>,
    pub proof: Option<ConstantChaumPedersenProof>,
    pub extended_data: Option<HashedElGamalCiphertext>,
}

impl CiphertextBallotContest {
    /// H(object id, description hash, selection hashes in sequence order).
    pub fn compute_crypto_hash(
        object_id: &str,
        description_hash: &ElementModQ,
        selections: &[CiphertextBallotSelection],
    ) -> ElementModQ {
        let mut sorted: Vec<&CiphertextBallotSelection> = selections.iter().collect();
        sorted.sort_by_key(|s| s.sequence_order);
        let hashes: Vec<&ElementModQ> = sorted.iter().map(|s| &s.crypto_hash).collect();
        let mut items: Vec<&dyn hash::HashElem> = vec![&object_id, description_hash];
        items.extend(hashes.iter().map(|h| *h as &dyn hash::HashElem));
        hash::hash_elems(&items)
    }

    /// The product of the selections' ciphertexts.
    pub fn accumulate(selections: &[CiphertextBallotSelection]) -> ElGamalCiphertext {
        selections
            .iter()
            .fold(ElGamalCiphertext::identity(), |acc, s| {
                acc.add(&s.ciphertext)
            })
    }
}

/// What happened to a ballot in the ballot box: written as the reference's integers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BallotBoxState {
    Cast,
    Spoiled,
    Unknown,
}

impl BallotBoxState {
    fn code(self) -> u32 {
        match self {
            BallotBoxState::Cast => 1,
            BallotBoxState::Spoiled => 2,
            BallotBoxState::Unknown => 999,
        }
    }
}

impl Serialize for BallotBoxState {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.code())
    }
}

impl<'de> Deserialize<'de> for BallotBoxState {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match u32::deserialize(d)? {
            1 => Ok(BallotBoxState::Cast),
            2 => Ok(BallotBoxState::Spoiled),
            999 => Ok(BallotBoxState::Unknown),
            other => Err(serde::de::Error::custom(format!(
                "unknown ballot state {other} (1 cast, 2 spoiled, 999 unknown)"
            ))),
        }
    }
}

/// An encrypted ballot. With `state` it is the reference's `SubmittedBallot`, without it a
/// `CiphertextBallot` (which may still carry its nonces, for the voter's own use).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CiphertextBallot {
    pub object_id: String,
    pub style_id: String,
    pub manifest_hash: ElementModQ,
    pub code_seed: ElementModQ,
    pub contests: Vec<CiphertextBallotContest>,
    pub code: ElementModQ,
    pub timestamp: i64,
    pub crypto_hash: ElementModQ,
    pub nonce: Option<ElementModQ>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<BallotBoxState>,
}

impl CiphertextBallot {
    /// H(ballot id, manifest hash, contest hashes in sequence order).
    pub fn compute_crypto_hash(
        object_id: &str,
        manifest_hash: &ElementModQ,
        contests: &[CiphertextBallotContest],
    ) -> ElementModQ {
        let mut sorted: Vec<&CiphertextBallotContest> = contests.iter().collect();
        sorted.sort_by_key(|c| c.sequence_order);
        let mut items: Vec<&dyn hash::HashElem> = vec![&object_id, manifest_hash];
        items.extend(sorted.iter().map(|c| &c.crypto_hash as &dyn hash::HashElem));
        hash::hash_elems(&items)
    }

    /// The ballot code (tracking code): H(previous code or device hash, timestamp, ballot hash).
    pub fn compute_code(
        code_seed: &ElementModQ,
        timestamp: i64,
        crypto_hash: &ElementModQ,
    ) -> ElementModQ {
        hash!(code_seed, timestamp, crypto_hash)
    }

    /// The ballot as it is submitted: nonces removed, state set.
    pub fn submit(&self, state: BallotBoxState) -> CiphertextBallot {
        let mut ballot = self.clone();
        ballot.nonce = None;
        ballot.state = Some(state);
        for contest in &mut ballot.contests {
            contest.nonce = None;
            for selection in &mut contest.ballot_selections {
                selection.nonce = None;
            }
        }
        ballot
    }

    /// The path of the first nonce the ballot still carries (`nonce`,
    /// `contests[0].nonce`, `contests[0].ballot_selections[2].nonce`), `None` if it
    /// carries none. A submitted ballot must carry none: a nonce opens its ciphertexts.
    pub fn carried_nonce(&self) -> Option<String> {
        if self.nonce.is_some() {
            return Some("nonce".into());
        }
        for (i, contest) in self.contests.iter().enumerate() {
            if contest.nonce.is_some() {
                return Some(format!("contests[{i}].nonce"));
            }
            if let Some(j) = contest
                .ballot_selections
                .iter()
                .position(|s| s.nonce.is_some())
            {
                return Some(format!("contests[{i}].ballot_selections[{j}].nonce"));
            }
        }
        None
    }

    /// Per contest, in the ballot's order: SHA-256 over the contest's selection
    /// ciphertexts (pad and data of every selection, placeholders included), so that two
    /// ballots carrying the same contest are recognised whatever their object ids.
    ///
    /// The selections enter in a canonical order (sorted by their own digest), not in
    /// their listed order: a copier who permutes a victim's selection ciphertexts gets a
    /// contest whose proofs still verify (each disjunctive proof travels with its
    /// ciphertext, the constant proof covers their product), so a permutation is a copy.
    ///
    /// Whole contests suffice: copying some of a contest's selections without their
    /// siblings changes the contest's accumulation, and its constant Chaum-Pedersen proof
    /// then needs the sum of all its selections' nonces, which the copier does not know
    /// for the victim's. Re-randomising a copied ciphertext likewise needs its nonce to
    /// prove it again.
    pub fn contest_fingerprints(&self) -> Vec<[u8; 32]> {
        self.contests
            .iter()
            .map(|contest| {
                let mut selections: Vec<[u8; 32]> = contest
                    .ballot_selections
                    .iter()
                    .map(|s| {
                        let mut h = Sha256::new();
                        for element in [&s.ciphertext.pad, &s.ciphertext.data] {
                            let bytes = element.to_bytes_be();
                            h.update((bytes.len() as u64).to_be_bytes());
                            h.update(&bytes);
                        }
                        h.finalize().into()
                    })
                    .collect();
                selections.sort_unstable();
                let mut h = Sha256::new();
                h.update((selections.len() as u64).to_be_bytes());
                for digest in &selections {
                    h.update(digest);
                }
                h.finalize().into()
            })
            .collect()
    }

    pub fn is_cast(&self) -> bool {
        self.state == Some(BallotBoxState::Cast)
    }

    pub fn is_spoiled(&self) -> bool {
        self.state == Some(BallotBoxState::Spoiled)
    }
}

/// The encryption device whose hash seeds the first ballot code of a session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptionDevice {
    pub device_id: u64,
    pub session_id: u64,
    pub launch_code: u64,
    pub location: String,
}

impl EncryptionDevice {
    pub fn hash(&self) -> ElementModQ {
        hash!(
            self.device_id,
            self.session_id,
            self.launch_code,
            self.location
        )
    }
}
