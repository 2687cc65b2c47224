//! The README's first command, run as a user would: a whole election, then its record verified.

use std::process::Command;

fn amarvote(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_amarvote"))
        .args(args)
        .output()
        .expect("the amarvote binary runs")
}

#[test]
fn demo_runs_an_election_and_its_record_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("record");
    let out = amarvote(&[
        "demo",
        "--guardians",
        "5",
        "--quorum",
        "3",
        "--missing",
        "2",
        "--ballots",
        "20",
        "--contests",
        "2",
        "--selections",
        "3",
        "--spoil",
        "0.2",
        "--record",
        record.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("decrypted tally equals the votes cast"));

    let out = amarvote(&["verify", record.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // One changed hex digit in a stored ballot: the verifier names the ballot and exits non-zero.
    let ballots = record.join("submitted_ballots");
    let path = std::fs::read_dir(&ballots)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let text = std::fs::read_to_string(&path).unwrap();
    let at = text.find("\"response\": \"").unwrap() + 13;
    let digit = if &text[at..at + 1] == "1" { "2" } else { "1" };
    std::fs::write(
        &path,
        format!("{}{}{}", &text[..at], digit, &text[at + 1..]),
    )
    .unwrap();
    let out = amarvote(&["verify", record.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        stdout.contains("[FAIL] ballot hashes, selection and contest proofs"),
        "{stdout}"
    );
}

#[test]
fn bad_flags_get_a_clear_error() {
    let out = amarvote(&["demo", "--guardians", "3", "--quorum", "4"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--quorum must be between 1 and --guardians")
    );
    let out = amarvote(&["verify", "/nonexistent-record"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a directory"));
}

/// The election bench at a small size: its voters cast over HTTP from devices of their own,
/// the rest is seeded, and the jobs' results equal the votes.
#[test]
fn the_election_bench_runs_end_to_end() {
    let out = amarvote(&[
        "bench",
        "election",
        "--ballots",
        "96",
        "--cast",
        "24",
        "--clients",
        "4",
        "--chunk-size",
        "32",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("cast with proof verification"), "{stdout}");
}
