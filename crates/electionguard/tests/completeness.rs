//! The record proves its completeness: the ballot box declares what it holds
//! (`ballot_box.json`), and removing, adding or copying a ballot fails a check that names
//! it. Records are the reference fixtures (`../shared/fixtures`), read with the crate's
//! own JSON functions.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use electionguard::ballot::{BallotBoxState, CiphertextBallot, EncryptionDevice, PlaintextBallot};
use electionguard::elgamal::EncryptionKey;
use electionguard::encrypt::Encryptor;
use electionguard::group::ElementModQ;
use electionguard::json::from_json;
use electionguard::record::{layout, BallotBox, DeviceChain, ElectionRecord};
use electionguard::verify::{
    verify_record, verify_record_with, verify_submission, BallotBoxPolicy, CheckResult,
    VerificationReport,
};
use serde::de::DeserializeOwned;

const PYTHON: &str = "electionguard-python-1.4";
const MITRE: &str = "electionguard-1.0-mitre-example";
const COMPLETENESS: &str = "ballot box completeness";
const COPIES: &str = "no two ballots carry the same contest ciphertexts";

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

fn parse<T: DeserializeOwned>(path: &Path) -> T {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    from_json(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn parse_optional<T: DeserializeOwned>(path: &Path) -> Option<T> {
    path.exists().then(|| parse(path))
}

fn parse_all<T: DeserializeOwned>(dir: &Path) -> Vec<T> {
    if !dir.is_dir() {
        return Vec::new();
    }
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths.iter().map(|p| parse(p)).collect()
}

/// A published record in the reference layout, as a reader of it would load it.
fn load(name: &str) -> ElectionRecord {
    let dir = fixture(name);
    ElectionRecord {
        constants: parse(&dir.join(layout::CONSTANTS)),
        manifest: parse(&dir.join(layout::MANIFEST)),
        context: parse(&dir.join(layout::CONTEXT)),
        devices: parse_all(&dir.join(layout::DEVICES_DIR)),
        guardians: parse_all(&dir.join(layout::GUARDIANS_DIR)),
        submitted_ballots: parse_all(&dir.join(layout::SUBMITTED_BALLOTS_DIR)),
        encrypted_tally: parse_optional(&dir.join(layout::ENCRYPTED_TALLY)),
        coefficients: parse_optional(&dir.join(layout::COEFFICIENTS)),
        tally: parse_optional(&dir.join(layout::TALLY)),
        spoiled_ballots: parse_all(&dir.join(layout::SPOILED_BALLOTS_DIR)),
        ballot_box: parse_optional(&dir.join(layout::BALLOT_BOX)),
    }
}

/// What an honest ballot box holding exactly these ballots declares: each device's chain
/// followed forward from the device hash.
fn declare(record: &ElectionRecord) -> BallotBox {
    let by_seed: HashMap<&ElementModQ, &CiphertextBallot> = record
        .submitted_ballots
        .iter()
        .map(|b| (&b.code_seed, b))
        .collect();
    let devices = record
        .devices
        .iter()
        .map(|device| {
            let mut ballots = 0;
            let mut last_code = None;
            let mut seed = device.hash();
            while let Some(ballot) = by_seed.get(&seed) {
                ballots += 1;
                last_code = Some(ballot.code.clone());
                seed = ballot.code.clone();
            }
            DeviceChain {
                device_id: device.device_id,
                ballots,
                last_code,
            }
        })
        .collect();
    let count = |state| {
        record
            .submitted_ballots
            .iter()
            .filter(|b| b.state == Some(state))
            .count() as u64
    };
    BallotBox {
        cast: count(BallotBoxState::Cast),
        spoiled: count(BallotBoxState::Spoiled),
        devices,
    }
}

/// The python fixture with the declaration its ballot box would have published.
fn declared_python() -> ElectionRecord {
    let mut record = load(PYTHON);
    record.ballot_box = Some(declare(&record));
    record
}

fn failed(report: &VerificationReport) -> Vec<&'static str> {
    report
        .checks
        .iter()
        .filter(|c| !c.passed())
        .map(|c| c.name)
        .collect()
}

fn check<'a>(report: &'a VerificationReport, name: &str) -> &'a CheckResult {
    report
        .checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check named '{name}'"))
}

/// The failures of the completeness check when the record is verified.
fn completeness_failures(record: &ElectionRecord) -> Vec<String> {
    check(&verify_record(record), COMPLETENESS).failures.clone()
}

/// Asserts that some failure contains every one of `parts`.
fn assert_failure(failures: &[String], parts: &[&str]) {
    assert!(
        failures
            .iter()
            .any(|f| parts.iter().all(|part| f.contains(part))),
        "no failure names {parts:?}; failures: {failures:#?}"
    );
}

fn ballot<'a>(record: &'a ElectionRecord, id: &str) -> &'a CiphertextBallot {
    record
        .submitted_ballots
        .iter()
        .find(|b| b.object_id == id)
        .unwrap_or_else(|| panic!("no ballot {id}"))
}

fn remove_ballot(record: &mut ElectionRecord, id: &str) -> CiphertextBallot {
    let at = record
        .submitted_ballots
        .iter()
        .position(|b| b.object_id == id)
        .unwrap_or_else(|| panic!("no ballot {id}"));
    record.submitted_ballots.remove(at)
}

#[test]
fn a_complete_declared_record_passes() {
    let record = declared_python();
    let declared = record.ballot_box.as_ref().unwrap();
    assert_eq!((declared.cast, declared.spoiled), (9, 3));
    assert_eq!(declared.devices[0].ballots, 12);
    let report = verify_record(&record);
    assert!(report.passed(), "{:?}", failed(&report));
    let completeness = check(&report, COMPLETENESS);
    assert!(completeness.checked > 0);
    assert!(completeness.notes.is_empty(), "{:?}", completeness.notes);
}

/// Chain gaps of the MITRE example: ballots encrypted but never submitted.
const MITRE_GAPS: [&str; 2] = ["9402450000000000911", "9402450000000001502"];

/// One verification per fixture and policy: the MITRE record takes seconds to verify.
#[test]
fn both_fixtures_pass_under_optional_and_fail_under_required() {
    for (name, gaps) in [(PYTHON, &[][..]), (MITRE, &MITRE_GAPS[..])] {
        let record = load(name);
        assert!(
            record.ballot_box.is_none(),
            "{name} publishes no ballot_box.json"
        );

        let optional = verify_record_with(&record, BallotBoxPolicy::Optional);
        assert!(optional.passed(), "{name}: {:?}", failed(&optional));
        let notes = &check(&optional, COMPLETENESS).notes;
        assert!(
            notes
                .iter()
                .any(|n| n.starts_with("not proven: ") && n.contains("ballot_box.json")),
            "{name}: {notes:?}"
        );
        for id in gaps {
            assert!(
                notes.iter().any(|n| n.starts_with("not proven: ")
                    && n.contains(id)
                    && n.contains("chain gap")),
                "{name} {id}: {notes:?}"
            );
        }
        assert_eq!(notes.len(), 1 + gaps.len(), "{name}: {notes:?}");
        let copies = check(&optional, COPIES);
        assert!(
            copies.checked >= record.submitted_ballots.len(),
            "{name}: {copies:?}"
        );

        let required = verify_record_with(&record, BallotBoxPolicy::Required);
        assert_eq!(failed(&required), [COMPLETENESS], "{name}");
        let failures = &check(&required, COMPLETENESS).failures;
        assert_eq!(failures.len(), 1, "{name}: {failures:?}");
        assert!(
            failures[0].contains("declares no ballot box")
                && failures[0].contains("ballot_box.json"),
            "{name}: {failures:?}"
        );
    }
}

#[test]
fn verify_record_requires_the_declaration() {
    let report = verify_record(&load(PYTHON));
    assert_eq!(failed(&report), [COMPLETENESS]);
    assert_failure(
        &check(&report, COMPLETENESS).failures,
        &["declares no ballot box"],
    );
}

#[test]
fn a_declaration_is_checked_under_optional_too() {
    let mut record = declared_python();
    remove_ballot(&mut record, "ballot-00005");
    let report = verify_record_with(&record, BallotBoxPolicy::Optional);
    let completeness = check(&report, COMPLETENESS);
    assert_failure(&completeness.failures, &["ballot-00006", "chain gap"]);
    assert_failure(
        &completeness.failures,
        &["record declares 9 cast ballots but holds 8"],
    );
    assert!(completeness.notes.is_empty(), "{:?}", completeness.notes);
}

#[test]
fn removing_the_last_ballot_of_a_chain_fails() {
    let mut record = declared_python();
    let removed = remove_ballot(&mut record, "ballot-00012");
    assert!(removed.is_cast());
    let failures = completeness_failures(&record);
    assert_failure(&failures, &["record declares 9 cast ballots but holds 8"]);
    assert_failure(
        &failures,
        &["device 1007", "chain breaks", &removed.code.to_hex()],
    );
}

#[test]
fn removing_a_middle_ballot_fails() {
    let mut record = declared_python();
    let removed = remove_ballot(&mut record, "ballot-00005");
    let failures = completeness_failures(&record);
    assert_failure(&failures, &["record declares 9 cast ballots but holds 8"]);
    assert_failure(
        &failures,
        &["device 1007", "chain breaks", &removed.code.to_hex()],
    );
    assert_failure(&failures, &["ballot-00006", "chain gap"]);
    assert_failure(&failures, &["ballot-00004", "no declared device's chain"]);
}

#[test]
fn removing_a_spoiled_ballot_fails() {
    let mut record = declared_python();
    let removed = remove_ballot(&mut record, "ballot-00007");
    assert!(removed.is_spoiled());
    record
        .spoiled_ballots
        .retain(|s| s.object_id != removed.object_id);
    let report = verify_record(&record);
    assert_eq!(failed(&report), [COMPLETENESS]);
    let failures = &check(&report, COMPLETENESS).failures;
    assert_failure(failures, &["record declares 3 spoiled ballots but holds 2"]);
    assert_failure(
        failures,
        &["device 1007", "chain breaks", &removed.code.to_hex()],
    );
    assert_failure(failures, &["ballot-00008", "chain gap"]);
}

#[test]
fn a_declared_device_that_is_not_published_fails() {
    let mut record = declared_python();
    record
        .ballot_box
        .as_mut()
        .unwrap()
        .devices
        .push(DeviceChain {
            device_id: 4242,
            ballots: 0,
            last_code: None,
        });
    let failures = completeness_failures(&record);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_failure(&failures, &["device 4242", "not published"]);
}

#[test]
fn a_published_device_that_is_not_declared_fails() {
    let mut record = declared_python();
    record.devices.push(EncryptionDevice {
        device_id: 4242,
        session_id: 1,
        launch_code: 7,
        location: "back room".into(),
    });
    let failures = completeness_failures(&record);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_failure(&failures, &["device 4242", "not declared"]);
}

#[test]
fn a_chain_longer_or_shorter_than_declared_fails() {
    for declared in [11, 13] {
        let mut record = declared_python();
        record.ballot_box.as_mut().unwrap().devices[0].ballots = declared;
        let failures = completeness_failures(&record);
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert_failure(
            &failures,
            &[
                "device 1007",
                &format!("chain holds 12 ballots, ballot_box.json declares {declared}"),
            ],
        );
    }
}

#[test]
fn a_ballot_on_no_declared_chain_fails() {
    let mut record = declared_python();
    let eleventh = ballot(&record, "ballot-00011").code.clone();
    let chain = &mut record.ballot_box.as_mut().unwrap().devices[0];
    chain.last_code = Some(eleventh);
    chain.ballots = 11;
    let failures = completeness_failures(&record);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_failure(
        &failures,
        &["ballot ballot-00012", "no declared device's chain"],
    );
}

#[test]
fn a_last_code_no_ballot_has_fails() {
    let mut record = declared_python();
    let unknown = ElementModQ::from_u64(12345).unwrap();
    record.ballot_box.as_mut().unwrap().devices[0].last_code = Some(unknown.clone());
    let failures = completeness_failures(&record);
    assert_failure(
        &failures,
        &["device 1007", "chain breaks", &unknown.to_hex()],
    );
    assert_failure(&failures, &["ballot-00001", "no declared device's chain"]);
}

#[test]
fn a_copied_ballot_under_another_id_fails() {
    let mut record = declared_python();
    let mut copy = ballot(&record, "ballot-00002").clone();
    copy.object_id = "ballot-copy".into();
    record.submitted_ballots.push(copy);
    let report = verify_record(&record);
    let failures = &check(&report, COPIES).failures;
    assert_failure(failures, &["ballot ballot-copy", "ballot ballot-00002"]);
    // It also continues ballot-00001's link, as ballot-00002 does.
    assert!(failed(&report).contains(&"ballot code chain"));
}

#[test]
fn a_copied_contest_fails() {
    let mut record = declared_python();
    let victim = ballot(&record, "ballot-00002").contests[0].clone();
    let copier = record
        .submitted_ballots
        .iter_mut()
        .find(|b| b.object_id == "ballot-00003")
        .unwrap();
    copier.contests[0] = victim.clone();
    let report = verify_record(&record);
    let failures = &check(&report, COPIES).failures;
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_failure(
        failures,
        &[
            "ballot ballot-00003",
            "ballot ballot-00002",
            &victim.object_id,
        ],
    );
}

fn private_ballot(id: &str) -> CiphertextBallot {
    parse(&fixture(PYTHON).join(format!(
        "private/ciphertext_ballots/ciphertext_ballot_{id}.json"
    )))
}

#[test]
fn carried_nonce_names_the_first_nonce() {
    let mut ballot = private_ballot("ballot-00002");
    assert_eq!(ballot.carried_nonce().as_deref(), Some("nonce"));
    ballot.nonce = None;
    assert_eq!(ballot.carried_nonce().as_deref(), Some("contests[0].nonce"));
    for contest in &mut ballot.contests {
        contest.nonce = None;
    }
    assert_eq!(
        ballot.carried_nonce().as_deref(),
        Some("contests[0].ballot_selections[0].nonce")
    );
    ballot.contests[0].ballot_selections[0].nonce = None;
    ballot.contests[0].ballot_selections[1].nonce = None;
    assert_eq!(
        ballot.carried_nonce().as_deref(),
        Some("contests[0].ballot_selections[2].nonce")
    );
    for selection in &mut ballot.contests[0].ballot_selections {
        selection.nonce = None;
    }
    assert_eq!(
        ballot.carried_nonce().as_deref(),
        Some("contests[1].ballot_selections[0].nonce")
    );
    assert_eq!(ballot.submit(BallotBoxState::Cast).carried_nonce(), None);
    assert_eq!(
        load(PYTHON).submitted_ballots[0].carried_nonce(),
        None,
        "published ballots carry no nonce"
    );
}

#[test]
fn fingerprints_ignore_object_ids_and_order_but_not_the_encryption() {
    let original = private_ballot("ballot-00002");
    let prints = original.contest_fingerprints();
    assert_eq!(prints.len(), original.contests.len());

    let mut renamed = original.clone();
    renamed.object_id = "another-ballot".into();
    for contest in &mut renamed.contests {
        contest.object_id = format!("{}-x", contest.object_id);
        for selection in &mut contest.ballot_selections {
            selection.object_id = format!("{}-x", selection.object_id);
        }
    }
    assert_eq!(renamed.contest_fingerprints(), prints);

    let mut permuted = original.clone();
    permuted.contests[0].ballot_selections.reverse();
    assert_eq!(permuted.contest_fingerprints(), prints);

    let mut changed = original.clone();
    changed.contests[0].ballot_selections[0].ciphertext.pad = original.contests[0]
        .ballot_selections[1]
        .ciphertext
        .pad
        .clone();
    let changed_prints = changed.contest_fingerprints();
    assert_ne!(changed_prints[0], prints[0]);
    assert_eq!(changed_prints[1..], prints[1..]);

    // The same votes encrypted again, with another nonce.
    let dir = fixture(PYTHON);
    let manifest = parse(&dir.join(layout::MANIFEST));
    let context = parse(&dir.join(layout::CONTEXT));
    let plaintext: PlaintextBallot =
        parse(&dir.join("private/plaintext_ballots/plaintext_ballot_ballot-00002.json"));
    let again = Encryptor::new(&manifest, &context)
        .encrypt(
            &plaintext,
            &original.code_seed,
            &original.nonce.as_ref().unwrap().add(&ElementModQ::one()),
            original.timestamp,
        )
        .unwrap();
    let again_prints = again.contest_fingerprints();
    assert_eq!(again_prints.len(), prints.len());
    for (ours, theirs) in again_prints.iter().zip(&prints) {
        assert_ne!(ours, theirs);
    }
}

#[test]
fn a_submission_must_carry_its_own_code() {
    let record = load(PYTHON);
    let key = EncryptionKey::new(&record.context.elgamal_public_key);
    let honest = ballot(&record, "ballot-00004").clone();
    verify_submission(&honest, &record.manifest, &record.context, &key).unwrap();

    let mut wrong = honest.clone();
    wrong.code = ballot(&record, "ballot-00005").code.clone();
    let error = verify_submission(&wrong, &record.manifest, &record.context, &key).unwrap_err();
    assert!(
        error.contains("ballot-00004") && error.contains("code"),
        "{error}"
    );

    let mut reseeded = honest;
    reseeded.code_seed = ElementModQ::from_u64(7).unwrap();
    let error = verify_submission(&reseeded, &record.manifest, &record.context, &key).unwrap_err();
    assert!(
        error.contains("ballot-00004") && error.contains("code"),
        "{error}"
    );
}
