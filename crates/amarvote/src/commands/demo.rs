//! `amarvote demo`: a whole election in memory, with a progress bar and a results table.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, ensure, Result};
use clap::Args;
use electionguard::ballot::EncryptionDevice;
use electionguard::encrypt::Encryptor;
use electionguard::verify::verify_record;
use indicatif::{ProgressBar, ProgressStyle};

use super::simulation::{self, ChoiceRng, ElectionShape};
use crate::commands::verify::print_report;
use crate::election;
use crate::record_io::write_record;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Number of guardians (N).
    #[arg(long, default_value_t = 5)]
    pub guardians: u32,
    /// Guardians needed to decrypt (K).
    #[arg(long, default_value_t = 3)]
    pub quorum: u32,
    /// Guardians absent at decryption (at most N − K).
    #[arg(long, default_value_t = 2)]
    pub missing: u32,
    /// Ballots to encrypt.
    #[arg(long, default_value_t = 100)]
    pub ballots: u32,
    /// Contests on the ballot.
    #[arg(long, default_value_t = 1)]
    pub contests: u32,
    /// Candidates per contest.
    #[arg(long, default_value_t = 4)]
    pub selections: u32,
    /// Fraction of ballots spoiled (Benaloh challenge) instead of cast.
    #[arg(long, default_value_t = 0.1)]
    pub spoil: f64,
    /// Seed of the voters' random choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Also write the election record in the reference layout to this directory.
    #[arg(long)]
    pub record: Option<PathBuf>,
    /// Run the election over HTTP against this running server (`amarvote serve`).
    #[arg(long)]
    pub server: Option<String>,
    /// The server's administrator token (default: read from ./amarvote-data/admin.token).
    #[arg(long, env = "AMARVOTE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
}

impl DemoArgs {
    pub fn shape(&self) -> Result<ElectionShape> {
        ensure!(self.guardians >= 1, "--guardians must be at least 1");
        ensure!(
            self.quorum >= 1 && self.quorum <= self.guardians,
            "--quorum must be between 1 and --guardians"
        );
        ensure!(
            self.missing <= self.guardians - self.quorum,
            "--missing may be at most guardians − quorum"
        );
        ensure!(
            self.ballots >= 1 && self.contests >= 1 && self.selections >= 1,
            "ballots, contests and selections must be at least 1"
        );
        ensure!(
            (0.0..=1.0).contains(&self.spoil),
            "--spoil must be between 0 and 1"
        );
        Ok(ElectionShape {
            guardians: self.guardians,
            quorum: self.quorum,
            missing: self.missing,
            ballots: self.ballots,
            contests: self.contests,
            selections: self.selections,
            spoil_rate: self.spoil,
            seed: self.seed,
        })
    }
}

fn phase(name: &str, started: Instant) {
    println!("  {name:<44} {:>8.2} s", started.elapsed().as_secs_f64());
}

pub fn run(args: &DemoArgs) -> Result<()> {
    let shape = args.shape()?;
    let total = Instant::now();
    println!(
        "Election: {} guardians, quorum {}, {} missing at decryption; {} ballots of {} contest(s) × {} candidates",
        shape.guardians, shape.quorum, shape.missing, shape.ballots, shape.contests, shape.selections
    );
    let manifest = simulation::manifest(&shape);
    let started = Instant::now();
    let ceremony = election::key_ceremony(shape.guardians, shape.quorum)?;
    let context = election::context(&manifest, &ceremony.public_keys, shape.quorum);
    phase("key ceremony (keys, proofs, backups checked)", started);

    let mut rng = ChoiceRng::new(shape.seed);
    let plaintexts: Vec<_> = (1..=shape.ballots)
        .map(|i| simulation::random_ballot(&manifest, i, &mut rng))
        .collect();
    let device = EncryptionDevice {
        device_id: 1,
        session_id: 1,
        launch_code: 42,
        location: "amarvote-demo".into(),
    };
    let started = Instant::now();
    let encryptor = Encryptor::new(&manifest, &context);
    let bar = ProgressBar::new(u64::from(shape.ballots)).with_style(
        ProgressStyle::with_template("  encrypting {bar:40} {pos}/{len} ballots {per_sec}")
            .expect("valid template"),
    );
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let mut ballots =
        simulation::encrypt_ballots(&encryptor, &device, &plaintexts, timestamp, &|| bar.inc(1))?;
    bar.finish_and_clear();
    phase("ballot encryption with proofs", started);
    let expected = simulation::cast_or_spoil(&mut ballots, &plaintexts, shape.spoil_rate, &mut rng);

    let started = Instant::now();
    let encrypted_tally = simulation::tally(&manifest, &ballots)?;
    phase("homomorphic tally", started);
    let started = Instant::now();
    let done = simulation::finish(
        manifest,
        context,
        device,
        &ceremony,
        shape.missing,
        ballots,
        encrypted_tally,
        expected,
    )?;
    phase("decryption (partial, compensated, combine)", started);
    let started = Instant::now();
    let report = verify_record(&done.record);
    phase("verification of the whole record", started);
    print_report(&report);
    print_results(&done)?;
    if let Some(dir) = &args.record {
        write_record(dir, &done.record)?;
        println!("election record written to {}", dir.display());
    }
    println!("total {:.2} s", total.elapsed().as_secs_f64());
    if !report.passed() {
        bail!("the election record failed verification");
    }
    Ok(())
}

fn print_results(done: &simulation::CompletedElection) -> Result<()> {
    let tally = done.record.tally.as_ref().expect("decrypted");
    let cast = done
        .record
        .submitted_ballots
        .iter()
        .filter(|b| b.is_cast())
        .count();
    let spoiled = done.record.spoiled_ballots.len();
    println!("\nResults ({cast} cast, {spoiled} spoiled and decrypted for challenge)");
    println!(
        "  {:<12} {:<26} {:>8} {:>8}",
        "contest", "selection", "votes", "expected"
    );
    let mut all_match = true;
    for (c, contest) in tally.contests.values().enumerate() {
        for (s, selection) in contest.selections.values().enumerate() {
            let expected = done.expected[c][s];
            all_match &= expected == selection.tally;
            println!(
                "  {:<12} {:<26} {:>8} {:>8}",
                contest.object_id, selection.object_id, selection.tally, expected
            );
        }
    }
    if !all_match {
        bail!("the decrypted tally differs from the votes cast");
    }
    println!("decrypted tally equals the votes cast");
    Ok(())
}
