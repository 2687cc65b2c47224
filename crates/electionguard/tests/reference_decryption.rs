//! Decryption against the record electionguard-python 1.4 produced (`../shared/fixtures`):
//! its published shares combine to its tally, shares recomputed from its guardians' private
//! records decrypt to the ground truth (guardian-3 missing, as in the record), and every
//! share, ballot and private key file round-trips to identical bytes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use electionguard::ballot::{CiphertextBallot, PlaintextBallot};
use electionguard::challenge::{open_challenged_ballot, verify_challenge};
use electionguard::context::CiphertextElectionContext;
use electionguard::decrypt::{
    ballot_ciphertexts, combine_shares, compute_compensated_share, compute_decryption_share,
    lagrange_coefficients, reconstruct_share, tally_ciphertexts, CompensatedDecryptionShare,
    ContestCiphertexts, DecryptionShare, LagrangeCoefficientsRecord, PlaintextTally,
};
use electionguard::group::ElementModP;
use electionguard::json::{from_json, to_reference_json};
use electionguard::key_ceremony::{
    ElectionKeyPair, ElectionPartialKeyBackup, ElectionPublicKey, GuardianRecord,
};
use electionguard::manifest::Manifest;
use electionguard::tally::CiphertextTally;
use indexmap::IndexMap;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Counts per contest and selection.
type Counts = BTreeMap<String, BTreeMap<String, u64>>;

/// `expected_tally.json`: what the reference's election script knew the voters chose.
#[derive(Deserialize)]
struct GroundTruth {
    contests: Counts,
    spoiled_ballot_selections: BTreeMap<String, Counts>,
    available_guardians: Vec<String>,
    missing_guardians: Vec<String>,
}

fn fixture_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/electionguard-python-1.4");
    assert!(
        dir.is_dir(),
        "fixture {} is missing: the shared folder must sit beside the project",
        dir.display()
    );
    dir
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn parse<T: DeserializeOwned>(path: &Path) -> T {
    from_json(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The files of a fixture folder, sorted so that failures are reproducible.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    files.sort();
    files
}

/// The record's public parts and ground truth, read once per test.
struct Fixture {
    dir: PathBuf,
    manifest: Manifest,
    context: CiphertextElectionContext,
    truth: GroundTruth,
    public_keys: IndexMap<String, ElectionPublicKey>,
}

impl Fixture {
    fn load() -> Fixture {
        let dir = fixture_dir();
        let public_keys = files_in(&dir.join("guardians"))
            .iter()
            .map(|path| ElectionPublicKey::from(&parse::<GuardianRecord>(path)))
            .map(|key| (key.owner_id.clone(), key))
            .collect();
        Fixture {
            manifest: parse(&dir.join("manifest.json")),
            context: parse(&dir.join("context.json")),
            truth: serde_json::from_str(&read(&dir.join("expected_tally.json")))
                .expect("expected_tally.json"),
            public_keys,
            dir,
        }
    }

    fn public_key(&self, guardian_id: &str) -> &ElectionPublicKey {
        self.public_keys
            .get(guardian_id)
            .unwrap_or_else(|| panic!("no guardian record for {guardian_id}"))
    }

    fn available_keys(&self) -> Vec<ElectionPublicKey> {
        self.truth
            .available_guardians
            .iter()
            .map(|id| self.public_key(id).clone())
            .collect()
    }

    fn submitted_ballot(&self, ballot_id: &str) -> CiphertextBallot {
        parse(&self.dir.join(format!(
            "submitted_ballots/submitted_ballot_{ballot_id}.json"
        )))
    }

    fn private_ballot(&self, ballot_id: &str) -> CiphertextBallot {
        parse(&self.dir.join(format!(
            "private/ciphertext_ballots/ciphertext_ballot_{ballot_id}.json"
        )))
    }

    /// The encrypted tally first, then each spoiled ballot: everything the guardians decrypt.
    fn targets(&self) -> Vec<Target> {
        let tally: CiphertextTally = parse(&self.dir.join("encrypted_tally.json"));
        let mut targets = vec![Target {
            object_id: tally.object_id.clone(),
            contests: tally_ciphertexts(&tally),
            shares_dir: self.dir.join("decryption_shares/tally"),
            share_prefix: "tally_share",
            published: self.dir.join("tally.json"),
            expected: self.truth.contests.clone(),
        }];
        for (ballot_id, expected) in &self.truth.spoiled_ballot_selections {
            targets.push(Target {
                object_id: ballot_id.clone(),
                contests: ballot_ciphertexts(&self.submitted_ballot(ballot_id)),
                shares_dir: self
                    .dir
                    .join("decryption_shares/spoiled_ballots")
                    .join(ballot_id),
                share_prefix: "ballot_share",
                published: self
                    .dir
                    .join(format!("spoiled_ballots/spoiled_ballot_{ballot_id}.json")),
                expected: expected.clone(),
            });
        }
        targets
    }
}

/// One thing the guardians decrypt (the tally or a spoiled ballot) and where its record lies.
struct Target {
    object_id: String,
    contests: Vec<ContestCiphertexts>,
    shares_dir: PathBuf,
    share_prefix: &'static str,
    published: PathBuf,
    expected: Counts,
}

impl Target {
    fn published_share(&self, guardian_id: &str) -> DecryptionShare {
        parse(
            &self
                .shares_dir
                .join(format!("{}_{guardian_id}.json", self.share_prefix)),
        )
    }

    fn published_compensated_share(
        &self,
        available_id: &str,
        missing_id: &str,
    ) -> CompensatedDecryptionShare {
        parse(
            &self
                .shares_dir
                .join(format!("compensated_{available_id}_for_{missing_id}.json")),
        )
    }
}

fn counts(tally: &PlaintextTally) -> Counts {
    tally
        .contests
        .values()
        .map(|c| {
            (
                c.object_id.clone(),
                c.selections
                    .values()
                    .map(|s| (s.object_id.clone(), s.tally))
                    .collect(),
            )
        })
        .collect()
}

/// The share values M of every selection, in order: they are deterministic (α^s), unlike the proofs.
fn decryption_share_values(share: &DecryptionShare) -> Vec<ElementModP> {
    share
        .contests
        .values()
        .flat_map(|c| c.selections.values().map(|s| s.share.clone()))
        .collect()
}

fn compensated_share_values(share: &CompensatedDecryptionShare) -> Vec<ElementModP> {
    share
        .contests
        .values()
        .flat_map(|c| c.selections.values().map(|s| s.share.clone()))
        .collect()
}

#[test]
fn lagrange_coefficients_match_the_record() {
    let fixture = Fixture::load();
    let published: LagrangeCoefficientsRecord = parse(&fixture.dir.join("coefficients.json"));
    assert_eq!(
        lagrange_coefficients(&fixture.available_keys()),
        published.coefficients
    );
}

#[test]
fn published_shares_combine_to_the_published_tally_and_spoiled_ballots() {
    let fixture = Fixture::load();
    let coefficients = lagrange_coefficients(&fixture.available_keys());
    for target in fixture.targets() {
        // The record orders shares as the reference combined them: available guardians, then missing.
        let mut shares: Vec<DecryptionShare> = fixture
            .truth
            .available_guardians
            .iter()
            .map(|id| target.published_share(id))
            .collect();
        for missing_id in &fixture.truth.missing_guardians {
            let parts: Vec<CompensatedDecryptionShare> = fixture
                .truth
                .available_guardians
                .iter()
                .map(|available_id| target.published_compensated_share(available_id, missing_id))
                .collect();
            let rebuilt = reconstruct_share(
                fixture.public_key(missing_id),
                &target.contests,
                &parts,
                &coefficients,
            )
            .unwrap();
            assert_eq!(
                rebuilt,
                target.published_share(missing_id),
                "{}: rebuilt share of {missing_id}",
                target.object_id
            );
            shares.push(rebuilt);
        }
        let tally = combine_shares(
            &target.object_id,
            &target.contests,
            &shares,
            &fixture.manifest,
        )
        .unwrap();
        assert_eq!(
            counts(&tally),
            target.expected,
            "{}: counts",
            target.object_id
        );
        let published: PlaintextTally = parse(&target.published);
        assert_eq!(tally, published, "{}: decrypted record", target.object_id);
    }
}

/// A guardian's private record (`private/private_guardian_<id>.json`), as JSON.
struct PrivateRecord(Value);

impl PrivateRecord {
    fn load(fixture: &Fixture, guardian_id: &str) -> PrivateRecord {
        let path = fixture
            .dir
            .join(format!("private/private_guardian_{guardian_id}.json"));
        PrivateRecord(
            serde_json::from_str(&read(&path))
                .unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        )
    }

    fn field(&self, name: &str) -> &Value {
        self.0
            .get(name)
            .unwrap_or_else(|| panic!("private record has no {name}"))
    }

    fn election_keys(&self) -> ElectionKeyPair {
        serde_json::from_value(self.field("election_keys").clone())
            .expect("election_keys is an ElectionKeyPair")
    }

    /// The backup that `sender_id` sent to this guardian during the key ceremony.
    fn backup_received_from(&self, sender_id: &str) -> ElectionPartialKeyBackup {
        let backup = self
            .field("guardian_election_partial_key_backups")
            .get(sender_id);
        let backup = backup.unwrap_or_else(|| panic!("no backup from {sender_id}"));
        serde_json::from_value(backup.clone()).expect("a backup is an ElectionPartialKeyBackup")
    }
}

#[test]
fn shares_recomputed_from_the_private_records_decrypt_to_the_ground_truth() {
    let fixture = Fixture::load();
    let qbar = &fixture.context.crypto_extended_base_hash;
    let available: Vec<(ElectionKeyPair, PrivateRecord)> = fixture
        .truth
        .available_guardians
        .iter()
        .map(|id| {
            let record = PrivateRecord::load(&fixture, id);
            (record.election_keys(), record)
        })
        .collect();
    let coefficients = lagrange_coefficients(&fixture.available_keys());
    for target in fixture.targets() {
        let mut shares = Vec::new();
        for (keys, _) in &available {
            let share = compute_decryption_share(&target.object_id, keys, &target.contests, qbar);
            let published = target.published_share(&keys.owner_id);
            assert_eq!(
                decryption_share_values(&share),
                decryption_share_values(&published),
                "{}",
                target.object_id
            );
            shares.push(share);
        }
        for missing_id in &fixture.truth.missing_guardians {
            let missing = fixture.public_key(missing_id);
            let mut parts = Vec::new();
            for (keys, record) in &available {
                let coordinate = record
                    .backup_received_from(missing_id)
                    .verify(keys, missing)
                    .unwrap();
                let available_key = fixture.public_key(&keys.owner_id);
                let part = compute_compensated_share(
                    &target.object_id,
                    &coordinate,
                    available_key,
                    missing,
                    &target.contests,
                    qbar,
                );
                let published = target.published_compensated_share(&keys.owner_id, missing_id);
                assert_eq!(
                    compensated_share_values(&part),
                    compensated_share_values(&published),
                    "{}",
                    target.object_id
                );
                parts.push(part);
            }
            shares
                .push(reconstruct_share(missing, &target.contests, &parts, &coefficients).unwrap());
        }
        let tally = combine_shares(
            &target.object_id,
            &target.contests,
            &shares,
            &fixture.manifest,
        )
        .unwrap();
        assert_eq!(
            counts(&tally),
            target.expected,
            "{}: counts",
            target.object_id
        );
    }
}

#[test]
fn challenged_ballots_open_to_the_voters_choices() {
    let fixture = Fixture::load();
    for (ballot_id, expected) in &fixture.truth.spoiled_ballot_selections {
        let ballot = fixture.private_ballot(ballot_id);
        let opened = open_challenged_ballot(&ballot, &fixture.manifest, &fixture.context).unwrap();
        let opened_counts: Counts = opened
            .contests
            .iter()
            .map(|c| {
                (
                    c.object_id.clone(),
                    c.ballot_selections
                        .iter()
                        .map(|s| (s.object_id.clone(), s.vote))
                        .collect(),
                )
            })
            .collect();
        assert_eq!(&opened_counts, expected, "{ballot_id}");
        verify_challenge(&ballot, &opened, &fixture.manifest, &fixture.context).unwrap();
    }
}

/// Parses the file as `T` and checks that writing it back gives the same bytes.
fn assert_round_trips<T: DeserializeOwned + Serialize>(path: &Path) {
    let text = read(path);
    let value: T = parse(path);
    assert!(
        to_reference_json(&value) == text,
        "{} does not round-trip",
        path.display()
    );
}

/// Parses a sub-document of a JSON file as `T` and checks that it writes back the same.
fn assert_value_round_trips<T: DeserializeOwned + Serialize>(value: &Value, what: &str) {
    let typed: T = serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        to_reference_json(&typed) == to_reference_json(value),
        "{what} does not round-trip"
    );
}

#[test]
fn decryption_shares_round_trip() {
    let fixture = Fixture::load();
    let shares_dir = fixture.dir.join("decryption_shares");
    let mut dirs = vec![shares_dir.join("tally")];
    dirs.extend(files_in(&shares_dir.join("spoiled_ballots")));
    let mut count = 0;
    for path in dirs.iter().flat_map(|dir| files_in(dir)) {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.starts_with("compensated_") {
            assert_round_trips::<CompensatedDecryptionShare>(&path);
        } else {
            assert_round_trips::<DecryptionShare>(&path);
        }
        count += 1;
    }
    // 4 guardians' shares and 3 compensated shares, for the tally and 3 spoiled ballots.
    assert_eq!(count, 4 * 7);
}

#[test]
fn private_ballots_round_trip() {
    let dir = fixture_dir().join("private");
    let ciphertexts = files_in(&dir.join("ciphertext_ballots"));
    let plaintexts = files_in(&dir.join("plaintext_ballots"));
    assert_eq!((ciphertexts.len(), plaintexts.len()), (12, 12));
    ciphertexts
        .iter()
        .for_each(|path| assert_round_trips::<CiphertextBallot>(path));
    plaintexts
        .iter()
        .for_each(|path| assert_round_trips::<PlaintextBallot>(path));
}

#[test]
fn private_guardian_keys_and_backups_round_trip() {
    let fixture = Fixture::load();
    for guardian_id in fixture.public_keys.keys() {
        let record = PrivateRecord::load(&fixture, guardian_id);
        assert_value_round_trips::<ElectionKeyPair>(
            record.field("election_keys"),
            &format!("{guardian_id} election_keys"),
        );
        for field in ["backups_to_share", "guardian_election_partial_key_backups"] {
            let backups = record
                .field(field)
                .as_object()
                .unwrap_or_else(|| panic!("{field} is not an object"));
            for (other_id, backup) in backups {
                assert_value_round_trips::<ElectionPartialKeyBackup>(
                    backup,
                    &format!("{guardian_id} {field} {other_id}"),
                );
            }
        }
        let public_keys = record
            .field("guardian_election_public_keys")
            .as_object()
            .expect("public keys by guardian");
        for (other_id, key) in public_keys {
            assert_value_round_trips::<ElectionPublicKey>(
                key,
                &format!("{guardian_id} public key of {other_id}"),
            );
        }
    }
}
