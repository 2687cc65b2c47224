//! The referendum pipeline end to end in the embedded mode: HTTP submission,
//! validation, aggregation and review on the data directory's SQLite files.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use amarvote::commands::referendum::embedded::{self, EmbeddedConfig};
use amarvote::commands::referendum::parts::Parts;
use amarvote::domain::vote_messages::{encode, VoteMessage};
use amarvote::domain::voter_hash::{Choice, LockKey, VoterHash};
use amarvote::metrics::referendum::ReferendumMetrics;
use amarvote::ports::vote_queue::Stream;
use amarvote::ports::voter_registry::MarkOutcome;
use amarvote::referendum::VoteLimits;
use serde_json::{json, Value};
use tokio::sync::watch;

const ADMIN: &str = "test-admin-token";

struct Server {
    url: String,
    client: reqwest::Client,
    parts: Parts,
    _shutdown: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

/// Limits for tests that send from one address faster than a voter would.
fn unthrottled() -> VoteLimits {
    VoteLimits {
        per_client: 1_000_000,
        ..VoteLimits::default()
    }
}

async fn start(limits: VoteLimits) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let (tx, rx) = watch::channel(false);
    let config = EmbeddedConfig {
        data_dir: dir.path(),
        admin_token: ADMIN.to_owned(),
        limits,
    };
    let pipeline = embedded::start(config, ReferendumMetrics::new(), rx.clone())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = pipeline
        .router
        .clone()
        .into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server {
        url: format!("http://{addr}"),
        client: reqwest::Client::new(),
        parts: pipeline.parts,
        _shutdown: tx,
        _dir: dir,
    }
}

impl Server {
    async fn admin(&self, path: &str, body: Value) -> Value {
        let response = self
            .client
            .post(format!("{}{path}", self.url))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.json().await.unwrap()
    }

    async fn setup(&self, law_id: &str, voters: &[(&str, &str)]) {
        self.admin("/api/v1/admin/laws", json!({ "law_id": law_id }))
            .await;
        let rows: Vec<Value> = voters
            .iter()
            .map(|(nas, code)| json!({ "nas": nas, "code": code, "law_id": law_id }))
            .collect();
        let loaded = self
            .admin("/api/v1/admin/voters", json!({ "voters": rows }))
            .await;
        assert_eq!(loaded["added"], voters.len());
    }

    async fn vote(&self, body: Value) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}/api/v1/vote", self.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    async fn accepted_vote(&self, nas: &str, code: &str, law_id: &str, vote: &str) -> String {
        let body = json!({ "nas": nas, "code": code, "law_id": law_id, "vote": vote });
        let (status, answer) = self.vote(body).await;
        assert_eq!(status, 202, "{answer}");
        answer["request_id"].as_str().unwrap().to_owned()
    }

    async fn get(&self, path: &str) -> Value {
        let response = self
            .client
            .get(format!("{}{path}", self.url))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        response.json().await.unwrap()
    }

    /// Polls the voter's status endpoint until the vote is decided.
    async fn outcome(&self, request_id: &str) -> Value {
        for _ in 0..200 {
            let status = self.get(&format!("/api/v1/vote/{request_id}")).await;
            if status["status"] != "pending" {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{request_id} still pending");
    }

    /// Polls until `check` holds on the value `path` returns.
    async fn eventually(&self, path: &str, check: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        for _ in 0..200 {
            last = self.get(path).await;
            if check(&last) {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{path} never reached the expected state: {last}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_of_vote_reaches_its_outcome_and_tables() {
    let server = start(unthrottled()).await;
    server
        .setup(
            "loi-1",
            &[("123456789", "ABCD1234"), ("987654321", "WXYZ9876")],
        )
        .await;

    let eligible = server
        .accepted_vote("123456789", "abcd1234", "loi-1", "oui")
        .await;
    assert_eq!(server.outcome(&eligible).await["status"], "accepted");

    let again = server
        .accepted_vote("123456789", "ABCD1234", "loi-1", "non")
        .await;
    let duplicate = server.outcome(&again).await;
    assert_eq!(
        (duplicate["status"].as_str(), duplicate["attempts"].as_u64()),
        (Some("duplicate"), Some(1))
    );
    let third = server
        .accepted_vote("123456789", "ABCD1234", "loi-1", "non")
        .await;
    assert_eq!(server.outcome(&third).await["attempts"], 2);

    let stranger = server
        .accepted_vote("111111111", "ABCD1234", "loi-1", "oui")
        .await;
    assert_eq!(server.outcome(&stranger).await["status"], "not_eligible");

    let results = server
        .eventually("/api/v1/results/loi-1", |r| r["oui"] == 1)
        .await;
    assert_eq!(
        results,
        json!({ "law_id": "loi-1", "oui": 1, "non": 0, "audited": 1 })
    );
    let summary = server
        .eventually("/api/v1/admin/referendum/summary", |s| {
            s["duplicate_attempts"] == 2
        })
        .await;
    assert_eq!(summary["duplicate_voters"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_and_unknown_laws_are_rejected_by_field() {
    let server = start(unthrottled()).await;
    server.setup("loi-1", &[("123456789", "ABCD1234")]).await;
    let good = json!({ "nas": "123456789", "code": "ABCD1234", "law_id": "loi-1", "vote": "oui" });
    let cases = [
        ("nas", json!("12345")),
        ("code", json!("a!")),
        ("law_id", json!("loi 1")),
        ("law_id", json!("loi-inconnue")),
        ("vote", json!("peut-être")),
    ];
    for (field, value) in cases {
        let mut body = good.clone();
        body[field] = value;
        let (status, answer) = server.vote(body).await;
        assert_eq!(
            (status, answer["field"].as_str()),
            (400, Some(field)),
            "{answer}"
        );
        assert!(!answer.to_string().contains("123456789"), "{answer}");
    }
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("code");
    let (status, answer) = server.vote(missing).await;
    assert_eq!((status, answer["field"].as_str()), (400, Some("code")));
    let (status, _) = server.vote(json!("not an object")).await;
    assert_eq!(status, 400);
    let (status, answer) = server
        .vote(json!(["123456789", "ABCD1234", "loi-1", "oui"]))
        .await;
    assert_eq!(
        (status, answer["status"].as_u64()),
        (400, Some(400)),
        "{answer}"
    );
    let mut extra = good.clone();
    extra["weight"] = json!(2);
    let (status, answer) = server.vote(extra).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("weight"),
        "{answer}"
    );
    let mut short = good.clone();
    short["code"] = json!("ABC1234");
    let (status, answer) = server.vote(short).await;
    assert_eq!(
        (status, answer["field"].as_str()),
        (400, Some("code")),
        "{answer}"
    );
    assert!(
        answer["error"].as_str().unwrap().contains("8 to 32"),
        "{answer}"
    );

    let laws = format!("{}/api/v1/admin/laws", server.url);
    let anonymous = server
        .client
        .post(&laws)
        .json(&json!({ "law_id": "loi-2" }));
    let answer = anonymous.send().await.unwrap();
    assert_eq!(
        answer.status().as_u16(),
        401,
        "no token: as the election API"
    );
    let wrong = server.client.post(&laws).bearer_auth("not-the-token");
    let answer = wrong
        .json(&json!({ "law_id": "loi-2" }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        answer.status().as_u16(),
        403,
        "a wrong token: as the election API"
    );
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["status"], 403, "the one error shape: {body}");

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let results = server.get("/api/v1/results/loi-1").await;
    assert_eq!(
        results["audited"], 0,
        "nothing refused was counted: {results}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_never_issued_is_not_found() {
    let server = start(unthrottled()).await;
    server.setup("loi-1", &[("123456789", "ABCD1234")]).await;
    let issued = server
        .accepted_vote("123456789", "ABCD1234", "loi-1", "oui")
        .await;
    assert_eq!(server.outcome(&issued).await["status"], "accepted");
    let last = issued.chars().last().unwrap();
    let forged = format!(
        "{}{}",
        &issued[..issued.len() - 1],
        if last == '0' { '1' } else { '0' }
    );
    let answer = server
        .client
        .get(format!("{}/api/v1/vote/{forged}", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 404);
    let malformed = server
        .client
        .get(format!("{}/api/v1/vote/vote-1234", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status().as_u16(), 400);
    let batch = server
        .client
        .post(format!("{}/api/v1/votes/status", server.url))
        .json(&json!({ "request_ids": [issued, forged] }))
        .send()
        .await
        .unwrap();
    let batch: Value = batch.json().await.unwrap();
    assert_eq!(batch["statuses"][0]["status"], "accepted");
    assert_eq!(batch["statuses"][1]["status"], "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_codes_locks_the_nas_out_of_the_law_until_an_administrator_lifts_it() {
    let server = start(unthrottled()).await;
    server
        .setup(
            "loi-g",
            &[("123456789", "RGHT2345"), ("987654321", "0THER234")],
        )
        .await;
    let mut guesses = Vec::new();
    for n in 0..5 {
        let code = format!("WR0NG{n:03}");
        guesses.push(
            server
                .accepted_vote("123456789", &code, "loi-g", "oui")
                .await,
        );
    }
    for guess in &guesses {
        assert_eq!(server.outcome(guess).await["status"], "not_eligible");
    }
    let right = server
        .accepted_vote("123456789", "RGHT2345", "loi-g", "non")
        .await;
    assert_eq!(
        server.outcome(&right).await["status"],
        "locked",
        "after 5 wrong codes even the right one is locked, and says nothing"
    );
    let neighbour = server
        .accepted_vote("987654321", "0THER234", "loi-g", "oui")
        .await;
    assert_eq!(server.outcome(&neighbour).await["status"], "accepted");

    let locks = server.get("/api/v1/admin/locks").await;
    assert_eq!(locks["total"], 1, "{locks}");
    assert_eq!(locks["locks"][0]["law_id"], "loi-g");
    assert!(
        !locks.to_string().contains("123456789"),
        "no NAS in the listing"
    );
    let lifted = server
        .admin(
            "/api/v1/admin/locks/lift",
            json!({ "nas": "123456789", "law_id": "loi-g" }),
        )
        .await;
    assert_eq!(lifted["lock_id"], locks["locks"][0]["lock_id"]);
    let again = server
        .accepted_vote("123456789", "RGHT2345", "loi-g", "non")
        .await;
    assert_eq!(server.outcome(&again).await["status"], "accepted");
    let results = server
        .eventually("/api/v1/results/loi-g", |r| r["audited"] == 2)
        .await;
    assert_eq!(
        (results["oui"].as_u64(), results["non"].as_u64()),
        (Some(1), Some(1))
    );
    let summary = server
        .eventually("/api/v1/admin/referendum/summary", |s| s["locked"] == 0)
        .await;
    assert_eq!(summary["registry"]["readiness"], "ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_queue_messages_are_dead_lettered() {
    let server = start(unthrottled()).await;
    let queue = &server.parts.queue;
    queue
        .publish(Stream::Validation, &[b"{not json".to_vec()])
        .await
        .unwrap();
    queue
        .publish(Stream::Aggregation, &[b"[]".to_vec()])
        .await
        .unwrap();
    server
        .eventually("/api/v1/admin/referendum/summary", |s| {
            s["dead_letters"]["votes.validation"] == 1
                && s["dead_letters"]["votes.aggregation"] == 1
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_accepted_vote_is_counted_once() {
    let server = start(unthrottled()).await;
    server.setup("loi-r", &[]).await;
    let vote = VoteMessage {
        request_id: "vote-000000000000000000000001".to_owned(),
        voter_hash: VoterHash::from_bytes([7; 32]),
        lock_key: LockKey(VoterHash::from_bytes([8; 32])),
        law_id: "loi-r".to_owned(),
        vote: Choice::Non,
        sequence: 1,
        received_at: 1,
    };
    let body = encode(&vote);
    let queue = &server.parts.queue;
    queue
        .publish(Stream::Aggregation, &[body.clone(), body.clone()])
        .await
        .unwrap();
    server
        .eventually("/api/v1/results/loi-r", |r| r["non"] == 1)
        .await;
    queue.publish(Stream::Aggregation, &[body]).await.unwrap();
    server
        .eventually("/api/v1/admin/referendum/summary", |s| {
            s["queue_depth"]["votes.aggregation"] == 0
        })
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let results = server.get("/api/v1/results/loi-r").await;
    assert_eq!(
        results,
        json!({ "law_id": "loi-r", "oui": 0, "non": 1, "audited": 1 })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_validators_accept_a_voter_once() {
    let server = start(unthrottled()).await;
    server.setup("loi-c", &[("222222222", "RACE0001")]).await;
    let (_stop, shutdown) = watch::channel(false);
    let _second_validators = embedded::spawn_workers(
        &server.parts,
        &unthrottled(),
        &ReferendumMetrics::new(),
        &shutdown,
    );
    let server = Arc::new(server);
    let attempts: Vec<_> = (0..20)
        .map(|_| {
            let server = server.clone();
            tokio::spawn(async move {
                server
                    .accepted_vote("222222222", "RACE0001", "loi-c", "oui")
                    .await
            })
        })
        .collect();
    let mut ids = Vec::new();
    for attempt in attempts {
        ids.push(attempt.await.unwrap());
    }
    let results = server
        .eventually("/api/v1/results/loi-c", |r| r["oui"] == 1)
        .await;
    assert_eq!(results["audited"], 1);
    let mut statuses = Vec::new();
    for id in &ids {
        statuses.push(
            server.outcome(id).await["status"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let accepted = statuses.iter().filter(|s| *s == "accepted").count();
    assert_eq!(accepted, 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| *s == "duplicate").count(), 19);
}

/// A vote message as the API would publish it, with a sequence of the test's choosing.
fn attempt(request: u32, sequence: u64, hash: u8, vote: Choice, law: &str) -> VoteMessage {
    VoteMessage {
        request_id: format!("vote-{request:040}"),
        voter_hash: VoterHash::from_bytes([hash; 32]),
        lock_key: LockKey(VoterHash::from_bytes([hash ^ 0xff; 32])),
        law_id: law.to_owned(),
        vote,
        sequence,
        received_at: 1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_earlier_attempt_decided_after_a_later_one_takes_its_place() {
    let server = start(unthrottled()).await;
    server.setup("loi-o", &[]).await;
    let voter = 9;
    server
        .parts
        .registry
        .load(vec![VoterHash::from_bytes([voter; 32])])
        .await
        .unwrap();
    server.parts.registry.finish_load(1).await.unwrap();
    let queue = &server.parts.queue;
    let later = attempt(2, 20, voter, Choice::Non, "loi-o");
    let earlier = attempt(1, 10, voter, Choice::Oui, "loi-o");
    queue
        .publish(Stream::Validation, &[encode(&later)])
        .await
        .unwrap();
    server
        .eventually("/api/v1/results/loi-o", |r| r["non"] == 1)
        .await;
    queue
        .publish(Stream::Validation, &[encode(&earlier)])
        .await
        .unwrap();
    let results = server
        .eventually("/api/v1/results/loi-o", |r| r["oui"] == 1)
        .await;
    assert_eq!(
        results,
        json!({ "law_id": "loi-o", "oui": 1, "non": 0, "audited": 1 }),
        "the earlier attempt's choice replaced the later one's in the same transaction"
    );
    let outcomes = server
        .parts
        .registry
        .outcomes(vec![earlier.request_id.clone(), later.request_id.clone()])
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        vec![
            Some(MarkOutcome::Accepted),
            Some(MarkOutcome::Duplicate { attempts: 1 })
        ]
    );
    // Replays of either change nothing.
    queue
        .publish(Stream::Aggregation, &[encode(&later), encode(&earlier)])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(server.get("/api/v1/results/loi-o").await, results);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn votes_wait_for_the_registry_instead_of_being_told_not_eligible() {
    let server = start(unthrottled()).await;
    server
        .admin("/api/v1/admin/laws", json!({ "law_id": "loi-w" }))
        .await;
    let early = server
        .accepted_vote("123456789", "ABCD1234", "loi-w", "oui")
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let status = server.get(&format!("/api/v1/vote/{early}")).await;
    assert_eq!(
        status["status"], "pending",
        "no registry yet: the vote waits"
    );
    let health = server.get("/api/v1/health").await;
    assert_eq!(health["status"], "degraded", "{health}");
    let first_part = json!({
        "voters": [{ "nas": "123456789", "code": "ABCD1234", "law_id": "loi-w" }],
        "complete": false,
    });
    server.admin("/api/v1/admin/voters", first_part).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let status = server.get(&format!("/api/v1/vote/{early}")).await;
    assert_eq!(status["status"], "pending", "the list is not complete yet");
    let last_part =
        json!({ "voters": [{ "nas": "987654321", "code": "WXYZ9876", "law_id": "loi-w" }] });
    server.admin("/api/v1/admin/voters", last_part).await;
    assert_eq!(server.outcome(&early).await["status"], "accepted");
    let health = server
        .eventually("/api/v1/health", |h| h["status"] == "ok")
        .await;
    assert_eq!(health["registry"]["loaded"], 2);
    let positional = json!({ "voters": [["111111111", "ABCD1234", "loi-w"]] });
    let answer = server
        .client
        .post(format!("{}/api/v1/admin/voters", server.url))
        .bearer_auth(ADMIN)
        .json(&positional)
        .send()
        .await
        .unwrap();
    assert_eq!(
        answer.status().as_u16(),
        400,
        "a row given as an array is refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_rate_is_refused() {
    let server = start(VoteLimits {
        per_client: 2,
        ..VoteLimits::default()
    })
    .await;
    let health = format!("{}/api/v1/health", server.url);
    let mut codes = Vec::new();
    let mut retry_after = None;
    for _ in 0..3 {
        let answer = server.client.get(&health).send().await.unwrap();
        codes.push(answer.status().as_u16());
        retry_after = answer.headers().get("retry-after").cloned();
    }
    assert_eq!(codes, vec![200, 200, 429]);
    assert_eq!(retry_after.unwrap().to_str().unwrap(), "1");
    assert_eq!(
        VoteLimits::default().per_client,
        20,
        "the default is a voter's pace"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_loadgen_run_reconciles_exactly() {
    use amarvote::commands::referendum::loadgen::run;
    let server = start(unthrottled()).await;
    let report = run(&common::small_loadgen(&server.url, ADMIN))
        .await
        .unwrap();
    assert_eq!(report.sent, 2_000);
    assert!(report.reconciled(), "{report:?}");
    let windows = &report.windows;
    assert!(
        windows.len() >= 2,
        "a line per second of sending: {windows:?}"
    );
    let answered: usize = windows.iter().map(|w| w.answered).sum();
    assert_eq!(answered, report.sent, "every answer falls in one window");
}
