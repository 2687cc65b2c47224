//! `amarvote verify DIR`: the independent verifier over a published record.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Result};
use electionguard::verify::{verify_record_with, BallotBoxPolicy, VerificationReport};

use crate::record_io::read_record;

pub fn run(dir: &Path, foreign: bool) -> Result<()> {
    let started = Instant::now();
    let record = read_record(dir)?;
    let policy = if foreign {
        BallotBoxPolicy::Optional
    } else {
        BallotBoxPolicy::Required
    };
    let report = verify_record_with(&record, policy);
    print_report(&report);
    println!(
        "{} ballots, {} guardians, verified in {:.2} s",
        record.submitted_ballots.len(),
        record.guardians.len(),
        started.elapsed().as_secs_f64()
    );
    if !report.passed() {
        bail!("the record in {} failed verification", dir.display());
    }
    println!("record verified: every check passed");
    Ok(())
}

pub fn print_report(report: &VerificationReport) {
    for check in &report.checks {
        let verdict = if check.passed() { "pass" } else { "FAIL" };
        println!(
            "[{verdict}] {:<58} {:>6} checked, {} failed",
            check.name,
            check.checked,
            check.failures.len()
        );
        for failure in check.failures.iter().take(20) {
            println!("       - {failure}");
        }
        if check.failures.len() > 20 {
            println!("       … and {} more", check.failures.len() - 20);
        }
        for note in &check.notes {
            println!("       note: {note}");
        }
    }
}
