//! `amarvote verify DIR`: the independent verifier over a published record, read batch by
//! batch so that a record of any size is verified without being held whole, every batch
//! on every core.

use std::io::IsTerminal;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use electionguard::verify::{BallotBoxPolicy, RecordVerifier, VerificationReport, VERIFY_BATCH};
use indicatif::{ProgressBar, ProgressStyle};

use crate::record_io::{read_record_head, RecordBallots};

pub fn run(dir: &Path, foreign: bool) -> Result<()> {
    let started = Instant::now();
    let head = read_record_head(dir)?;
    let policy = if foreign {
        BallotBoxPolicy::Optional
    } else {
        BallotBoxPolicy::Required
    };
    let mut ballots = RecordBallots::open(dir)?;
    let total = ballots.total();
    let mut verifier = RecordVerifier::new(&head, policy);
    verifier.expect(total as usize);
    let mut progress = Progress::new(total);
    while let Some((batch, decryptions)) = ballots.next_batch(VERIFY_BATCH)? {
        let decryptions: Vec<_> = decryptions.iter().map(Option::as_ref).collect();
        verifier.add(&batch, &decryptions);
        progress.advance(batch.len() as u64);
    }
    for plaintext in ballots.unpaired_decryptions()? {
        verifier.unmatched_decryption(&plaintext.object_id);
    }
    progress.finish();
    let report = verifier.finish();
    print_report(&report);
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{total} ballots, {} guardians, verified in {seconds:.2} s ({:.0} ballots/s)",
        head.guardians.len(),
        total as f64 / seconds
    );
    if !report.passed() {
        bail!("the record in {} failed verification", dir.display());
    }
    println!("record verified: every check passed");
    Ok(())
}

/// Progress through the ballots: a bar with the rate and the time left on a terminal, a
/// plain line every few seconds otherwise (a log, a CI job).
struct Progress {
    bar: Option<ProgressBar>,
    total: u64,
    done: u64,
    started: Instant,
    last_line: Instant,
}

/// How often the plain progress line is printed.
const LINE_EVERY: Duration = Duration::from_secs(10);

impl Progress {
    fn new(total: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            let style = ProgressStyle::with_template(
                "verifying {bar:40} {pos}/{len} ballots, {per_sec}, {eta} left",
            )
            .expect("a valid template");
            bar.set_style(style);
            bar
        });
        Progress {
            bar,
            total,
            done: 0,
            started: Instant::now(),
            last_line: Instant::now(),
        }
    }

    fn advance(&mut self, ballots: u64) {
        self.done += ballots;
        match &self.bar {
            Some(bar) => bar.set_position(self.done),
            None if self.last_line.elapsed() >= LINE_EVERY => {
                self.last_line = Instant::now();
                let rate = self.done as f64 / self.started.elapsed().as_secs_f64();
                let left =
                    self.total.saturating_sub(self.done) as f64 / rate.max(f64::MIN_POSITIVE);
                eprintln!(
                    "verified {} of {} ballots ({rate:.0}/s, about {left:.0} s left)",
                    self.done, self.total
                );
            }
            None => {}
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
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
