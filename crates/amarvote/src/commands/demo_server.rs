//! `amarvote demo --server URL`: the demo election run over HTTP against a running
//! server, as its people would: the administrator creates it and issues credentials,
//! voters encrypt and cast (some challenge first, then vote again), guardians consent to
//! decrypt (some stay away), the administrator runs tally, decryption and combine as
//! jobs, and everyone checks the published results against what was cast.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use electionguard::manifest::Manifest;
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use super::client::Client;
use super::demo::DemoArgs;
use super::simulation::{demo_contests, random_ballot, ChoiceRng};
use crate::api::elections::Results;
use crate::domain::{JobKind, JobState};
use crate::service::ballots::{choices_of, Choices};
use crate::service::elections::{CreatedElection, NewContest, NewElection};
use crate::service::jobs::JobStatus;

/// One voter: encrypts, maybe challenges (and checks what the server revealed), then casts.
async fn vote(
    client: &Client,
    election: &str,
    credential: &str,
    choices: &Choices,
    challenge_first: bool,
) -> Result<String> {
    if challenge_first {
        let pending = client.encrypt_ballot(credential, election, choices).await?;
        let opened = client
            .challenge_ballot(credential, election, &pending.ballot_id)
            .await?;
        ensure!(
            opened.revealed.as_ref() == Some(choices),
            "the challenged ballot did not open to the voter's choices"
        );
    }
    let pending = client.encrypt_ballot(credential, election, choices).await?;
    let receipt = client
        .cast_ballot(credential, election, &pending.ballot_id)
        .await?;
    Ok(receipt.tracking_code)
}

/// Starts a job and follows it to its end with a progress bar; returns its final status.
pub async fn run_job(
    client: &Client,
    admin: &str,
    election: &str,
    kind: JobKind,
) -> Result<JobStatus> {
    let started = client.start_job(admin, election, kind).await?;
    let bar = ProgressBar::new(started.total_chunks).with_style(
        ProgressStyle::with_template(&format!(
            "  {kind:<8} {{bar:40}} {{pos}}/{{len}} chunks {{elapsed}}"
        ))
        .expect("template"),
    );
    loop {
        let status = client.job(&started.job_id).await?;
        bar.set_position(status.processed_chunks);
        match status.state {
            JobState::Done => {
                bar.finish_and_clear();
                return Ok(status);
            }
            JobState::Failed => bail!(
                "{kind} job failed: {}",
                status.error.as_deref().unwrap_or("no reason given")
            ),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn phase(name: &str, started: Instant) {
    println!("  {name:<44} {:>8.2} s", started.elapsed().as_secs_f64());
}

/// The administrator token: given, or the one `amarvote serve` keeps in its default data directory.
fn admin_token(given: Option<&str>) -> Result<String> {
    match given {
        Some(token) => Ok(token.to_string()),
        None => Ok(std::fs::read_to_string("amarvote-data/admin.token")
            .context("pass --admin-token (or AMARVOTE_ADMIN_TOKEN); amarvote-data/admin.token was not found")?
            .trim()
            .to_string()),
    }
}

pub async fn run(args: &DemoArgs, server: &str, admin: Option<&str>) -> Result<()> {
    let shape = args.shape()?;
    let client = Client::new(server);
    wait_until_up(&client).await?;
    let admin = &admin_token(admin)?;
    let total = Instant::now();
    println!(
        "Election over HTTP at {server}: {} guardians, quorum {}, {} missing; {} voters",
        shape.guardians, shape.quorum, shape.missing, shape.ballots
    );
    let started = Instant::now();
    let contests = demo_contests(&shape)
        .iter()
        .map(|c| NewContest {
            votes_allowed: c.votes_allowed,
            ..NewContest::between(&c.title, c.choices.clone())
        })
        .collect();
    let title = "AmarVote demonstration election";
    let new_election = NewElection::server_run(title, contests, shape.guardians, shape.quorum);
    let created = client.create_election(admin, &new_election).await?;
    let election = created.election_id.clone();
    phase("election created, key ceremony done", started);
    let credentials = client
        .issue_credentials(admin, &election, shape.ballots)
        .await?
        .credentials;
    let manifest: Manifest = electionguard::json::from_json(
        &client
            .get_text(&format!("/api/elections/{election}/manifest"), None)
            .await?,
    )?;

    let started = Instant::now();
    let expected = cast_all(&client, &election, &manifest, &credentials, &shape).await?;
    phase("ballots encrypted, proved and cast", started);
    client.close_voting(admin, &election).await?;
    let started = Instant::now();
    run_job(&client, admin, &election, JobKind::Tally).await?;
    phase("tally job", started);
    consent(
        &client,
        &election,
        &created,
        shape.guardians - shape.missing,
    )
    .await?;
    let started = Instant::now();
    run_job(&client, admin, &election, JobKind::Decrypt).await?;
    run_job(&client, admin, &election, JobKind::Combine).await?;
    phase("decryption and combine jobs", started);
    let results = client.results(&election).await?;
    print_results(&results, &expected)?;
    if let Some(dir) = &args.record {
        download_record(&client, &election, dir).await?;
        let record = crate::record_io::read_record(dir)?;
        let report =
            tokio::task::spawn_blocking(move || electionguard::verify::verify_record(&record))
                .await?;
        super::verify::print_report(&report);
        ensure!(report.passed(), "the exported record failed verification");
        println!("election record written to {}", dir.display());
    }
    println!("total {:.2} s", total.elapsed().as_secs_f64());
    Ok(())
}

/// A server just started may not listen yet: wait up to 30 s for `/health`.
async fn wait_until_up(client: &Client) -> Result<()> {
    for _ in 0..300 {
        if client.get("/health").await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("no server answers at {}", client.base())
}

async fn cast_all(
    client: &Client,
    election: &str,
    manifest: &Manifest,
    credentials: &[String],
    shape: &super::simulation::ElectionShape,
) -> Result<Vec<Vec<u64>>> {
    let mut rng = ChoiceRng::new(shape.seed);
    let plan: Vec<(String, Choices, bool)> = credentials
        .iter()
        .enumerate()
        .map(|(i, c)| {
            (
                c.clone(),
                choices_of(&random_ballot(manifest, i as u32 + 1, &mut rng)),
                rng.chance(shape.spoil_rate),
            )
        })
        .collect();
    let mut expected: Vec<Vec<u64>> = manifest
        .contests
        .iter()
        .map(|c| vec![0; c.ballot_selections.len()])
        .collect();
    for (_, choices, _) in &plan {
        for (c, contest) in manifest.contests.iter().enumerate() {
            for (s, selection) in contest.ballot_selections.iter().enumerate() {
                expected[c][s] += u64::from(
                    choices
                        .get(&contest.object_id)
                        .is_some_and(|v| v.contains(&selection.object_id)),
                );
            }
        }
    }
    let bar = Arc::new(
        ProgressBar::new(plan.len() as u64).with_style(
            ProgressStyle::with_template("  voting   {bar:40} {pos}/{len} voters {per_sec}")
                .expect("template"),
        ),
    );
    let results: Vec<Result<String>> = futures_util::stream::iter(plan)
        .map(|(credential, choices, challenge)| {
            let (client, bar) = (client.clone(), bar.clone());
            async move {
                let code = vote(&client, election, &credential, &choices, challenge).await;
                bar.inc(1);
                code
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    bar.finish_and_clear();
    for result in results {
        result?;
    }
    Ok(expected)
}

/// The first `present` guardians consent to decrypt with their passphrases.
pub async fn consent(
    client: &Client,
    election: &str,
    created: &CreatedElection,
    present: u32,
) -> Result<()> {
    for g in created.guardians.iter().take(present as usize) {
        let id = &g.guardian_id;
        client
            .post(
                &format!("/api/elections/{election}/guardians/{id}/decryption-consent"),
                Some(&g.token),
                &json!({ "passphrase": g.passphrase }),
            )
            .await?;
    }
    Ok(())
}

fn print_results(results: &Results, expected: &[Vec<u64>]) -> Result<()> {
    println!("\nResults");
    println!(
        "  {:<12} {:<26} {:>8} {:>8}",
        "contest", "selection", "votes", "expected"
    );
    let mut all_match = true;
    for (c, contest) in results.contests.iter().enumerate() {
        all_match &= expected.get(c).map(Vec::len) == Some(contest.selections.len());
        for (s, selection) in contest.selections.iter().enumerate() {
            let wanted = expected.get(c).and_then(|e| e.get(s));
            all_match &= wanted == Some(&selection.votes);
            println!(
                "  {:<12} {:<26} {:>8} {:>8}",
                contest.contest_id,
                selection.selection_id,
                selection.votes,
                wanted.map_or("-".to_string(), u64::to_string)
            );
        }
    }
    ensure!(
        all_match && results.contests.len() == expected.len(),
        "the published results differ from the votes cast"
    );
    println!("published results equal the votes cast");
    Ok(())
}

/// Fetches every file of the record into `dir`, in the reference layout.
pub async fn download_record(client: &Client, election: &str, dir: &Path) -> Result<()> {
    let listing = client
        .get(&format!("/api/elections/{election}/record"))
        .await?;
    let files: Vec<String> = serde_json::from_value(listing["files"].clone())?;
    // A hostile or broken server must not make this write outside `dir` or over another
    // record file: every name is checked before anything is written.
    for name in &files {
        if let Err(e) = crate::record_io::check_record_path(name) {
            bail!("the server's record listing names {e}; nothing was written");
        }
    }
    let fetched: Vec<Result<(String, String)>> = futures_util::stream::iter(files)
        .map(|name| async move {
            let text = client
                .get_text(&format!("/api/elections/{election}/record/{name}"), None)
                .await?;
            Ok((name, text))
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for file in fetched {
        let (name, text) = file?;
        let path = dir.join(&name);
        std::fs::create_dir_all(path.parent().expect("files are in the record"))?;
        std::fs::write(&path, text)?;
    }
    Ok(())
}
