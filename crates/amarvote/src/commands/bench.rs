//! `amarvote bench crypto`: the cryptography core's speed on this machine, single-threaded
//! and on every core, for ballots of 1 contest × 4 candidates.

use std::time::Instant;

use anyhow::Result;
use clap::Args;
use electionguard::ballot::{BallotBoxState, CiphertextBallot, EncryptionDevice};
use electionguard::encrypt::Encryptor;
use electionguard::group::ElementModQ;
use electionguard::record::ElectionConstants;
use electionguard::tally::CiphertextTally;
use electionguard::verify::verify_record;
use rayon::prelude::*;

use crate::election::{self, ChoiceRng, ElectionShape};

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Ballots to encrypt and verify in each measurement.
    #[arg(long, default_value_t = 200)]
    pub ballots: u32,
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
    let manifest = election::manifest(&shape);
    let ceremony = election::key_ceremony(shape.guardians, shape.quorum)?;
    let context = election::context(&manifest, &ceremony.public_keys, shape.quorum);
    let encryptor = Encryptor::new(&manifest, &context);
    let mut rng = ChoiceRng::new(shape.seed);
    let plaintexts: Vec<_> = (1..=shape.ballots)
        .map(|i| election::random_ballot(&manifest, i, &mut rng))
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

    let mut submitted = election::encrypt_ballots(&encryptor, &device, &plaintexts, 0, &|| ())?;
    for b in &mut submitted {
        *b = b.submit(BallotBoxState::Cast);
    }
    let record = electionguard::record::ElectionRecord {
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
    println!("anchors (../shared/ANCHORS.md): reference library 109–149 ms to encrypt, 160–190 ms to validate a ballot; AmarVote 78 ms to encrypt");
    Ok(())
}
