//! The verifier over real records: both reference fixtures pass, a record we produce
//! passes, and every kind of tampering is caught by the check that names it.

use std::path::{Path, PathBuf};

use amarvote::record_io::{read_record, write_record};
use electionguard::group::{ElementModP, ElementModQ};
use electionguard::record::ElectionRecord;
use electionguard::verify::{verify_record_with, BallotBoxPolicy, VerificationReport};

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

/// The reference fixtures declare no ballot box (the reference library publishes none):
/// they are verified as foreign records, completeness not proven.
fn verify_foreign(record: &ElectionRecord) -> VerificationReport {
    verify_record_with(record, BallotBoxPolicy::Optional)
}

fn reference() -> ElectionRecord {
    read_record(&fixture("electionguard-python-1.4")).unwrap()
}

/// The names of the checks that failed.
fn failed(report: &VerificationReport) -> Vec<&'static str> {
    report
        .checks
        .iter()
        .filter(|c| !c.passed())
        .map(|c| c.name)
        .collect()
}

fn assert_only_fails(record: &ElectionRecord, check: &str) {
    let report = verify_foreign(record);
    let failed = failed(&report);
    assert!(!failed.is_empty(), "tampering was not detected");
    assert!(
        failed.iter().all(|f| f.contains(check)),
        "expected only '{check}' to fail, got {failed:?}"
    );
}

/// Changes the last hex digit of a P element (staying below p).
fn bump_p(x: &ElementModP) -> ElementModP {
    let mut hex = x.to_hex();
    let last = hex.pop().unwrap();
    hex.push(if last == '0' { '1' } else { '0' });
    ElementModP::from_hex(&hex).unwrap()
}

fn bump_q(x: &ElementModQ) -> ElementModQ {
    x.add(&ElementModQ::one())
}

#[test]
fn both_reference_fixtures_verify() {
    for name in [
        "electionguard-python-1.4",
        "electionguard-1.0-mitre-example",
    ] {
        let report = verify_foreign(&read_record(&fixture(name)).unwrap());
        assert!(report.passed(), "{name}: {:?}", failed(&report));
    }
}

/// `amarvote verify` demands a ballot-box declaration unless told the record is foreign.
#[test]
fn the_command_proves_completeness_unless_the_record_is_foreign() {
    let dir = fixture("electionguard-python-1.4");
    let run = |foreign: bool| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_amarvote"));
        command.arg("verify").arg(&dir);
        if foreign {
            command.arg("--foreign");
        }
        command.output().unwrap()
    };
    let strict = run(false);
    let printed = String::from_utf8_lossy(&strict.stdout);
    assert!(!strict.status.success(), "{printed}");
    assert!(
        printed.contains("[FAIL] ballot box completeness"),
        "{printed}"
    );
    let foreign = run(true);
    let printed = String::from_utf8_lossy(&foreign.stdout);
    assert!(foreign.status.success(), "{printed}");
    assert!(printed.contains("not proven"), "{printed}");
}

#[test]
fn a_changed_selection_ciphertext_is_caught() {
    let mut record = reference();
    let selection = &mut record.submitted_ballots[1].contests[0].ballot_selections[0];
    selection.ciphertext.pad = bump_p(&selection.ciphertext.pad);
    let report = verify_foreign(&record);
    // The ballot is cast, so the encrypted tally no longer matches either.
    assert_eq!(
        failed(&report),
        [
            "ballot hashes, selection and contest proofs",
            "encrypted tally is the product of the cast ballots"
        ]
    );
}

#[test]
fn a_changed_proof_response_is_caught() {
    let mut record = reference();
    let proof = record.submitted_ballots[2].contests[1].ballot_selections[1]
        .proof
        .as_mut()
        .unwrap();
    proof.proof_one_response = bump_q(&proof.proof_one_response);
    assert_only_fails(&record, "ballot hashes");
}

#[test]
fn a_changed_tally_share_is_caught() {
    let mut record = reference();
    let tally = record.tally.as_mut().unwrap();
    let selection = tally.contests[0].selections.get_index_mut(0).unwrap().1;
    selection.shares[0].share = bump_p(&selection.shares[0].share);
    assert_only_fails(&record, "tally decryption shares");
}

#[test]
fn a_changed_commitment_is_caught() {
    let mut record = reference();
    let guardian = &mut record.guardians[1];
    guardian.election_commitments[1] = bump_p(&guardian.election_commitments[1]);
    let report = verify_foreign(&record);
    assert!(
        failed(&report).contains(&"guardian public keys and Schnorr proofs"),
        "{:?}",
        failed(&report)
    );
}

#[test]
fn a_changed_encrypted_tally_is_caught() {
    let mut record = reference();
    let tally = record.encrypted_tally.as_mut().unwrap();
    let selection = tally.contests[0].selections.get_index_mut(1).unwrap().1;
    selection.ciphertext.data = bump_p(&selection.ciphertext.data);
    let report = verify_foreign(&record);
    assert!(
        failed(&report).contains(&"encrypted tally is the product of the cast ballots"),
        "{:?}",
        failed(&report)
    );
}

#[test]
fn swapped_contests_between_ballots_are_caught() {
    let mut record = reference();
    let first = record.submitted_ballots[1].contests[0].clone();
    record.submitted_ballots[1].contests[0] = record.submitted_ballots[2].contests[0].clone();
    record.submitted_ballots[2].contests[0] = first;
    let report = verify_foreign(&record);
    assert!(
        failed(&report).contains(&"ballot hashes, selection and contest proofs"),
        "{:?}",
        failed(&report)
    );
}

#[test]
fn a_dropped_ballot_is_caught() {
    let mut record = reference();
    let index = record
        .submitted_ballots
        .iter()
        .position(|b| b.is_cast())
        .unwrap();
    record.submitted_ballots.remove(index);
    let report = verify_foreign(&record);
    assert!(
        failed(&report).contains(&"encrypted tally is the product of the cast ballots"),
        "{:?}",
        failed(&report)
    );
}

#[test]
fn records_round_trip_to_identical_files() {
    let dir = tempfile::tempdir().unwrap();
    let source = fixture("electionguard-python-1.4");
    write_record(dir.path(), &reference()).unwrap();
    let mut compared = 0;
    for entry in walk(dir.path()) {
        let relative = entry.strip_prefix(dir.path()).unwrap();
        let ours = std::fs::read_to_string(&entry).unwrap();
        let theirs = std::fs::read_to_string(source.join(relative)).unwrap();
        assert!(
            ours == theirs,
            "{} differs after a round trip",
            relative.display()
        );
        compared += 1;
    }
    assert_eq!(compared, 1 + 1 + 1 + 1 + 4 + 12 + 1 + 1 + 1 + 3);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path))
        } else {
            out.push(path)
        }
    }
    out
}

/// A share whose parts rebuild it (its guardian was missing) in the first selection of a
/// plaintext: its index and the id of its first part's guardian.
fn rebuilt_share(plaintext: &electionguard::decrypt::PlaintextTally) -> (usize, String) {
    let selection = plaintext.contests[0].selections.get_index(0).unwrap().1;
    let at = selection
        .shares
        .iter()
        .position(|s| s.recovered_parts.is_some())
        .expect("the reference record has a missing guardian");
    let parts = selection.shares[at].recovered_parts.as_ref().unwrap();
    (at, parts.keys().next().unwrap().clone())
}

/// Decryptions are checked in batches; whatever one tampering breaks, the batch fails and
/// the check names that one selection and what is wrong with it, and nothing else.
#[test]
fn each_tampered_decryption_is_named_exactly_despite_batching() {
    type Tamper = fn(&mut electionguard::decrypt::PlaintextTallySelection, usize, &str);
    let cases: [(&str, Tamper, &str); 6] = [
        (
            "a part's proof response",
            |s, at, part| {
                let proof = &mut s.shares[at].recovered_parts.as_mut().unwrap()[part].proof;
                proof.response = bump_q(&proof.response);
            },
            "compensated share of",
        ),
        (
            "a part's share",
            |s, at, part| {
                let part = &mut s.shares[at].recovered_parts.as_mut().unwrap()[part];
                part.share = bump_p(&part.share);
            },
            "compensated share of",
        ),
        (
            "a rebuilt share",
            |s, at, _| {
                s.shares[at].share = bump_p(&s.shares[at].share);
            },
            "is not Π M_ℓ^w_ℓ of its parts",
        ),
        (
            "a direct share's proof commitment, outside the group",
            |s, at, _| {
                let direct = if at == 0 { 1 } else { 0 };
                let proof = s.shares[direct].proof.as_mut().unwrap();
                proof.pad = proof.pad.mul(&order_two());
            },
            "not in the group",
        ),
        (
            "the count, with its value",
            |s, _, _| {
                s.tally += 1;
                s.value = electionguard::group::g_pow_p(&ElementModQ::from_u64(s.tally).unwrap());
            },
            "value is not β / Π M_i",
        ),
        (
            "a recovery key",
            |s, at, part| {
                let part = &mut s.shares[at].recovered_parts.as_mut().unwrap()[part];
                part.recovery_key = bump_p(&part.recovery_key);
            },
            "recovery key is not from the commitments",
        ),
    ];
    for (what, tamper, expected) in cases {
        for spoiled in [false, true] {
            let mut record = reference();
            let plaintext = match spoiled {
                false => record.tally.as_mut().unwrap(),
                true => &mut record.spoiled_ballots[0],
            };
            let (at, part) = rebuilt_share(plaintext);
            let selection = plaintext.contests[0].selections.get_index_mut(0).unwrap().1;
            let id = format!("{} selection {}", plaintext.object_id, selection.object_id);
            tamper(selection, at, &part);
            let report = verify_foreign(&record);
            let check = match spoiled {
                false => "tally decryption shares, compensated shares and counts",
                true => "spoiled ballot decryptions",
            };
            assert_eq!(failed(&report), [check], "{what}");
            let failures = &report
                .checks
                .iter()
                .find(|c| c.name == check)
                .unwrap()
                .failures;
            assert_eq!(failures.len(), 1, "{what}: {failures:?}");
            assert!(
                failures[0].starts_with(&id) && failures[0].contains(expected),
                "{what}: {failures:?}"
            );
        }
    }
}

/// p − 1: of order 2, so a value times it leaves the group of order q.
fn order_two() -> ElementModP {
    let mut hex = ElementModP::p_hex();
    assert_eq!(hex.pop(), Some('F'), "p ends in F");
    hex.push('E');
    ElementModP::from_hex(&hex).unwrap()
}

/// `amarvote verify --foreign` over a record directory; whether it passed, and what it printed.
fn verify_dir(dir: &Path) -> (bool, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_amarvote"))
        .arg("verify")
        .arg(dir)
        .arg("--foreign")
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&output.stdout).into_owned();
    (output.status.success(), printed)
}

/// The command pairs a challenged ballot with the decryption file named for its id: a file
/// holding another ballot's decryption (however real) is refused, and so is a ballot whose
/// decryption is missing from its file but published under another name.
#[test]
fn a_decryption_in_another_ballots_file_fails_the_command() {
    let dir = tempfile::tempdir().unwrap();
    write_record(dir.path(), &reference()).unwrap();
    assert!(verify_dir(dir.path()).0, "the record as published verifies");
    let spoiled = dir.path().join("spoiled_ballots");
    let (first, second) = (
        spoiled.join("spoiled_ballot_ballot-00001.json"),
        spoiled.join("spoiled_ballot_ballot-00007.json"),
    );
    std::fs::copy(&second, &first).unwrap();
    let (passed, printed) = verify_dir(dir.path());
    assert!(!passed, "{printed}");
    assert!(
        printed.contains("[FAIL] spoiled ballot decryptions")
            && printed.contains("spoiled ballot ballot-00007: no such spoiled submitted ballot"),
        "{printed}"
    );
}

#[test]
fn a_decryption_published_twice_or_a_selection_decrypted_twice_fails() {
    let mut record = reference();
    let again = record.spoiled_ballots[0].clone();
    record.spoiled_ballots.push(again);
    assert_only_fails(&record, "spoiled ballot decryptions");

    // A selection listed under another's key, standing in for it.
    let mut record = reference();
    let contest = record
        .tally
        .as_mut()
        .unwrap()
        .contests
        .get_index_mut(0)
        .unwrap()
        .1;
    let (first_key, first) = contest
        .selections
        .get_index(0)
        .map(|(k, v)| (k.clone(), v.clone()))
        .unwrap();
    let second_key = contest.selections.get_index(1).unwrap().0.clone();
    assert_ne!(first_key, second_key);
    contest.selections.insert(second_key, first);
    let report = verify_foreign(&record);
    assert_eq!(
        failed(&report),
        ["tally decryption shares, compensated shares and counts"]
    );
    let check = report.checks.iter().find(|c| !c.passed()).unwrap();
    assert!(
        check.failures.iter().any(|f| f.contains("is listed as")),
        "{:?}",
        check.failures
    );
}
