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
use serde_json::{json, Value};

use super::demo::DemoArgs;
use crate::election::{demo_contests, random_ballot, ChoiceRng};
use crate::service::ballots::{choices_of, Choices};

/// A thin JSON client that turns every non-2xx answer into an error quoting the server.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    pub fn new(base: &str) -> Client {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .timeout(Duration::from_secs(120))
            .build()
            .expect("client");
        Client {
            http,
            base: base.trim_end_matches('/').to_string(),
        }
    }

    /// Sends a request, with the bearer token if any; a non-2xx answer is an error
    /// quoting the server's message. A 429 is retried after the server's `Retry-After`
    /// (or a growing pause when it names none), up to `MAX_THROTTLED_RETRIES` times.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        token: Option<&str>,
        what: &str,
    ) -> Result<reqwest::Response> {
        let request = match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let mut attempt = 0;
        let response = loop {
            let again = request.try_clone();
            let response = request_of(again, &self.base)?
                .send()
                .await
                .with_context(|| format!("cannot reach {}", self.base))?;
            if response.status() != reqwest::StatusCode::TOO_MANY_REQUESTS
                || attempt == MAX_THROTTLED_RETRIES
            {
                break response;
            }
            tokio::time::sleep(throttled_pause(&response, attempt)).await;
            attempt += 1;
        };
        let status = response.status();
        if !status.is_success() {
            let body: Value = response.json().await.unwrap_or(Value::Null);
            bail!(
                "{what}: HTTP {status}: {}",
                body["error"].as_str().unwrap_or("no error message")
            );
        }
        Ok(response)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Result<Value> {
        let request = self.http.post(self.url(path)).json(body);
        let response = self.send(request, token, path).await?;
        Ok(response.json().await.unwrap_or(Value::Null))
    }

    /// Posts a body that is already JSON text (reference-format ballots, key-ceremony records).
    pub async fn post_text(&self, path: &str, token: &str, body: String) -> Result<Value> {
        let request = self
            .http
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body);
        let response = self.send(request, Some(token), path).await?;
        Ok(response.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> Result<Value> {
        self.get_json(path, None).await
    }

    pub async fn get_authorized(&self, path: &str, token: &str) -> Result<Value> {
        self.get_json(path, Some(token)).await
    }

    async fn get_json(&self, path: &str, token: Option<&str>) -> Result<Value> {
        let response = self
            .send(self.http.get(self.url(path)), token, path)
            .await?;
        Ok(response.json().await.unwrap_or(Value::Null))
    }

    /// The body as text (reference JSON, kept exactly as the server wrote it).
    pub async fn get_text(&self, path: &str, token: Option<&str>) -> Result<String> {
        let response = self
            .send(self.http.get(self.url(path)), token, path)
            .await?;
        Ok(response.text().await?)
    }
}

/// How often a client waits out a 429 before it gives up.
const MAX_THROTTLED_RETRIES: u32 = 10;

fn request_of(
    request: Option<reqwest::RequestBuilder>,
    base: &str,
) -> Result<reqwest::RequestBuilder> {
    request.with_context(|| format!("a request to {base} has a body that cannot be sent twice"))
}

/// The server's `Retry-After` (seconds, at most 30), or 0.5 s doubling per attempt (at
/// most 8 s); a random tenth is added so throttled clients do not return in step.
fn throttled_pause(response: &reqwest::Response, attempt: u32) -> Duration {
    let asked = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s.min(30)));
    let base = asked.unwrap_or_else(|| Duration::from_millis(500 << attempt.min(4)));
    let mut jitter = [0u8; 1];
    openssl::rand::rand_bytes(&mut jitter).expect("the system random generator works");
    base + base.mul_f64(f64::from(jitter[0]) / 2550.0)
}

/// One voter: encrypts, maybe challenges (and checks what the server revealed), then casts.
async fn vote(
    client: &Client,
    election: &str,
    credential: &str,
    choices: &Choices,
    challenge_first: bool,
) -> Result<String> {
    let base = format!("/api/elections/{election}/ballots");
    if challenge_first {
        let pending = client
            .post(
                &format!("{base}/encrypt"),
                Some(credential),
                &json!({ "choices": choices }),
            )
            .await?;
        let id = pending["ballot_id"].as_str().context("ballot id")?;
        let opened = client
            .post(
                &format!("{base}/{id}/challenge"),
                Some(credential),
                &json!({}),
            )
            .await?;
        let revealed: Choices = serde_json::from_value(opened["revealed"].clone())?;
        ensure!(
            &revealed == choices,
            "the challenged ballot did not open to the voter's choices"
        );
    }
    let pending = client
        .post(
            &format!("{base}/encrypt"),
            Some(credential),
            &json!({ "choices": choices }),
        )
        .await?;
    let id = pending["ballot_id"].as_str().context("ballot id")?;
    let receipt = client
        .post(&format!("{base}/{id}/cast"), Some(credential), &json!({}))
        .await?;
    Ok(receipt["tracking_code"]
        .as_str()
        .context("tracking code")?
        .to_string())
}

/// Starts a job and follows it to its end with a progress bar; returns its final status.
pub async fn run_job(client: &Client, admin: &str, election: &str, kind: &str) -> Result<Value> {
    let started = client
        .post(
            &format!("/api/elections/{election}/jobs"),
            Some(admin),
            &json!({ "kind": kind }),
        )
        .await?;
    let job = started["job_id"].as_str().context("job id")?.to_string();
    let bar = ProgressBar::new(started["total_chunks"].as_u64().unwrap_or(1)).with_style(
        ProgressStyle::with_template(&format!(
            "  {kind:<8} {{bar:40}} {{pos}}/{{len}} chunks {{elapsed}}"
        ))
        .expect("template"),
    );
    loop {
        let status = client.get(&format!("/api/jobs/{job}")).await?;
        bar.set_position(status["processed_chunks"].as_u64().unwrap_or(0));
        match status["state"].as_str() {
            Some("done") => {
                bar.finish_and_clear();
                return Ok(status);
            }
            Some("failed") => bail!("{kind} job failed: {}", status["error"]),
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
    let contests: Vec<Value> = demo_contests(&shape)
        .iter()
        .map(|c| json!({ "title": c.title, "candidates": c.choices }))
        .collect();
    let created = client
        .post("/api/elections", Some(admin), &json!({ "title": "AmarVote demonstration election", "contests": contests, "guardians": shape.guardians, "quorum": shape.quorum }))
        .await?;
    let election = created["election_id"]
        .as_str()
        .context("election id")?
        .to_string();
    phase("election created, key ceremony done", started);
    let voters = client
        .post(
            &format!("/api/elections/{election}/voters"),
            Some(admin),
            &json!({ "count": shape.ballots }),
        )
        .await?;
    let credentials: Vec<String> = serde_json::from_value(voters["credentials"].clone())?;
    let manifest: Manifest = electionguard::json::from_json(
        &client
            .get_text(&format!("/api/elections/{election}/manifest"), None)
            .await?,
    )?;

    let started = Instant::now();
    let expected = cast_all(&client, &election, &manifest, &credentials, &shape).await?;
    phase("ballots encrypted, proved and cast", started);
    client
        .post(
            &format!("/api/elections/{election}/close"),
            Some(admin),
            &json!({}),
        )
        .await?;
    let started = Instant::now();
    run_job(&client, admin, &election, "tally").await?;
    phase("tally job", started);
    consent(
        &client,
        &election,
        &created,
        shape.guardians - shape.missing,
    )
    .await?;
    let started = Instant::now();
    run_job(&client, admin, &election, "decrypt").await?;
    run_job(&client, admin, &election, "combine").await?;
    phase("decryption and combine jobs", started);
    let results = client
        .get(&format!("/api/elections/{election}/results"))
        .await?;
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
    bail!("no server answers at {}", client.base)
}

async fn cast_all(
    client: &Client,
    election: &str,
    manifest: &Manifest,
    credentials: &[String],
    shape: &crate::election::ElectionShape,
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

async fn consent(client: &Client, election: &str, created: &Value, present: u32) -> Result<()> {
    let guardians = created["guardians"]
        .as_array()
        .context("guardian credentials")?;
    for g in guardians.iter().take(present as usize) {
        let (id, token) = (
            g["guardian_id"].as_str().unwrap_or_default(),
            g["token"].as_str().unwrap_or_default(),
        );
        client
            .post(
                &format!("/api/elections/{election}/guardians/{id}/decryption-consent"),
                Some(token),
                &json!({ "passphrase": g["passphrase"] }),
            )
            .await?;
    }
    Ok(())
}

fn print_results(results: &Value, expected: &[Vec<u64>]) -> Result<()> {
    println!("\nResults");
    println!(
        "  {:<12} {:<26} {:>8} {:>8}",
        "contest", "selection", "votes", "expected"
    );
    let mut all_match = true;
    for (c, contest) in results["contests"]
        .as_array()
        .context("contests")?
        .iter()
        .enumerate()
    {
        for (s, selection) in contest["selections"]
            .as_array()
            .context("selections")?
            .iter()
            .enumerate()
        {
            let votes = selection["votes"].as_u64().unwrap_or(u64::MAX);
            all_match &= expected.get(c).and_then(|e| e.get(s)) == Some(&votes);
            println!(
                "  {:<12} {:<26} {:>8} {:>8}",
                contest["contest_id"].as_str().unwrap_or(""),
                selection["selection_id"].as_str().unwrap_or(""),
                votes,
                expected[c][s]
            );
        }
    }
    ensure!(
        all_match,
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
