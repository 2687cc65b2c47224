//! `amarvote bench crypto`: the cryptography core's speed on this machine, single-threaded
//! and on every core, for ballots of 1 contest × 4 candidates.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use electionguard::ballot::{BallotBoxState, CiphertextBallot, EncryptionDevice};
use electionguard::decrypt::{
    ballot_ciphertexts, compute_compensated_share, compute_decryption_share, tally_ciphertexts,
    verify_compensated_share, verify_decryption_share,
};
use electionguard::elgamal::EncryptionKey;
use electionguard::encrypt::Encryptor;
use electionguard::group::ElementModQ;
use electionguard::record::{ElectionConstants, ElectionRecord};
use electionguard::tally::CiphertextTally;
use electionguard::verify::verify_record;
use rayon::prelude::*;

use super::simulation::{self, ChoiceRng, ElectionShape};
use crate::election;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Ballots to encrypt and verify in each measurement.
    #[arg(long, default_value_t = 200)]
    pub ballots: u32,
    /// A Python with electionguard 1.4 installed: the reference library is then measured
    /// in the same run (its own driver, `--reference-script`), for ratios on equal terms.
    #[arg(long)]
    pub reference_python: Option<PathBuf>,
    /// The reference library's driver script.
    #[arg(long, default_value = "../shared/tools/eg_election.py")]
    pub reference_script: PathBuf,
}

/// What the reference library took here, per ballot, in this run.
struct ReferenceFigures {
    encrypt_ms: f64,
    validate_ms: f64,
    /// Its whole election (key ceremony to decrypted tally and challenged ballots), per
    /// ballot, with [`CHALLENGED_SHARE`] of the ballots challenged.
    election_ms: f64,
}

/// The share of challenged ballots in the whole-election comparison.
const CHALLENGED_SHARE: &str = "0.1";
/// Ballots of the reference's whole election (it takes about half a second a ballot here).
const REFERENCE_ELECTION_BALLOTS: u32 = 20;
/// Ballots of our demo's whole election in the comparison.
const DEMO_BALLOTS: u32 = 400;

/// Runs the reference driver with `args`; its summary (the last line it prints).
fn reference_summary(python: &Path, script: &Path, args: &str) -> Result<serde_json::Value> {
    let out = tempfile::tempdir()?;
    let output = std::process::Command::new(python)
        .arg(script)
        .args(args.split_whitespace())
        .arg("--out")
        .arg(out.path())
        .output()
        .with_context(|| format!("cannot run {}", python.display()))?;
    anyhow::ensure!(
        output.status.success(),
        "the reference library's driver failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout
        .lines()
        .last()
        .context("the reference driver printed nothing")?;
    Ok(serde_json::from_str(last)?)
}

/// `amarvote demo` (this binary) over the comparison's election; its whole time per ballot.
fn demo_per_ballot_ms() -> Result<f64> {
    let ballots = DEMO_BALLOTS.to_string();
    let output = std::process::Command::new(std::env::current_exe()?)
        .args(["demo", "--ballots", &ballots, "--spoil", CHALLENGED_SHARE])
        .output()
        .context("cannot run amarvote demo")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(output.status.success(), "amarvote demo failed: {stdout}");
    let total: f64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("total ")?.strip_suffix(" s")?.parse().ok())
        .context("amarvote demo printed no total")?;
    Ok(total * 1000.0 / f64::from(DEMO_BALLOTS))
}

/// Runs the reference library's driver on the same election shape and reads its timings:
/// encryption and validation alone, then a whole election with challenged ballots.
fn measure_reference(python: &Path, script: &Path) -> Result<ReferenceFigures> {
    let shape =
        "--guardians 5 --quorum 3 --missing 2 --contests 1 --selections 4 --no-export --no-checks";
    let summary = reference_summary(
        python,
        script,
        &format!("{shape} --ballots 20 --no-decrypt"),
    )?;
    let median = |phase: &str| {
        summary["timings"][phase]["median_ms"]
            .as_f64()
            .with_context(|| format!("no {phase} timing in the reference driver's summary"))
    };
    let election = reference_summary(
        python,
        script,
        &format!("{shape} --ballots {REFERENCE_ELECTION_BALLOTS} --spoil {CHALLENGED_SHARE}"),
    )?;
    let total = election["timings"]["script_total_s"]
        .as_f64()
        .context("no script_total_s in the reference driver's summary")?;
    Ok(ReferenceFigures {
        encrypt_ms: median("encryption")?,
        validate_ms: median("ballot_box_submit_incl_proof_validation")?,
        election_ms: total * 1000.0 / f64::from(REFERENCE_ELECTION_BALLOTS),
    })
}

/// Ballots challenged in the challenged-ballot measurement.
const CHALLENGED: usize = 10;

/// What one challenged ballot costs on one thread.
struct ChallengedFigures {
    decrypt_ms: f64,
    verify_ms: f64,
}

/// Challenges the record's first ballots, decrypts each (every share of every selection,
/// placeholders included, and the combination) and times the verifier on the record with
/// those decryptions against the same record without them.
fn measure_challenged(
    cast: &ElectionRecord,
    ceremony: &election::Ceremony,
) -> Result<ChallengedFigures> {
    let qbar = &cast.context.crypto_extended_base_hash;
    let challenged: Vec<CiphertextBallot> = cast.submitted_ballots[..CHALLENGED]
        .iter()
        .map(|b| b.submit(BallotBoxState::Spoiled))
        .collect();
    let one_thread = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    let started = Instant::now();
    let decrypted = one_thread.install(|| {
        challenged
            .iter()
            .map(|b| {
                let contests = ballot_ciphertexts(b);
                let (id, manifest) = (&b.object_id, &cast.manifest);
                simulation::decrypt(ceremony, &[0, 1, 2], &[3, 4], id, &contests, manifest, qbar)
            })
            .collect::<Result<Vec<_>>>()
    })?;
    let decrypt_ms = per_ballot_ms(started, CHALLENGED);
    let mut without = cast.clone();
    without.submitted_ballots = challenged;
    without.ballot_box = Some(simulation::declare_ballot_box(
        &cast.devices[0],
        &without.submitted_ballots,
    ));
    let with = ElectionRecord {
        spoiled_ballots: decrypted,
        coefficients: None,
        ..without.clone()
    };
    let started = Instant::now();
    one_thread.install(|| verify_record(&without));
    let base = started.elapsed();
    let started = Instant::now();
    let report = one_thread.install(|| verify_record(&with));
    let verify_ms =
        (started.elapsed().saturating_sub(base)).as_secs_f64() * 1000.0 / CHALLENGED as f64;
    anyhow::ensure!(
        report.passed(),
        "benchmark challenged ballots failed verification"
    );
    Ok(ChallengedFigures {
        decrypt_ms,
        verify_ms,
    })
}

fn per_ballot_ms(started: Instant, count: usize) -> f64 {
    started.elapsed().as_secs_f64() * 1000.0 / count as f64
}

pub fn run(args: &BenchArgs) -> Result<()> {
    let shape = ElectionShape {
        guardians: 5,
        quorum: 3,
        missing: 2,
        ballots: args.ballots,
        contests: 1,
        selections: 4,
        spoil_rate: 0.0,
        seed: 7,
    };
    let manifest = simulation::manifest(&shape);
    let ceremony = election::key_ceremony(shape.guardians, shape.quorum)?;
    let context = election::context(&manifest, &ceremony.public_keys, shape.quorum);
    let started = Instant::now();
    let encryptor = Encryptor::with_key(
        &manifest,
        &context,
        EncryptionKey::for_encryption(&context.elgamal_public_key),
    );
    let tables_built = started.elapsed();
    let mut rng = ChoiceRng::new(shape.seed);
    let plaintexts: Vec<_> = (1..=shape.ballots)
        .map(|i| simulation::random_ballot(&manifest, i, &mut rng))
        .collect();
    let device = EncryptionDevice {
        device_id: 1,
        session_id: 1,
        launch_code: 1,
        location: "bench".into(),
    };
    let seed = device.hash();
    let threads = rayon::current_num_threads();
    println!("amarvote bench crypto: {} ballots of 1 contest × 4 candidates, {threads} threads available", shape.ballots);
    println!(
        "13-bit fixed-base tables for g and K built in {:.2} s",
        tables_built.as_secs_f64()
    );

    let started = Instant::now();
    let ballots: Vec<CiphertextBallot> = plaintexts
        .iter()
        .map(|p| encryptor.encrypt(p, &seed, &ElementModQ::random(), 0))
        .collect::<Result<_, _>>()?;
    let encrypt_1 = per_ballot_ms(started, ballots.len());
    let started = Instant::now();
    let again: Vec<_> = plaintexts
        .par_iter()
        .map(|p| encryptor.encrypt(p, &seed, &ElementModQ::random(), 0))
        .collect();
    let encrypt_n = per_ballot_ms(started, again.len());

    let mut submitted = simulation::encrypt_ballots(&encryptor, &device, &plaintexts, 0, &|| ())?;
    for b in &mut submitted {
        *b = b.submit(BallotBoxState::Cast);
    }
    let ballot_box = simulation::declare_ballot_box(&device, &submitted);
    let record = ElectionRecord {
        constants: ElectionConstants::standard(),
        manifest: manifest.clone(),
        context: context.clone(),
        devices: vec![device],
        guardians: ceremony.public_keys.iter().map(Into::into).collect(),
        submitted_ballots: submitted.clone(),
        encrypted_tally: None,
        coefficients: None,
        tally: None,
        spoiled_ballots: vec![],
        ballot_box: Some(ballot_box),
    };
    let started = Instant::now();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    let one = pool.install(|| verify_record(&record));
    let verify_1 = per_ballot_ms(started, submitted.len());
    let started = Instant::now();
    let all = verify_record(&record);
    let verify_n = per_ballot_ms(started, submitted.len());
    anyhow::ensure!(
        one.passed() && all.passed(),
        "benchmark ballots failed verification"
    );

    let thousand: Vec<&CiphertextBallot> = submitted.iter().cycle().take(1000).collect();
    let started = Instant::now();
    let mut tally = CiphertextTally::empty("bench", &manifest);
    tally.append_all(&thousand)?;
    let tally_rate = 1000.0 / started.elapsed().as_secs_f64();

    let contests = tally_ciphertexts(&tally);
    let qbar = &context.crypto_extended_base_hash;
    let started = Instant::now();
    let share = compute_decryption_share("bench", &ceremony.guardians[0], &contests, qbar);
    let partial_ms = per_ballot_ms(started, 1);
    let (present, missing) = (&ceremony.public_keys[0], &ceremony.public_keys[4]);
    let started = Instant::now();
    let part = compute_compensated_share(
        "bench",
        &ceremony.received[0][4],
        present,
        missing,
        &contests,
        qbar,
    );
    let compensated_ms = per_ballot_ms(started, 1);
    anyhow::ensure!(
        verify_decryption_share(&share, "bench", present, &contests, qbar).is_ok()
            && verify_compensated_share(&part, "bench", present, missing, &contests, qbar).is_ok(),
        "benchmark decryption shares failed verification"
    );
    let started = Instant::now();
    simulation::decrypt(
        &ceremony,
        &[0, 1, 2],
        &[3, 4],
        "bench",
        &contests,
        &manifest,
        qbar,
    )?;
    let decrypt_all_ms = per_ballot_ms(started, 1);
    let challenged = measure_challenged(&record, &ceremony)?;
    let reference = args
        .reference_python
        .as_deref()
        .map(|python| measure_reference(python, &args.reference_script))
        .transpose()?;

    println!(
        "{:<44} {:>12} {:>12}",
        "operation",
        "1 thread",
        format!("{threads} threads")
    );
    println!(
        "{:<44} {:>9.2} ms {:>9.2} ms",
        "encrypt one ballot (with proofs)", encrypt_1, encrypt_n
    );
    println!(
        "{:<44} {:>9.2} ms {:>9.2} ms",
        "verify one ballot (all proofs and hashes)", verify_1, verify_n
    );
    println!(
        "{:<44} {:>9.0} /s",
        "tally accumulation (ballots per second)", tally_rate
    );
    println!(
        "{:<44} {:>9.2} ms",
        "partial decryption of the tally, one guardian", partial_ms
    );
    println!(
        "{:<44} {:>9.2} ms",
        "compensated share of the tally, one pair", compensated_ms
    );
    println!(
        "{:<44} {:>12} {:>9.2} ms",
        "whole decryption, 3 present and 2 missing", "", decrypt_all_ms
    );
    println!(
        "{:<44} {:>9.2} ms",
        "challenged ballot: decrypt (3 present, 2 missing)", challenged.decrypt_ms
    );
    println!(
        "{:<44} {:>9.2} ms",
        "challenged ballot: verify its decryption", challenged.verify_ms
    );
    match reference {
        Some(r) => {
            println!(
                "reference library, same run (median of 20 ballots): encrypt {:.1} ms ({:.1}× ours on 1 thread), validate {:.1} ms ({:.1}× ours)",
                r.encrypt_ms,
                r.encrypt_ms / encrypt_1,
                r.validate_ms,
                r.validate_ms / verify_1
            );
            let demo_ms = demo_per_ballot_ms()?;
            println!(
                "whole election, {CHALLENGED_SHARE} of ballots challenged, per ballot: amarvote demo --ballots {DEMO_BALLOTS} (record verified) {demo_ms:.1} ms, reference library ({REFERENCE_ELECTION_BALLOTS} ballots, no verifier) {:.1} ms: {:.1}× cheaper",
                r.election_ms,
                r.election_ms / demo_ms
            );
        }
        None => println!("anchors (../shared/ANCHORS.md): reference library 109–149 ms to encrypt, 160–190 ms to validate a ballot; AmarVote 78 ms to encrypt (--reference-python measures the reference in this run)"),
    }
    Ok(())
}
