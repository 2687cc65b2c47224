//! Referendum voters as an independent client drives them: each voter makes several
//! attempts with different choices at random moments, against API addresses that may be
//! killed meanwhile, resubmitting what got no 202. Then the check the referendum owes
//! them: for every voter, the attempt answered 202 first is the one counted and every
//! later one is a duplicate, the totals are the earliest choices, and every status is
//! final soon after the last restart.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};

/// Voter `i`'s NAS and mailed code (codes of the mailing alphabet, 9 characters).
pub fn credentials(i: usize) -> (String, String) {
    (format!("{:09}", 300_000_000 + i), format!("V{i:07}X"))
}

/// One attempt, as the client saw it.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub voter: usize,
    pub choice: &'static str,
    pub request_id: String,
    /// When the 202 arrived.
    pub answered_at: Instant,
    /// Tries of this attempt that got no answer (the server may have queued them).
    pub unanswered_tries: usize,
    /// When its first try was sent.
    pub sent_at: Instant,
}

/// A small deterministic generator, so a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// Creates the law and loads `voters` voters through the administrator API.
pub async fn set_up(http: &reqwest::Client, base: &str, admin: &str, law: &str, voters: usize) {
    let created = http
        .post(format!("{base}/api/v1/admin/laws"))
        .bearer_auth(admin)
        .json(&json!({ "law_id": law }))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success(), "{:?}", created.text().await);
    let rows: Vec<Value> = (0..voters)
        .map(|i| {
            let (nas, code) = credentials(i);
            json!({ "nas": nas, "code": code, "law_id": law })
        })
        .collect();
    let loaded = http
        .post(format!("{base}/api/v1/admin/voters"))
        .bearer_auth(admin)
        .json(&json!({ "voters": rows }))
        .send()
        .await
        .unwrap();
    assert!(loaded.status().is_success(), "{:?}", loaded.text().await);
}

/// Submits one attempt until some address answers 202.
async fn submit(
    http: &reqwest::Client,
    bases: &[String],
    body: &Value,
    mut turn: usize,
) -> (String, Instant, usize) {
    let mut unanswered = 0;
    loop {
        let base = &bases[turn % bases.len()];
        turn += 1;
        match http
            .post(format!("{base}/api/v1/vote"))
            .json(body)
            .send()
            .await
        {
            Ok(response) if response.status().as_u16() == 202 => {
                let answered_at = Instant::now();
                let answer: Value = response.json().await.unwrap();
                let id = answer["request_id"].as_str().unwrap().to_owned();
                return (id, answered_at, unanswered);
            }
            Ok(response) if response.status().is_client_error() => {
                panic!("a valid vote refused: {}", response.status())
            }
            _ => unanswered += 1,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every voter makes `attempts` attempts at random moments within `spread`, each with a
/// random choice; returns every attempt that was answered 202.
pub async fn vote(
    http: &reqwest::Client,
    bases: Arc<Vec<String>>,
    law: &str,
    voters: usize,
    attempts: usize,
    spread: Duration,
) -> Vec<Attempt> {
    let mut rng = Rng(0x5eed_0000 + voters as u64);
    let mut plan: Vec<(Duration, usize, bool)> = Vec::new();
    for voter in 0..voters {
        for _ in 0..attempts {
            let at = spread.mul_f64((rng.next() % 10_000) as f64 / 10_000.0);
            plan.push((at, voter, rng.next().is_multiple_of(2)));
        }
    }
    plan.sort_by_key(|(at, ..)| *at);
    let started = Instant::now();
    futures_util::stream::iter(plan.into_iter().enumerate())
        .map(|(n, (at, voter, oui))| {
            let (http, bases, law) = (http.clone(), bases.clone(), law.to_owned());
            let choice = if oui { "oui" } else { "non" };
            async move {
                tokio::time::sleep_until((started + at).into()).await;
                let (nas, code) = credentials(voter);
                let body = json!({ "nas": nas, "code": code, "law_id": law, "vote": choice });
                let sent_at = Instant::now();
                let (request_id, answered_at, unanswered_tries) =
                    submit(&http, &bases, &body, n).await;
                Attempt {
                    voter,
                    choice,
                    request_id,
                    answered_at,
                    unanswered_tries,
                    sent_at,
                }
            }
        })
        .buffer_unordered(64)
        .collect()
        .await
}

/// Polls every attempt's status until none is pending; returns them by request id and
/// how long that took.
pub async fn final_statuses(
    http: &reqwest::Client,
    base: &str,
    attempts: &[Attempt],
    patience: Duration,
) -> (BTreeMap<String, Value>, Duration) {
    let started = Instant::now();
    let mut statuses = BTreeMap::new();
    loop {
        statuses.clear();
        let ids: Vec<&String> = attempts.iter().map(|a| &a.request_id).collect();
        for chunk in ids.chunks(1_000) {
            let answer = http
                .post(format!("{base}/api/v1/votes/status"))
                .json(&json!({ "request_ids": chunk }))
                .send()
                .await;
            let Ok(answer) = answer else { break };
            let Ok(answer) = answer.json::<Value>().await else {
                break;
            };
            for status in answer["statuses"].as_array().into_iter().flatten() {
                statuses.insert(
                    status["request_id"].as_str().unwrap().to_owned(),
                    status.clone(),
                );
            }
        }
        let pending = attempts.len()
            - statuses
                .values()
                .filter(|s| s["status"] != "pending")
                .count();
        if pending == 0 && statuses.len() == attempts.len() {
            return (statuses, started.elapsed());
        }
        assert!(
            started.elapsed() < patience,
            "{pending} statuses still pending after {patience:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the check found, for the test's report.
#[derive(Debug)]
pub struct Verdict {
    pub voters: usize,
    pub attempts: usize,
    /// Voters none of whose answered attempts is counted because a try that got no
    /// answer (cut by a kill after the server had queued it) was sent before their first
    /// 202: that try is the earliest, and counts.
    pub lost_answer_counted: usize,
    pub oui: u64,
    pub non: u64,
}

/// For every voter: exactly one answered attempt is accepted and every other one a
/// duplicate (unless a try whose answer was lost came first, which then counts), and the
/// accepted one was sent no later than the voter's first 202: an attempt sent after a 202
/// never overturns it. Attempts in flight together (sent before either's 202) may count
/// in either order: neither was answered when the other was made. The totals are the
/// counted choices. Panics naming the first voter wronged.
pub fn check(attempts: &[Attempt], statuses: &BTreeMap<String, Value>, results: &Value) -> Verdict {
    let mut by_voter: BTreeMap<usize, Vec<&Attempt>> = BTreeMap::new();
    for attempt in attempts {
        by_voter.entry(attempt.voter).or_default().push(attempt);
    }
    let status = |a: &Attempt| {
        statuses[&a.request_id]["status"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (mut oui, mut non, mut undecided, mut lost_answer_counted) = (0, 0, 0, 0);
    for (voter, mine) in &by_voter {
        let mut mine = mine.clone();
        mine.sort_by_key(|a| a.answered_at);
        let first = mine[0];
        let accepted: Vec<&&Attempt> = mine.iter().filter(|a| status(a) == "accepted").collect();
        let counted_choice = if let [winner] = accepted.as_slice() {
            assert!(
                winner.sent_at <= first.answered_at,
                "voter {voter}: {} was sent after the 202 of {} and overturned it: {mine:#?}",
                winner.request_id,
                first.request_id
            );
            Some(winner.choice)
        } else {
            assert!(
                accepted.is_empty(),
                "voter {voter}: two accepted: {mine:#?}"
            );
            let cut: Vec<_> = mine
                .iter()
                .filter(|a| a.unanswered_tries > 0 && a.sent_at <= first.answered_at)
                .collect();
            assert!(!cut.is_empty(), "voter {voter}: nothing counted: {mine:#?}");
            lost_answer_counted += 1;
            let choice = cut[0].choice;
            cut.iter().all(|a| a.choice == choice).then_some(choice)
        };
        match counted_choice {
            Some("oui") => oui += 1,
            Some(_) => non += 1,
            None => undecided += 1,
        }
        for other in mine.iter().filter(|a| status(a) != "accepted") {
            assert_eq!(
                status(other),
                "duplicate",
                "voter {voter}: an attempt not counted is not a duplicate: {mine:#?}"
            );
        }
    }
    let got = (
        results["oui"].as_u64(),
        results["non"].as_u64(),
        results["audited"].as_u64(),
    );
    let (Some(got_oui), Some(got_non), Some(audited)) = got else {
        panic!("no results: {results}")
    };
    assert!(
        (oui..=oui + undecided).contains(&got_oui)
            && (non..=non + undecided).contains(&got_non)
            && got_oui + got_non == by_voter.len() as u64
            && audited == got_oui + got_non,
        "the totals are not the counted choices (oui {oui} non {non}, {undecided} voters \
         either way): {results}"
    );
    Verdict {
        voters: by_voter.len(),
        attempts: attempts.len(),
        lost_answer_counted,
        oui: got_oui,
        non: got_non,
    }
}

/// Polls the law's results until every one of `voters` voters is counted (each voted at
/// least once), and returns them.
pub async fn counted_results(
    http: &reqwest::Client,
    base: &str,
    law: &str,
    voters: usize,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now: Value = match http
            .get(format!("{base}/api/v1/results/{law}"))
            .send()
            .await
        {
            Ok(response) => response.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        if now["audited"].as_u64() == Some(voters as u64) {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "not every voter was counted: {now}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
