//! The referendum pipeline end to end in the embedded mode: HTTP submission,
//! validation, aggregation and review on the data directory's SQLite files.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use amarvote::referendum::embedded::{self, EmbeddedConfig, EmbeddedParts};
use amarvote::referendum::messages::{encode, VoteMessage};
use amarvote::referendum::metrics::ReferendumMetrics;
use amarvote::referendum::queue::Stream;
use amarvote::referendum::rate_limit::RateLimit;
use amarvote::referendum::voter_hash::{Choice, VoterHash};
use serde_json::{json, Value};
use tokio::sync::watch;

const ADMIN: &str = "test-admin-token";

struct Server {
    url: String,
    client: reqwest::Client,
    parts: EmbeddedParts,
    _shutdown: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

async fn start(rate_limit: RateLimit) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let (tx, rx) = watch::channel(false);
    let config = EmbeddedConfig {
        data_dir: dir.path(),
        admin_token: ADMIN.to_owned(),
        rate_limit,
    };
    let pipeline = embedded::start(config, ReferendumMetrics::new(), rx.clone())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = pipeline
        .router
        .into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server {
        url: format!("http://{addr}"),
        client: reqwest::Client::new(),
        parts: embedded::open_parts(dir.path()).await.unwrap(),
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
    let server = start(RateLimit::default()).await;
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
    let server = start(RateLimit::default()).await;
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
    let unauthorised = server
        .client
        .post(format!("{}/api/v1/admin/laws", server.url))
        .json(&json!({ "law_id": "loi-2" }))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorised.status().as_u16(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_queue_messages_are_dead_lettered() {
    let server = start(RateLimit::default()).await;
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
    let server = start(RateLimit::default()).await;
    server.setup("loi-r", &[]).await;
    let vote = VoteMessage {
        request_id: "vote-000000000000000000000001".to_owned(),
        voter_hash: VoterHash::from_bytes([7; 32]),
        law_id: "loi-r".to_owned(),
        vote: Choice::Non,
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
    let server = start(RateLimit::default()).await;
    server.setup("loi-c", &[("222222222", "RACE0001")]).await;
    let (_stop, shutdown) = watch::channel(false);
    let _second_validators =
        embedded::spawn_workers(&server.parts, &ReferendumMetrics::new(), &shutdown);
    let server = Arc::new(server);
    let attempts: Vec<_> = (0..20)
        .map(|_| {
            let server = server.clone();
            tokio::spawn(async move {
                let id = server
                    .accepted_vote("222222222", "RACE0001", "loi-c", "oui")
                    .await;
                server.outcome(&id).await["status"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for attempt in attempts {
        statuses.push(attempt.await.unwrap());
    }
    let accepted = statuses.iter().filter(|s| *s == "accepted").count();
    assert_eq!(accepted, 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| *s == "duplicate").count(), 19);
    let results = server
        .eventually("/api/v1/results/loi-c", |r| r["oui"] == 1)
        .await;
    assert_eq!(results["audited"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_rate_is_refused() {
    let server = start(RateLimit {
        per_second: 1.0,
        burst: 2.0,
    })
    .await;
    let health = format!("{}/api/v1/health", server.url);
    let mut codes = Vec::new();
    for _ in 0..3 {
        codes.push(
            server
                .client
                .get(&health)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert_eq!(codes, vec![200, 200, 429]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_loadgen_run_reconciles_exactly() {
    use amarvote::referendum::loadgen::run;
    let server = start(RateLimit::default()).await;
    let report = run(&common::small_loadgen(&server.url, ADMIN))
        .await
        .unwrap();
    assert_eq!(report.sent, 2_000);
    assert!(report.reconciled(), "{report:?}");
}
