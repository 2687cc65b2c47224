//! The load generator: sets up its own referendum on a running server, drives
//! the vote API at a target rate over many connections, waits for the
//! pipeline to drain, and reconciles what the server recorded with what it
//! sent.
//!
//! Setup goes through the administrator API: two fresh laws named after the
//! run, and the voters' `(nas, code, law_id)` rows, which the server hashes
//! (the election secret never leaves it). The plan is drawn up front from a
//! seeded generator: each vote is a voter's first, a repeat (duplicate) of a
//! voter already planned, or an ineligible NAS. A repeat carries the same
//! choice as the voter's first vote, so whichever of a voter's concurrent
//! requests the server happens to accept, the expected tallies are exact.
//!
//! Reconciliation: every request is decided (none pending); each voter has
//! exactly one accepted request and the rest are duplicates; ineligible
//! requests are all `not_eligible`; per law, `oui` and `non` equal the voters'
//! choices and the audit rows equal their sum.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::api::referendum::{MAX_STATUS_BATCH, MAX_VOTER_BATCH};

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadgenConfig {
    pub server: String,
    pub admin_token: String,
    pub voters: usize,
    /// Votes per second to send.
    pub rate: f64,
    pub duration: Duration,
    /// Fraction of votes that repeat an earlier voter.
    pub duplicate_rate: f64,
    /// Fraction of votes from NAS numbers that are not registered.
    pub invalid_rate: f64,
    pub concurrency: usize,
    /// How long to wait for the pipeline to drain.
    pub drain_timeout: Duration,
    /// How often to print the latest window's figures while sending (a soak's per-minute line).
    pub window: Duration,
}

/// One planned vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Planned {
    /// A registered voter; `first` for the voter's first planned vote.
    Voter { index: usize, first: bool },
    /// An unregistered NAS.
    Ineligible { index: usize },
}

/// What a run measured and whether the server's records matched.
#[derive(Debug, Clone)]
pub struct LoadgenReport {
    pub sent: usize,
    pub failed_requests: usize,
    pub send_seconds: f64,
    pub accepted_per_second: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    /// The figures of each reporting window, in order.
    pub windows: Vec<WindowFigures>,
    pub mismatches: Vec<String>,
}

/// What one reporting window saw: the answers that came back in it and their latency.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowFigures {
    /// Seconds from the start of sending to the window's end.
    pub ends_at_s: f64,
    pub answered: usize,
    /// Requests that got no 202.
    pub failed: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
}

impl WindowFigures {
    fn close(ends_at_s: f64, mut answers: Vec<(Duration, bool)>) -> Self {
        answers.sort_unstable();
        let latencies: Vec<Duration> = answers.iter().map(|(latency, _)| *latency).collect();
        WindowFigures {
            ends_at_s,
            answered: answers.len(),
            failed: answers.iter().filter(|(_, accepted)| !accepted).count(),
            p50_ms: percentile_ms(&latencies, 50.0),
            p95_ms: percentile_ms(&latencies, 95.0),
            p99_ms: percentile_ms(&latencies, 99.0),
        }
    }
}

impl std::fmt::Display for WindowFigures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "at {:.0} s: {} answers ({} without 202), p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms",
            self.ends_at_s, self.answered, self.failed, self.p50_ms, self.p95_ms, self.p99_ms
        )
    }
}

impl LoadgenReport {
    pub fn reconciled(&self) -> bool {
        self.mismatches.is_empty() && self.failed_requests == 0
    }
}

/// splitmix64: a small seeded generator, so a run's plan can be reproduced.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).expect("below n")
    }
}

/// The referendum one run sets up: its laws and its voters.
struct Referendum {
    run: String,
    laws: [String; 2],
    voters: usize,
}

impl Referendum {
    fn new(run: String, voters: usize) -> Self {
        let laws = [format!("lg-{run}-1"), format!("lg-{run}-2")];
        Referendum { run, laws, voters }
    }

    fn law(&self, index: usize) -> &str {
        &self.laws[index % 2]
    }

    /// Voter `index`'s NAS and code; indices past `voters` are unregistered.
    fn credentials(&self, index: usize) -> (String, String) {
        (
            format!("{:09}", index % 1_000_000_000),
            format!("K{}X{index}", self.run),
        )
    }

    fn choice(&self, index: usize) -> &'static str {
        if index.is_multiple_of(3) {
            "non"
        } else {
            "oui"
        }
    }

    fn vote_body(&self, planned: Planned) -> Value {
        let index = match planned {
            Planned::Voter { index, .. } => index,
            Planned::Ineligible { index } => self.voters + index,
        };
        let (nas, code) = self.credentials(index);
        json!({ "nas": nas, "code": code, "law_id": self.law(index), "vote": self.choice(index) })
    }
}

fn plan(config: &LoadgenConfig, rng: &mut Rng) -> Vec<Planned> {
    let total = (config.rate * config.duration.as_secs_f64()).round() as usize;
    let mut planned = Vec::with_capacity(total);
    let mut fresh = 0;
    let mut ineligible = 0;
    for _ in 0..total {
        let draw = rng.unit();
        let vote = if draw < config.invalid_rate {
            ineligible += 1;
            Planned::Ineligible { index: ineligible }
        } else if fresh > 0
            && (draw < config.invalid_rate + config.duplicate_rate || fresh == config.voters)
        {
            Planned::Voter {
                index: rng.below(fresh),
                first: false,
            }
        } else if fresh < config.voters {
            fresh += 1;
            Planned::Voter {
                index: fresh - 1,
                first: true,
            }
        } else {
            ineligible += 1;
            Planned::Ineligible { index: ineligible }
        };
        planned.push(vote);
    }
    planned
}

struct Client {
    http: reqwest::Client,
    server: String,
    admin_token: String,
}

impl Client {
    async fn post(&self, path: &str, body: &Value, admin: bool) -> Result<(u16, Value)> {
        let mut request = self.http.post(format!("{}{path}", self.server)).json(body);
        if admin {
            request = request.bearer_auth(&self.admin_token);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    async fn get(&self, path: &str) -> Result<Value> {
        let response = self
            .http
            .get(format!("{}{path}", self.server))
            .send()
            .await?;
        let status = response.status();
        let body = response.json().await?;
        if !status.is_success() {
            bail!("GET {path}: {status} {body}");
        }
        Ok(body)
    }

    async fn setup(&self, referendum: &Referendum) -> Result<()> {
        for law in &referendum.laws {
            let (status, body) = self
                .post(
                    "/api/v1/admin/laws",
                    &json!({ "law_id": law, "title": "loadgen" }),
                    true,
                )
                .await?;
            if !(200..300).contains(&status) {
                bail!("creating law {law}: {status} {body}");
            }
        }
        for start in (0..referendum.voters).step_by(MAX_VOTER_BATCH) {
            let end = (start + MAX_VOTER_BATCH).min(referendum.voters);
            let rows: Vec<Value> = (start..end)
                .map(|i| {
                    let (nas, code) = referendum.credentials(i);
                    json!({ "nas": nas, "code": code, "law_id": referendum.law(i) })
                })
                .collect();
            let (status, body) = self
                .post("/api/v1/admin/voters", &json!({ "voters": rows }), true)
                .await?;
            if status != 200 || body["added"].as_u64() != Some((end - start) as u64) {
                bail!("loading voters {start}..{end}: {status} {body}");
            }
        }
        Ok(())
    }
}

/// Per-request results of the sending phase.
struct Sent {
    request_ids: Vec<Option<String>>,
    latencies: Vec<Duration>,
    windows: Vec<WindowFigures>,
    failed: usize,
    seconds: f64,
}

/// The answers of the window still open; the reporter closes one every `every`.
type OpenWindow = Arc<Mutex<Vec<(Duration, bool)>>>;

/// Prints a line per window until `sending` ends, then closes the last (partial) one.
async fn report_windows(
    open: OpenWindow,
    every: Duration,
    start: tokio::time::Instant,
    sending: tokio::sync::watch::Receiver<bool>,
) -> Vec<WindowFigures> {
    let mut sending = sending;
    let mut closed = Vec::new();
    let mut ticks = tokio::time::interval_at(start + every, every);
    loop {
        let last = tokio::select! {
            _ = ticks.tick() => false,
            _ = sending.changed() => true,
        };
        let answers = std::mem::take(&mut *open.lock().unwrap_or_else(PoisonError::into_inner));
        if !(last && answers.is_empty()) {
            let window = WindowFigures::close(start.elapsed().as_secs_f64(), answers);
            println!("{window}");
            closed.push(window);
        }
        if last {
            return closed;
        }
    }
}

async fn send_all(
    client: Arc<Client>,
    referendum: Arc<Referendum>,
    planned: Arc<Vec<Planned>>,
    config: &LoadgenConfig,
) -> Sent {
    let next = Arc::new(AtomicUsize::new(0));
    let results = Arc::new(Mutex::new(vec![None; planned.len()]));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(planned.len())));
    let open: OpenWindow = Arc::default();
    let interval = Duration::from_secs_f64(1.0 / config.rate.max(1e-9));
    let start = tokio::time::Instant::now();
    let (sending_done, sending) = tokio::sync::watch::channel(false);
    let reporter = tokio::spawn(report_windows(
        open.clone(),
        config.window.max(Duration::from_secs(1)),
        start,
        sending,
    ));
    let workers: Vec<_> = (0..config.concurrency.max(1))
        .map(|_| {
            let (client, referendum, planned) =
                (client.clone(), referendum.clone(), planned.clone());
            let (next, results, latencies) = (next.clone(), results.clone(), latencies.clone());
            let open = open.clone();
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(vote) = planned.get(i) else { return };
                    tokio::time::sleep_until(start + interval.mul_f64(i as f64)).await;
                    let sent_at = Instant::now();
                    let answer = client
                        .post("/api/v1/vote", &referendum.vote_body(*vote), false)
                        .await;
                    let elapsed = sent_at.elapsed();
                    let request_id = match answer {
                        Ok((202, body)) => body["request_id"].as_str().map(str::to_owned),
                        _ => None,
                    };
                    latencies
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(elapsed);
                    open.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push((elapsed, request_id.is_some()));
                    results.lock().unwrap_or_else(PoisonError::into_inner)[i] = request_id;
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.await;
    }
    let seconds = start.elapsed().as_secs_f64();
    let _ = sending_done.send(true);
    let windows = reporter.await.unwrap_or_default();
    let request_ids = std::mem::take(&mut *results.lock().unwrap_or_else(PoisonError::into_inner));
    let latencies = std::mem::take(&mut *latencies.lock().unwrap_or_else(PoisonError::into_inner));
    let failed = request_ids.iter().filter(|id| id.is_none()).count();
    Sent {
        request_ids,
        latencies,
        windows,
        failed,
        seconds,
    }
}

fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank].as_secs_f64() * 1000.0
}

/// Polls the status endpoint until no request is pending and two full passes
/// agree (an earlier attempt decided late turns a counted later one into the
/// duplicate); returns each request's final status and attempt count.
async fn decided_statuses(
    client: &Client,
    ids: &[String],
    timeout: Duration,
) -> Result<Vec<Value>> {
    let deadline = Instant::now() + timeout;
    let mut previous: Option<Vec<Value>> = None;
    loop {
        let statuses = poll_statuses(client, ids).await?;
        let pending: Vec<&String> = ids
            .iter()
            .zip(&statuses)
            .filter(|(_, s)| s["status"] == "pending")
            .map(|(id, _)| id)
            .collect();
        if pending.is_empty() && previous.as_ref() == Some(&statuses) {
            return Ok(statuses);
        }
        if Instant::now() > deadline {
            let some: Vec<&&String> = pending.iter().take(3).collect();
            bail!(
                "{} requests still pending after {timeout:?} (e.g. {some:?})",
                pending.len()
            );
        }
        previous = pending.is_empty().then_some(statuses);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Every request's current status, in order.
async fn poll_statuses(client: &Client, ids: &[String]) -> Result<Vec<Value>> {
    let mut statuses = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(MAX_STATUS_BATCH) {
        let (code, body) = client
            .post(
                "/api/v1/votes/status",
                &json!({ "request_ids": chunk }),
                false,
            )
            .await?;
        if code != 200 {
            bail!("status request failed: {code} {body}");
        }
        let answered = body["statuses"].as_array().cloned().unwrap_or_default();
        if answered.len() != chunk.len() {
            bail!(
                "the status answer has {} entries for {}",
                answered.len(),
                chunk.len()
            );
        }
        statuses.extend(answered);
    }
    Ok(statuses)
}

/// Expected `(oui, non)` per law from the voters that voted.
fn expected_results(referendum: &Referendum, planned: &[Planned]) -> BTreeMap<String, (u64, u64)> {
    let mut expected: BTreeMap<String, (u64, u64)> = referendum
        .laws
        .iter()
        .map(|law| (law.clone(), (0, 0)))
        .collect();
    for vote in planned {
        if let Planned::Voter { index, first: true } = vote {
            let counts = expected
                .get_mut(referendum.law(*index))
                .expect("law of the run");
            match referendum.choice(*index) {
                "oui" => counts.0 += 1,
                _ => counts.1 += 1,
            }
        }
    }
    expected
}

/// Checks every request's outcome against the plan.
fn reconcile_statuses(
    planned: &[Planned],
    sent: &Sent,
    statuses: &[(usize, Value)],
) -> Vec<String> {
    let mut mismatches = Vec::new();
    let mut per_voter: HashMap<usize, (u64, u64)> = HashMap::new();
    let mut ineligible_wrong = 0;
    for (i, status) in statuses {
        match planned[*i] {
            Planned::Voter { index, .. } => {
                let seen = per_voter.entry(index).or_default();
                match status["status"].as_str() {
                    Some("accepted") => seen.0 += 1,
                    Some("duplicate") => seen.1 += 1,
                    other => mismatches.push(format!("voter {index}: unexpected status {other:?}")),
                }
            }
            Planned::Ineligible { .. } => {
                if status["status"] != "not_eligible" {
                    ineligible_wrong += 1;
                }
            }
        }
    }
    let not_once = per_voter
        .values()
        .filter(|(accepted, _)| *accepted != 1)
        .count();
    if not_once > 0 {
        mismatches.push(format!("{not_once} voters not accepted exactly once"));
    }
    if ineligible_wrong > 0 {
        mismatches.push(format!(
            "{ineligible_wrong} ineligible attempts not reported as not_eligible"
        ));
    }
    let injected = planned
        .iter()
        .zip(&sent.request_ids)
        .filter(|(p, id)| matches!(p, Planned::Voter { first: false, .. }) && id.is_some())
        .count() as u64;
    let duplicates: u64 = per_voter.values().map(|(_, d)| d).sum();
    if duplicates != injected {
        mismatches.push(format!(
            "{duplicates} duplicates reported, {injected} injected"
        ));
    }
    mismatches
}

/// Polls the results until they match or stop changing, then compares.
async fn reconcile_results(
    client: &Client,
    expected: &BTreeMap<String, (u64, u64)>,
    timeout: Duration,
) -> Result<Vec<String>> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut mismatches = Vec::new();
        for (law, (oui, non)) in expected {
            let got = client.get(&format!("/api/v1/results/{law}")).await?;
            let counts = (
                got["oui"].as_u64(),
                got["non"].as_u64(),
                got["audited"].as_u64(),
            );
            if counts != (Some(*oui), Some(*non), Some(oui + non)) {
                mismatches.push(format!(
                    "{law}: expected oui {oui} non {non} audited {}, got {got}",
                    oui + non
                ));
            }
        }
        if mismatches.is_empty() || Instant::now() > deadline {
            return Ok(mismatches);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn random_run_id() -> String {
    let mut bytes = [0u8; 4];
    openssl::rand::rand_bytes(&mut bytes).expect("the system random generator works");
    crate::domain::hex(&bytes)
}

/// Runs the whole load test.
pub async fn run(config: &LoadgenConfig) -> Result<LoadgenReport> {
    let run_id = random_run_id();
    let referendum = Arc::new(Referendum::new(run_id.clone(), config.voters));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(config.concurrency.max(1))
        .timeout(Duration::from_secs(30))
        .build()?;
    let client = Arc::new(Client {
        http,
        server: config.server.trim_end_matches('/').to_owned(),
        admin_token: config.admin_token.clone(),
    });
    client
        .setup(&referendum)
        .await
        .context("setting up the referendum")?;
    let mut rng = Rng(u64::from_str_radix(&run_id, 16).unwrap_or(1));
    let planned = Arc::new(plan(config, &mut rng));
    let sent = send_all(client.clone(), referendum.clone(), planned.clone(), config).await;
    let ids: Vec<(usize, String)> = sent
        .request_ids
        .iter()
        .enumerate()
        .filter_map(|(i, id)| id.clone().map(|id| (i, id)))
        .collect();
    let just_ids: Vec<String> = ids.iter().map(|(_, id)| id.clone()).collect();
    let statuses = decided_statuses(&client, &just_ids, config.drain_timeout).await?;
    let indexed: Vec<(usize, Value)> = ids.iter().map(|(i, _)| *i).zip(statuses).collect();
    let mut mismatches = reconcile_statuses(&planned, &sent, &indexed);
    let expected = expected_results(&referendum, &planned);
    mismatches.extend(reconcile_results(&client, &expected, config.drain_timeout).await?);
    let mut latencies = sent.latencies.clone();
    latencies.sort_unstable();
    let accepted: u64 = expected.values().map(|(o, n)| o + n).sum();
    Ok(LoadgenReport {
        sent: planned.len(),
        failed_requests: sent.failed,
        send_seconds: sent.seconds,
        accepted_per_second: accepted as f64 / sent.seconds.max(1e-9),
        p50_ms: percentile_ms(&latencies, 50.0),
        p95_ms: percentile_ms(&latencies, 95.0),
        p99_ms: percentile_ms(&latencies, 99.0),
        windows: sent.windows,
        mismatches,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(voters: usize, votes: f64, duplicate_rate: f64, invalid_rate: f64) -> LoadgenConfig {
        LoadgenConfig {
            server: String::new(),
            admin_token: String::new(),
            voters,
            rate: votes,
            duration: Duration::from_secs(1),
            duplicate_rate,
            invalid_rate,
            concurrency: 1,
            drain_timeout: Duration::from_secs(1),
            window: Duration::from_secs(60),
        }
    }

    #[test]
    fn plans_mix_first_votes_repeats_and_ineligible_attempts() {
        let planned = plan(&config(1000, 2000.0, 0.1, 0.05), &mut Rng(7));
        assert_eq!(planned.len(), 2000);
        let firsts = planned
            .iter()
            .filter(|p| matches!(p, Planned::Voter { first: true, .. }))
            .count();
        assert_eq!(
            firsts, 1000,
            "every voter votes once the plan is long enough"
        );
        for (i, vote) in planned.iter().enumerate() {
            if let Planned::Voter {
                index,
                first: false,
            } = vote
            {
                let earlier = planned[..i].contains(&Planned::Voter {
                    index: *index,
                    first: true,
                });
                assert!(earlier, "a repeat follows its voter's first vote");
            }
        }
    }

    #[test]
    fn a_window_counts_its_answers_and_those_without_a_202() {
        let answers = (1..=100)
            .map(|ms| (Duration::from_millis(ms), ms % 10 != 0))
            .collect();
        let window = WindowFigures::close(60.0, answers);
        assert_eq!((window.answered, window.failed), (100, 10));
        assert_eq!((window.p50_ms, window.p95_ms), (51.0, 95.0));
        assert!(window
            .to_string()
            .starts_with("at 60 s: 100 answers (10 without 202)"));
    }

    #[test]
    fn percentiles_pick_by_rank() {
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile_ms(&sorted, 50.0), 51.0);
        assert_eq!(percentile_ms(&sorted, 99.0), 99.0);
        assert_eq!(percentile_ms(&[], 95.0), 0.0);
    }
}
