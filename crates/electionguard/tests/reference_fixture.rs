//! Conformance with records produced by electionguard-python 1.4 (`../shared/fixtures`).

use std::path::{Path, PathBuf};

use electionguard::ballot::{CiphertextBallot, PlaintextBallot};
use electionguard::context::{
    crypto_base_hash, crypto_extended_base_hash, CiphertextElectionContext,
};
use electionguard::encrypt::Encryptor;
use electionguard::json::{from_json, to_reference_json};
use electionguard::manifest::Manifest;

fn fixture(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures")
        .join(name);
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

/// Compares two documents, printing only where they first differ.
fn assert_same_json(ours: &str, theirs: &str, what: &str) {
    if ours != theirs {
        let at = ours
            .bytes()
            .zip(theirs.bytes())
            .position(|(a, b)| a != b)
            .unwrap_or(ours.len().min(theirs.len()));
        let from = at.saturating_sub(120);
        panic!(
            "{what}: differs at byte {at}\nours:   …{}\ntheirs: …{}",
            &ours[from..(at + 40).min(ours.len())],
            &theirs[from..(at + 40).min(theirs.len())]
        );
    }
}

#[test]
fn constants_are_the_reference_constants() {
    let text = read(&fixture("electionguard-python-1.4").join("constants.json"));
    let expected = format!(
        r#"{{"large_prime": "{}", "small_prime": "{}", "cofactor": "{}", "generator": "{}"}}"#,
        electionguard::group::ElementModP::p_hex(),
        electionguard::group::ElementModQ::q_hex(),
        electionguard::group::ElementModP::cofactor_hex(),
        electionguard::group::ElementModP::generator().to_hex()
    );
    assert_eq!(expected, text);
}

#[test]
fn manifest_and_context_hashes_match_the_reference() {
    for name in [
        "electionguard-python-1.4",
        "electionguard-1.0-mitre-example",
    ] {
        let dir = fixture(name);
        let manifest: Manifest = from_json(&read(&dir.join("manifest.json"))).unwrap();
        let context: CiphertextElectionContext =
            from_json(&read(&dir.join("context.json"))).unwrap();
        manifest.validate().unwrap();
        assert_eq!(
            manifest.crypto_hash(),
            context.manifest_hash,
            "{name}: manifest hash"
        );
        let base = crypto_base_hash(
            context.number_of_guardians,
            context.quorum,
            &context.manifest_hash,
        );
        assert_eq!(base, context.crypto_base_hash, "{name}: base hash");
        assert_eq!(
            crypto_extended_base_hash(&base, &context.commitment_hash),
            context.crypto_extended_base_hash
        );
    }
}

#[test]
fn encryption_with_the_same_nonce_reproduces_the_reference_ballots() {
    let dir = fixture("electionguard-python-1.4");
    let manifest: Manifest = from_json(&read(&dir.join("manifest.json"))).unwrap();
    let context: CiphertextElectionContext = from_json(&read(&dir.join("context.json"))).unwrap();
    let encryptor = Encryptor::new(&manifest, &context);
    let mut count = 0;
    for entry in std::fs::read_dir(dir.join("private/ciphertext_ballots")).unwrap() {
        let path = entry.unwrap().path();
        let text = read(&path);
        let expected: CiphertextBallot = from_json(&text).unwrap();
        let plaintext_path = dir.join(format!(
            "private/plaintext_ballots/plaintext_ballot_{}.json",
            expected.object_id
        ));
        let plaintext: PlaintextBallot = from_json(&read(&plaintext_path)).unwrap();
        let ours = encryptor
            .encrypt(
                &plaintext,
                &expected.code_seed,
                expected.nonce.as_ref().unwrap(),
                expected.timestamp,
            )
            .unwrap();
        assert_same_json(&to_reference_json(&ours), &text, &expected.object_id);
        count += 1;
    }
    assert_eq!(count, 12);
}
