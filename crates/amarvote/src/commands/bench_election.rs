//! `amarvote bench election`: the election service's speed, end to end through its
//! HTTP API, on the embedded default or on PostgreSQL + RabbitMQ with the workers in
//! a separate process (whose peak memory is then the "worker RSS").
//!
//! Measured: cast throughput of client-encrypted ballots (every proof verified by the
//! server) with many concurrent clients; job-creation latency; and the time from
//! "start tally" to published results for the whole ballot box. To fill a large ballot
//! box quickly, ballots beyond those cast over HTTP are copies of a pool of encrypted
//! ballots under new ids (their proofs stay valid: no proof covers the ballot id), linked
//! into the server device's chain and imported through the store port in batches with
//! their part of the running tally products. The tally, decryption and combine jobs then
//! run exactly as in production.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use clap::Args;
use electionguard::ballot::{BallotBoxState, CiphertextBallot};
use electionguard::encrypt::Encryptor;
use electionguard::group::ElementModQ;
use electionguard::tally::TallyLayout;
use futures_util::StreamExt;
use rayon::prelude::*;
use serde_json::Value;

use super::client::Client;
use super::demo_server::{consent, run_job};
use super::simulation::{random_ballot, ChoiceRng};
use crate::domain::{now_ms, tally_shard, BallotRow, BallotState, JobKind};
use crate::ports::TallyContribution;
use crate::service::ballots::shuffle_position;
use crate::service::elections::{NewContest, NewElection};
use crate::service::{App, ElectionCrypto, Settings};

#[derive(Args, Debug)]
pub struct BenchElectionArgs {
    /// Ballots in the ballot box (1 contest × 4 candidates).
    #[arg(long, default_value_t = 8192)]
    pub ballots: u32,
    /// Of those, ballots cast over HTTP by concurrent clients (proofs verified by the server).
    #[arg(long, default_value_t = 256)]
    pub cast: u32,
    /// Concurrent clients casting.
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
    /// Ballots per tally chunk.
    #[arg(long, default_value_t = 1000)]
    pub chunk_size: u64,
    /// PostgreSQL URL: with --amqp-url, benchmark the scaled-out roles instead of the embedded default.
    #[arg(long)]
    pub database_url: Option<String>,
    #[arg(long)]
    pub amqp_url: Option<String>,
}

pub async fn run(args: &BenchElectionArgs) -> Result<()> {
    ensure!(
        args.cast <= args.ballots && args.ballots > 0,
        "--cast must not exceed --ballots"
    );
    let settings = Settings {
        chunk_size: args.chunk_size,
        // The bench's clients stand for many voters behind one address.
        ballot_rate_limit: 1_000_000,
        ..Settings::default()
    };
    let dir = tempfile::tempdir()?;
    let (app, worker) = match (&args.database_url, &args.amqp_url) {
        (Some(db), Some(amqp)) => scaled(db, amqp, settings).await?,
        (None, None) => (
            super::serve::embedded_app(dir.path(), settings).await?,
            None,
        ),
        _ => anyhow::bail!("give both --database-url and --amqp-url, or neither"),
    };
    let mode = if worker.is_some() {
        "PostgreSQL + RabbitMQ, worker in its own process"
    } else {
        "embedded (SQLite + embedded queue), one process"
    };
    println!("amarvote bench election: {} ballots (1 contest × 4), 5 guardians, quorum 3, 2 missing, chunks of {} — {mode}", args.ballots, args.chunk_size);
    let (shutdown_tx, shutdown) = tokio::sync::watch::channel(false);
    if worker.is_none() {
        tokio::spawn(crate::workers::run(
            app.clone(),
            crate::domain::QueueName::ALL.to_vec(),
            shutdown.clone(),
        ));
    }
    let url = serve(app.clone(), shutdown).await?;
    let client = Client::new(&url);
    let outcome = measure(args, &app, &client).await;
    let worker_peak = worker
        .as_ref()
        .map(|w| crate::metrics::peak_memory_of(w.id()));
    let _ = shutdown_tx.send(true);
    if let Some(mut w) = worker {
        let _ = w.kill().await;
    }
    let outcome = outcome?;
    println!(
        "  cast with proof verification     {:>10.1} ballots/s ({} clients)",
        outcome.cast_per_second, args.clients
    );
    println!(
        "  job creation latency p50 / p99   {:>7.1} / {:.1} ms",
        outcome.job_p50_ms, outcome.job_p99_ms
    );
    println!(
        "  tally job                        {:>10.2} s",
        outcome.tally_s
    );
    println!(
        "  decryption job (partial + comp.) {:>10.2} s",
        outcome.decrypt_s
    );
    println!(
        "  combine job                      {:>10.2} s",
        outcome.combine_s
    );
    println!("  start tally → published results  {:>10.2} s (guardians' consent before decryption not counted: {:.2} s)", outcome.tally_s + outcome.decrypt_s + outcome.combine_s, outcome.consent_s);
    match worker_peak {
        Some(bytes) => println!(
            "  worker peak RSS                  {:>10.1} MB",
            bytes as f64 / 1e6
        ),
        None => println!(
            "  process peak RSS (API + workers + seeding) {:.1} MB",
            crate::metrics::peak_memory_bytes() as f64 / 1e6
        ),
    }
    println!("  results equal the ballots cast: yes");
    Ok(())
}

struct Outcome {
    cast_per_second: f64,
    job_p50_ms: f64,
    job_p99_ms: f64,
    tally_s: f64,
    decrypt_s: f64,
    combine_s: f64,
    consent_s: f64,
}

async fn scaled(
    db: &str,
    amqp: &str,
    settings: Settings,
) -> Result<(Arc<App>, Option<tokio::process::Child>)> {
    let store: Arc<dyn crate::ports::Store> =
        Arc::new(crate::adapters::sql_store::SqlStore::connect(db).await?);
    let queue: Arc<dyn crate::ports::WorkQueue> =
        Arc::new(crate::adapters::rabbitmq::RabbitQueue::connect(amqp).await?);
    let key_hex = format!(
        "{}{}",
        crate::service::new_credential(),
        crate::service::new_credential()
    );
    let admin = crate::service::new_credential();
    let key = crate::sealing::ServerKey::from_hex(&key_hex)?;
    let worker = tokio::process::Command::new(std::env::current_exe()?)
        .args([
            "worker",
            "--listen",
            "127.0.0.1:0",
            "--chunk-size",
            &settings.chunk_size.to_string(),
        ])
        .env("DATABASE_URL", db)
        .env("AMQP_URL", amqp)
        .env("AMARVOTE_SERVER_KEY", &key_hex)
        .env("AMARVOTE_ADMIN_TOKEN", &admin)
        .kill_on_drop(true)
        .spawn()
        .context("cannot start the worker process")?;
    Ok((
        Arc::new(App::new(store, queue, key, admin, settings)),
        Some(worker),
    ))
}

async fn serve(app: Arc<App>, mut shutdown: tokio::sync::watch::Receiver<bool>) -> Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(crate::workers::reconciler::run(
        app.clone(),
        Duration::from_secs(2),
        shutdown.clone(),
    ));
    let router = crate::api::router(app);
    tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = shutdown.wait_for(|s| *s).await;
            })
            .await;
    });
    Ok(url)
}

async fn measure(args: &BenchElectionArgs, app: &Arc<App>, client: &Client) -> Result<Outcome> {
    let admin = app.admin_token.clone();
    let contest = NewContest::between("Contest 1", ["A", "B", "C", "D"]);
    let bench = NewElection::server_run("bench", vec![contest], 5, 3);
    let created = client.create_election(&admin, &bench).await?;
    let election_id = created.election_id.clone();
    let election = app.election(&election_id).await?;
    let crypto = app.crypto(&election).await?;
    let credentials = client
        .issue_credentials(&admin, &election_id, args.cast.max(1))
        .await?
        .credentials;

    let pool = encrypt_pool(&crypto, args.cast.max(64) as usize);
    let mut expected = vec![0u64; crypto.manifest.contests[0].ballot_selections.len()];
    let cast = args.cast as usize;
    let ballots = on_voters_devices(
        client,
        &election_id,
        &credentials,
        &pool.ballots[..cast],
        args.clients,
    )
    .await?;
    let started = Instant::now();
    cast_over_http(client, &election_id, &credentials, &ballots, args.clients).await?;
    let cast_per_second = cast as f64 / started.elapsed().as_secs_f64();
    pool.votes[..cast]
        .iter()
        .for_each(|v| add_votes(&mut expected, v));
    seed(
        app,
        (&election, &crypto),
        &pool,
        args.ballots - args.cast,
        &mut expected,
    )
    .await?;
    let (job_p50_ms, job_p99_ms) = job_creation_latency(client, &admin, &election_id).await?;

    client.close_voting(&admin, &election_id).await?;
    let started = Instant::now();
    run_job(client, &admin, &election_id, JobKind::Tally).await?;
    let tally_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    consent(client, &election_id, &created, 3).await?;
    let consent_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    run_job(client, &admin, &election_id, JobKind::Decrypt).await?;
    let decrypt_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    run_job(client, &admin, &election_id, JobKind::Combine).await?;
    let combine_s = started.elapsed().as_secs_f64();
    let results = client.results(&election_id).await?;
    let published: Vec<u64> = results.contests[0]
        .selections
        .iter()
        .map(|s| s.votes)
        .collect();
    ensure!(
        published == expected,
        "published {published:?}, cast {expected:?}"
    );
    Ok(Outcome {
        cast_per_second,
        job_p50_ms,
        job_p99_ms,
        tally_s,
        decrypt_s,
        combine_s,
        consent_s,
    })
}

/// Encrypted ballots and, for each, its votes per selection (the ground truth).
struct Pool {
    ballots: Vec<CiphertextBallot>,
    votes: Vec<Vec<u64>>,
}

/// Encrypts `n` random ballots on every core, as voters' devices would.
fn encrypt_pool(crypto: &ElectionCrypto, n: usize) -> Pool {
    let mut rng = ChoiceRng::new(11);
    let plaintexts: Vec<_> = (0..n)
        .map(|i| random_ballot(&crypto.manifest, i as u32, &mut rng))
        .collect();
    let encryptor = Encryptor::with_key(
        &crypto.manifest,
        &crypto.context,
        electionguard::elgamal::EncryptionKey::for_encryption(&crypto.context.elgamal_public_key),
    );
    let ballots = plaintexts
        .par_iter()
        .map(|p| {
            encryptor
                .encrypt(
                    p,
                    &crypto.context.manifest_hash,
                    &ElementModQ::random(),
                    now_ms() / 1000,
                )
                .expect("valid ballot")
        })
        .map(|b| CiphertextBallot {
            state: None,
            ..b.submit(BallotBoxState::Unknown)
        })
        .collect();
    let votes = plaintexts
        .iter()
        .map(|p| {
            p.contests[0]
                .ballot_selections
                .iter()
                .map(|s| s.vote)
                .collect()
        })
        .collect();
    Pool { ballots, votes }
}

fn add_votes(expected: &mut [u64], votes: &[u64]) {
    expected.iter_mut().zip(votes).for_each(|(e, v)| *e += v);
}

/// Each voter declares a device of its own, and its ballot is linked to it (the code
/// recomputed from the device's hash), as a voter's device would have encrypted it.
async fn on_voters_devices(
    client: &Client,
    election: &str,
    credentials: &[String],
    ballots: &[CiphertextBallot],
    clients: usize,
) -> Result<Vec<CiphertextBallot>> {
    let linked = futures_util::stream::iter(ballots.iter().zip(credentials).enumerate())
        .map(|(i, (ballot, credential))| {
            let device = electionguard::ballot::EncryptionDevice {
                device_id: 1000 + i as u64,
                session_id: 1,
                launch_code: 1,
                location: format!("bench-voter-{i}"),
            };
            let path = format!("/api/elections/{election}/devices");
            let body = electionguard::json::to_reference_json(&device);
            async move {
                client.post_text(&path, credential, body).await?;
                let mut ballot = ballot.clone();
                ballot.code_seed = device.hash();
                ballot.code = CiphertextBallot::compute_code(
                    &ballot.code_seed,
                    ballot.timestamp,
                    &ballot.crypto_hash,
                );
                Ok::<_, anyhow::Error>(ballot)
            }
        })
        .buffered(clients)
        .collect::<Vec<_>>()
        .await;
    linked.into_iter().collect()
}

async fn cast_over_http(
    client: &Client,
    election: &str,
    credentials: &[String],
    ballots: &[CiphertextBallot],
    clients: usize,
) -> Result<()> {
    let results: Vec<Result<Value>> = futures_util::stream::iter(ballots.iter().zip(credentials))
        .map(|(ballot, credential)| {
            let client = client.clone();
            let body = electionguard::json::to_reference_json(ballot);
            let path = format!("/api/elections/{election}/ballots");
            async move { client.post_text(&path, credential, body).await }
        })
        .buffer_unordered(clients)
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<_>>>()?;
    Ok(())
}

/// Ballots imported per transaction when filling the ballot box.
const SEED_BATCH: usize = 2000;

/// Fills the ballot box with `n` copies of pool ballots under new ids (distinct ids, known
/// plaintexts), linked into the server device's chain of codes and imported through the
/// store port in batches, each with its part of the running tally products.
async fn seed(
    app: &App,
    (election, crypto): (&crate::domain::ElectionRow, &ElectionCrypto),
    pool: &Pool,
    n: u32,
    expected: &mut [u64],
) -> Result<()> {
    let device_id = crate::service::ballots::server_device_id(election)?;
    let device = app
        .store
        .devices(&election.id)
        .await?
        .into_iter()
        .find(|d| d.device_id == device_id)
        .context("the election has no server device")?;
    let mut chain_end = device.last_code.unwrap_or(device.device_hash);
    let inputs = pool
        .ballots
        .iter()
        .map(|b| crypto.tally_layout.input_of(b))
        .collect::<Result<Vec<_>, _>>()?;
    let started = Instant::now();
    for first in (0..n as usize).step_by(SEED_BATCH) {
        let count = SEED_BATCH.min(n as usize - first);
        let batch = seed_batch(election, pool, first, count, &chain_end);
        let products = shard_products(&crypto.tally_layout, &inputs, &batch)?;
        let folds: Vec<_> = products
            .iter()
            .map(|(_, _, product)| crate::service::ballots::folding(&crypto.tally_layout, product))
            .collect();
        let tally: Vec<TallyContribution> = products
            .iter()
            .zip(&folds)
            .map(|((shard, ballots, _), fold)| TallyContribution {
                shard: *shard,
                ballots: *ballots,
                fold,
            })
            .collect();
        let rows: Vec<BallotRow> = batch.into_iter().map(|(_, row)| row).collect();
        app.store
            .import_cast_ballots(&election.id, device_id, &chain_end, &rows, &tally)
            .await?;
        chain_end = rows
            .last()
            .and_then(|r| r.code.clone())
            .unwrap_or(chain_end);
        for k in (first..first + count).map(|i| i % pool.ballots.len()) {
            add_votes(expected, &pool.votes[k]);
        }
        if (first / SEED_BATCH) % 50 == 49 {
            let done = first + count;
            println!(
                "  seeded {done} ballots ({:.0}/s)",
                done as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}

/// Ballots `first .. first + count` of the seeding, each with the pool ballot it copies,
/// chained one to the next from `chain_end`.
fn seed_batch(
    election: &crate::domain::ElectionRow,
    pool: &Pool,
    first: usize,
    count: usize,
    chain_end: &str,
) -> Vec<(usize, BallotRow)> {
    let mut previous = ElementModQ::from_hex(chain_end).expect("stored codes are valid");
    let timestamp = now_ms() / 1000;
    (first..first + count)
        .map(|i| {
            let k = i % pool.ballots.len();
            let mut ballot = pool.ballots[k].clone();
            ballot.object_id = format!("seeded-{i:07}");
            ballot.crypto_hash = CiphertextBallot::compute_crypto_hash(
                &ballot.object_id,
                &ballot.manifest_hash,
                &ballot.contests,
            );
            ballot.code_seed = previous.clone();
            ballot.timestamp = timestamp;
            ballot.code =
                CiphertextBallot::compute_code(&ballot.code_seed, timestamp, &ballot.crypto_hash);
            previous = ballot.code.clone();
            let ballot = ballot.submit(BallotBoxState::Cast);
            let row = BallotRow {
                election_id: election.id.clone(),
                ballot_id: ballot.object_id.clone(),
                state: BallotState::Cast,
                shuffle: shuffle_position(election, &ballot.object_id),
                code: Some(ballot.code.to_hex()),
                body: crate::service::codec::to_cbor(&ballot),
                sealed_nonces: None,
                voter_hash: None,
                created_at: now_ms(),
            };
            (k, row)
        })
        .collect()
}

/// Per shard the batch touches: its ballots and the product of their tally inputs.
fn shard_products(
    layout: &TallyLayout,
    inputs: &[Vec<u8>],
    batch: &[(usize, BallotRow)],
) -> Result<Vec<(u64, u64, Vec<u8>)>> {
    let mut by_shard: BTreeMap<u64, Vec<&[u8]>> = BTreeMap::new();
    for (k, row) in batch {
        by_shard
            .entry(tally_shard(row.shuffle))
            .or_default()
            .push(&inputs[*k]);
    }
    by_shard
        .into_par_iter()
        .map(|(shard, parts)| Ok((shard, parts.len() as u64, layout.product(&parts)?)))
        .collect()
}

/// Starts and at once stops 50 verification jobs: the API's answer time for a job.
async fn job_creation_latency(client: &Client, admin: &str, election: &str) -> Result<(f64, f64)> {
    let mut times = Vec::new();
    for _ in 0..50 {
        let started = Instant::now();
        let job = client.start_job(admin, election, JobKind::Verify).await?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        client.stop_job(admin, &job.job_id).await?;
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], times[times.len() * 99 / 100]))
}
