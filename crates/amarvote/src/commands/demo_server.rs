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

use super::client::{Client, Refused, Unanswered};
use super::demo::DemoArgs;
use super::simulation::{demo_contests, random_ballot, ChoiceRng};
use crate::api::elections::Results;
use crate::domain::{JobKind, JobState};
use crate::service::ballots::{choices_of, Choices};
use crate::service::elections::{CreatedElection, NewContest, NewElection};
use crate::service::jobs::JobStatus;

/// One voter: encrypts, maybe challenges (and checks what the server revealed), then casts.
/// A device that loses an answer (a server killed behind the load balancer) sends again
/// what is safe to send again: an encryption or a challenge is made anew (a lost pending
/// ballot is never counted), and a cast whose answer was lost is checked on the server.
async fn vote(
    client: &Client,
    election: &str,
    credential: &str,
    choices: &Choices,
    challenge_first: bool,
) -> Result<()> {
    if challenge_first {
        let (opened, _) = until_answered(|| async {
            let pending = client.encrypt_ballot(credential, election, choices).await?;
            client
                .challenge_ballot(credential, election, &pending.ballot_id)
                .await
        })
        .await;
        ensure!(
            opened?.revealed.as_ref() == Some(choices),
            "the challenged ballot did not open to the voter's choices"
        );
    }
    let (pending, _) =
        until_answered(|| client.encrypt_ballot(credential, election, choices)).await;
    let ballot = pending?.ballot_id;
    match until_answered(|| client.cast_ballot(credential, election, &ballot)).await {
        (Ok(_), _) => Ok(()),
        // A repeat refused after a lost answer: the lost cast may have been the success.
        (Err(e), true) if e.downcast_ref::<Refused>().is_some_and(|r| r.status == 409) => {
            let path = format!("/api/elections/{election}/voters/me");
            let me = client.get_authorized(&path, credential).await?;
            ensure!(me["cast"] == true, "{e:#}");
            Ok(())
        }
        (Err(e), _) => Err(e),
    }
}

/// How often a write whose answer was lost is sent again: three more, so that a voter's
/// encryptions stay under the five pending ballots a credential may hold.
const UNANSWERED_TRIES: u32 = 3;

/// Sends a write again while its answer is lost (up to [`UNANSWERED_TRIES`] more times);
/// says whether an answer was lost, so that the caller can read a refusal of a repeat
/// ("already cast", "not open") as the lost success it may be.
async fn until_answered<T, Fut>(mut send: impl FnMut() -> Fut) -> (Result<T>, bool)
where
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut lost = false;
    for _ in 0..UNANSWERED_TRIES {
        match send().await {
            Err(e) if e.is::<Unanswered>() => lost = true,
            answer => return (answer, lost),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    (send().await, lost)
}

/// Closes voting; a repeat refused after a lost answer is checked on the server.
async fn close_voting(client: &Client, admin: &str, election: &str) -> Result<()> {
    match until_answered(|| client.close_voting(admin, election)).await {
        (Ok(_), _) => Ok(()),
        (Err(e), true) => {
            let summary = client.get(&format!("/api/elections/{election}")).await?;
            ensure!(summary["state"] != "open", "{e:#}");
            Ok(())
        }
        (Err(e), false) => Err(e),
    }
}

/// Starts a job of `kind`, unless a start whose answer was lost already made one: after a
/// lost answer the election's jobs are read first, so no job is started twice.
async fn start_job(client: &Client, admin: &str, election: &str, kind: JobKind) -> Result<String> {
    let mut lost = false;
    for _ in 0..=UNANSWERED_TRIES {
        if lost {
            let list = client
                .get(&format!("/api/elections/{election}/jobs"))
                .await?;
            let jobs = list["jobs"].as_array().cloned().unwrap_or_default();
            if let Some(job) = jobs.iter().find(|j| j["kind"] == kind.as_str()) {
                return Ok(job["job_id"].as_str().unwrap_or_default().to_owned());
            }
        }
        match client.start_job(admin, election, kind).await {
            Ok(started) => return Ok(started.job_id),
            Err(e) if e.is::<Unanswered>() => lost = true,
            Err(e) => return Err(e),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!(
        "the {kind} job could not be started: no answer from {}",
        client.base()
    )
}

/// Starts a job and follows it to its end with a progress bar; returns its final status.
pub async fn run_job(
    client: &Client,
    admin: &str,
    election: &str,
    kind: JobKind,
) -> Result<JobStatus> {
    let job_id = start_job(client, admin, election, kind).await?;
    let bar = ProgressBar::new(client.job(&job_id).await?.total_chunks).with_style(
        ProgressStyle::with_template(&format!(
            "  {kind:<8} {{bar:40}} {{pos}}/{{len}} chunks {{elapsed}}"
        ))
        .expect("template"),
    );
    loop {
        let status = client.job(&job_id).await?;
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
    phase(
        &format!("election {election} created, key ceremony done"),
        started,
    );
    // Credentials issued by a request whose answer was lost are never used: harmless.
    let (issued, _) =
        until_answered(|| client.issue_credentials(admin, &election, shape.ballots)).await;
    let credentials = issued?.credentials;
    let manifest: Manifest = electionguard::json::from_json(
        &client
            .get_text(&format!("/api/elections/{election}/manifest"), None)
            .await?,
    )?;

    let started = Instant::now();
    let expected = cast_all(&client, &election, &manifest, &credentials, &shape).await?;
    phase("ballots encrypted, proved and cast", started);
    close_voting(&client, admin, &election).await?;
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

/// A server just started may not listen yet: wait up to 60 s for `/health`.
async fn wait_until_up(client: &Client) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        match tokio::time::timeout_at(deadline.into(), client.get("/health")).await {
            Ok(Ok(_)) => return Ok(()),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
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
    let results: Vec<Result<()>> = futures_util::stream::iter(plan)
        .map(|(credential, choices, challenge)| {
            let (client, bar) = (client.clone(), bar.clone());
            async move {
                let voted = vote(&client, election, &credential, &choices, challenge).await;
                bar.inc(1);
                voted
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
        let path = format!(
            "/api/elections/{election}/guardians/{}/decryption-consent",
            g.guardian_id
        );
        let body = json!({ "passphrase": g.passphrase });
        // A consent given again replaces the first: safe to repeat.
        until_answered(|| client.post(&path, Some(&g.token), &body))
            .await
            .0?;
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
