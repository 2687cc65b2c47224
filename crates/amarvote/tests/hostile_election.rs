//! The election service attacked as a hostile voter, a careless client or an abuser would
//! attack it, over HTTP against a real server (the embedded default, and PostgreSQL +
//! RabbitMQ where the SQL differs). Each test names the attack, asserts the answer, and
//! asserts that nothing already accepted changed. Ballots also come from the reference
//! library's own `encrypt_ballot` (tests/reference/encrypt_ballots.py), a client nobody
//! here wrote.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use amarvote::commands::client::Client;
use amarvote::domain::BallotState;
use common::{status_of, submit_ballot, without_nonces, TestServer, VoterDevice};
use electionguard::ballot::CiphertextBallot;
use serde_json::{json, Value};

const BALLOTS: &str = "submitted_ballots/submitted_ballot_";

async fn count(server: &TestServer, id: &str, state: BallotState) -> u64 {
    server.app.store.count_ballots(id, state).await.unwrap()
}

/// Runs the amarvote binary; (success, stdout + stderr).
fn amarvote(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_amarvote"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_voter_chosen_id_never_leaves_the_record_directory() {
    let server = common::embedded().await;
    let client = Client::new(&server.url);
    let (id, voters, _) = common::small_election(&client, &server.admin, 2).await;
    let mut device = VoterDevice::register(&server, &id, &voters[0], 71).await;
    let hostile = [
        "/../../manifest".to_string(),
        "/../../../../api/elections".to_string(),
        "a\0b".to_string(),
        "x".repeat(100),
        "ballot.json".to_string(),
        "Ballot-1".to_string(),
        String::new(),
    ];
    for (i, object_id) in hostile.iter().enumerate() {
        let ballot = without_nonces(&device.encrypt(object_id, i as u64));
        let (status, body) = submit_ballot(&server, &id, &voters[0], &ballot, true).await;
        assert_eq!(status, 400, "{object_id:?}: {body}");
        assert!(
            body["error"].as_str().unwrap().starts_with("object_id"),
            "{body}"
        );
        device.next_seed = ballot.code_seed.clone();
    }
    assert_eq!(count(&server, &id, BallotState::Spoiled).await, 0);
    let challenged = without_nonces(&device.encrypt("challenged-1", 10));
    assert_eq!(
        submit_ballot(&server, &id, &voters[0], &challenged, true)
            .await
            .0,
        201
    );
    let cast = without_nonces(&device.encrypt("cast-1", 11));
    assert_eq!(
        submit_ballot(&server, &id, &voters[0], &cast, false)
            .await
            .0,
        201
    );
    common::cast(&client, &id, &voters[1], "contest-1-selection-2").await;
    let (status, body) = status_of(
        &server,
        reqwest::Method::GET,
        &format!("/api/elections/{id}/record"),
        None,
        "",
    )
    .await;
    assert_eq!(
        status, 409,
        "the record is published once voting closes: {body}"
    );
    common::close_voting(&client, &server.admin, &id).await;

    let listing = client
        .get(&format!("/api/elections/{id}/record"))
        .await
        .unwrap();
    let files: Vec<String> = serde_json::from_value(listing["files"].clone()).unwrap();
    for name in &files {
        amarvote::record_io::check_record_path(name).unwrap();
    }
    let tar = reqwest::get(format!("{}/api/elections/{id}/record.tar", server.url))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let mut archive = tar::Archive::new(tar.as_ref());
    let names: Vec<String> = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, files, "the archive holds every listed file, whole");

    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("record");
    let (ok, text) = amarvote(&[
        "record",
        "--server",
        &server.url,
        "--election",
        &id,
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    let fetched = std::fs::read_dir(dir.join("submitted_ballots"))
        .unwrap()
        .count();
    assert_eq!(fetched, 3, "both of voter 0's ballots and voter 1's");
    assert_eq!(
        std::fs::read_dir(out.path()).unwrap().count(),
        1,
        "nothing beside --out"
    );
    let (ok, text) = amarvote(&["verify", dir.to_str().unwrap()]);
    assert!(ok, "{text}");
    assert!(text.contains("[pass] ballot box completeness"), "{text}");

    // A ballot missing from the record is a failed check naming it, never a note.
    std::fs::remove_file(dir.join(format!("{BALLOTS}challenged-1.json"))).unwrap();
    let (ok, text) = amarvote(&["verify", dir.to_str().unwrap()]);
    assert!(!ok, "{text}");
    assert!(text.contains("[FAIL] ballot box completeness"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hostile_server_cannot_make_the_record_command_write_outside_its_directory() {
    use axum::routing::get;
    let files = json!({ "files": ["manifest.json", "submitted_ballots/submitted_ballot_/../../../../escaped.json"] });
    let router = axum::Router::new()
        .route(
            "/api/elections/e/record",
            get(move || {
                let files = files.clone();
                async move { axum::Json(files) }
            }),
        )
        .route("/api/elections/e/record/{*path}", get(|| async { "{}" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("a/b/c/record");
    let (ok, text) = tokio::task::spawn_blocking(move || {
        amarvote(&[
            "record",
            "--server",
            &url,
            "--election",
            "e",
            "--out",
            dir.to_str().unwrap(),
        ])
    })
    .await
    .unwrap();
    assert!(!ok, "{text}");
    assert!(text.contains("nothing was written"), "{text}");
    let mut written = Vec::new();
    walk(out.path(), &mut written);
    assert!(written.is_empty(), "{written:?}");
}

fn walk(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, found);
        } else {
            found.push(path);
        }
    }
}

async fn pending_ballots_change_only_for_their_credential(server: TestServer) {
    let client = Client::new(&server.url);
    let (id, voters, _) = common::small_election(&client, &server.admin, 2).await;
    let victim = encrypt_on_server(&client, &id, &voters[0], "contest-1-selection-1").await;
    let before = server
        .app
        .store
        .ballot(&id, &victim)
        .await
        .unwrap()
        .unwrap();

    let mut device = VoterDevice::register(&server, &id, &voters[1], 72).await;
    let forged = without_nonces(&device.encrypt(&victim, 5));
    let (status, body) = submit_ballot(&server, &id, &voters[1], &forged, false).await;
    assert_eq!(
        status, 409,
        "a submission under a pending ballot's id: {body}"
    );
    let (status, body) = status_of(
        &server,
        reqwest::Method::POST,
        &format!("/api/elections/{id}/ballots/{victim}/cast"),
        Some(&voters[1]),
        "{}",
    )
    .await;
    assert_eq!(
        status, 401,
        "casting another voter's pending ballot: {body}"
    );
    let after = server
        .app
        .store
        .ballot(&id, &victim)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (after.state, &after.body),
        (BallotState::Pending, &before.body)
    );

    let receipt = client
        .post(
            &format!("/api/elections/{id}/ballots/{victim}/cast"),
            Some(&voters[0]),
            &json!({}),
        )
        .await
        .unwrap();
    assert_eq!(receipt["state"], "cast");
    assert_eq!(count(&server, &id, BallotState::Cast).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pending_ballots_change_only_for_their_credential_embedded() {
    pending_ballots_change_only_for_their_credential(common::embedded().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pending_ballots_change_only_for_their_credential_postgres() {
    pending_ballots_change_only_for_their_credential(common::postgres_rabbitmq().await).await;
}

async fn copies_are_refused_and_challenges_capped(server: TestServer) {
    let client = Client::new(&server.url);
    let (id, voters, _) = common::small_election(&client, &server.admin, 3).await;
    let mut honest = VoterDevice::register(&server, &id, &voters[0], 81).await;
    let ballot = without_nonces(&honest.encrypt("honest-1", 1));
    assert_eq!(
        submit_ballot(&server, &id, &voters[0], &ballot, false)
            .await
            .0,
        201
    );
    // The attacker holds the stored ballot (once published, anyone does).
    let stored = server
        .app
        .store
        .ballot(&id, "honest-1")
        .await
        .unwrap()
        .unwrap();
    let published: CiphertextBallot = amarvote::service::codec::from_cbor(&stored.body).unwrap();

    let mut attacker = VoterDevice::register(&server, &id, &voters[1], 82).await;
    for (i, spoil) in [(0, true), (1, false)] {
        let copy = attacker.relabel(&published, &format!("copy-{i}"));
        let (status, body) = submit_ballot(&server, &id, &voters[1], &copy, spoil).await;
        assert_eq!(status, 409, "a copy (spoil: {spoil}): {body}");
        assert!(
            body["error"].as_str().unwrap().contains("copying"),
            "{body}"
        );
        attacker.next_seed = copy.code_seed.clone();
    }
    assert_eq!(count(&server, &id, BallotState::Spoiled).await, 0);
    assert_eq!(count(&server, &id, BallotState::Cast).await, 1);

    let max = server.app.settings.max_challenges_per_voter;
    let mut spoiler = VoterDevice::register(&server, &id, &voters[2], 83).await;
    for i in 0..max {
        let ballot = without_nonces(&spoiler.encrypt(&format!("spoil-{i}"), 100 + i));
        assert_eq!(
            submit_ballot(&server, &id, &voters[2], &ballot, true)
                .await
                .0,
            201
        );
    }
    let one_more = without_nonces(&spoiler.encrypt("spoil-more", 999));
    let (status, body) = submit_ballot(&server, &id, &voters[2], &one_more, true).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("challenged"),
        "{body}"
    );
    assert_eq!(count(&server, &id, BallotState::Spoiled).await, max);
    let (status, _) = submit_ballot(&server, &id, &voters[2], &one_more, false).await;
    assert_eq!(status, 201, "the voter can still cast");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn copies_are_refused_and_challenges_capped_embedded() {
    copies_are_refused_and_challenges_capped(common::embedded().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn copies_are_refused_and_challenges_capped_postgres() {
    copies_are_refused_and_challenges_capped(common::postgres_rabbitmq().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_code_a_device_shows_is_the_voters_code_and_its_chain_holds() {
    let server = common::embedded().await;
    let client = Client::new(&server.url);
    let (id, voters, _) = common::small_election(&client, &server.admin, 4).await;
    let mut device = VoterDevice::register(&server, &id, &voters[0], 91).await;
    let first = without_nonces(&device.encrypt("device-1", 1));
    let (status, receipt) = submit_ballot(&server, &id, &voters[0], &first, true).await;
    assert_eq!(status, 201, "{receipt}");
    assert_eq!(receipt["tracking_code"], first.code.to_hex());
    let lookup = client
        .get(&format!(
            "/api/elections/{id}/tracking/{}",
            first.code.to_hex()
        ))
        .await
        .unwrap();
    assert_eq!(lookup["ballot_id"], "device-1");

    let mut fork = VoterDevice::register(&server, &id, &voters[1], 92).await;
    fork.next_seed = device.device.hash();
    let forked = without_nonces(&fork.encrypt("fork-1", 2));
    let (status, body) = submit_ballot(&server, &id, &voters[1], &forked, false).await;
    assert_eq!(status, 409, "a second chain from a used seed: {body}");
    fork.next_seed = electionguard::group::ElementModQ::from_u64(7).unwrap();
    let unregistered = without_nonces(&fork.encrypt("stray-1", 3));
    let (status, body) = submit_ballot(&server, &id, &voters[1], &unregistered, false).await;
    assert_eq!(status, 409, "a seed of no registered device: {body}");
    let with_nonces = device.encrypt("device-2", 4);
    let mut wrong_code = without_nonces(&with_nonces);
    wrong_code.code = electionguard::group::ElementModQ::from_u64(1).unwrap();
    let (status, body) = submit_ballot(&server, &id, &voters[0], &wrong_code, false).await;
    assert_eq!(
        status, 400,
        "a code that is not H(seed, time, hash): {body}"
    );
    let (status, body) = submit_ballot(&server, &id, &voters[0], &with_nonces, false).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().starts_with("nonce"),
        "{body}"
    );
    // Seeds are public: another voter continuing this device's chain would break it.
    let mut hijacker = VoterDevice::register(&server, &id, &voters[2], 93).await;
    hijacker.next_seed = first.code.clone();
    let hijack = without_nonces(&hijacker.encrypt("hijack-1", 5));
    let (status, body) = submit_ballot(&server, &id, &voters[2], &hijack, true).await;
    assert_eq!(
        status, 409,
        "another voter extending this device's chain: {body}"
    );
    let second = without_nonces(&with_nonces);
    let (status, receipt) = submit_ballot(&server, &id, &voters[0], &second, false).await;
    assert_eq!(status, 201, "{receipt}");
    assert_eq!(receipt["tracking_code"], second.code.to_hex());
    let cast = count(&server, &id, BallotState::Cast).await;
    let (status, again) = submit_ballot(&server, &id, &voters[0], &second, false).await;
    assert_eq!(
        (status, &again),
        (201, &receipt),
        "a resent ballot gets its receipt again"
    );
    assert_eq!(
        count(&server, &id, BallotState::Cast).await,
        cast,
        "and is stored once"
    );

    let again = common::post_device(
        &server,
        &id,
        &voters[0],
        electionguard::json::to_reference_json(&device.device),
    )
    .await;
    assert_eq!(again.status(), 409, "a used credential registers no device");
    let squatter = electionguard::ballot::EncryptionDevice {
        location: "elsewhere".into(),
        ..fork.device.clone()
    };
    let taken = common::post_device(
        &server,
        &id,
        &voters[2],
        electionguard::json::to_reference_json(&squatter),
    )
    .await;
    assert_eq!(taken.status(), 409, "another device under a registered id");

    reference_library_ballots(&server, &id, &voters[3]).await;

    common::close_voting(&client, &server.admin, &id).await;
    let record = tempfile::tempdir().unwrap();
    amarvote::commands::demo_server::download_record(&client, &id, record.path())
        .await
        .unwrap();
    let late = common::post_device(
        &server,
        &id,
        &voters[2],
        electionguard::json::to_reference_json(&hijacker.device),
    )
    .await;
    assert_eq!(late.status(), 409, "no device joins after voting closed");
    let devices = std::fs::read_dir(record.path().join("encryption_devices"))
        .unwrap()
        .count();
    assert_eq!(
        devices, 5,
        "the server's, three voters' and the reference library's"
    );
    let (ok, text) = amarvote(&["verify", record.path().to_str().unwrap()]);
    assert!(ok, "{text}");
}

/// The reference library as the voter's device: its `encrypt_ballot`, its tracking codes.
async fn reference_library_ballots(server: &TestServer, id: &str, voter: &str) {
    let client = Client::new(&server.url);
    // What a voter's device reads while voting is open: the manifest and the context.
    let dir = tempfile::tempdir().unwrap();
    for file in ["manifest.json", "context.json"] {
        let text = client
            .get_text(&format!("/api/elections/{id}/record/{file}"), None)
            .await
            .unwrap();
        std::fs::write(dir.path().join(file), text).unwrap();
    }
    let device = json!({ "device_id": 4242, "session_id": 3, "launch_code": 99, "location": "voter-laptop" });
    let request = json!({
        "device": device,
        "ballots": [
            { "object_id": "reference-1", "choices": { "contest-1": ["contest-1-selection-3"] } },
            { "object_id": "reference-2", "choices": { "contest-1": ["contest-1-selection-1"] } }
        ],
        "keep_nonces": true
    });
    let encrypted = reference_encrypt(dir.path(), &request);
    let registered = common::post_device(server, id, voter, device.to_string()).await;
    assert_eq!(registered.status(), 201);
    let registered: Value = registered.json().await.unwrap();
    assert_eq!(registered["device_hash"], encrypted["device_hash"]);
    let post = |ballot: &Value, action: &str| {
        reqwest::Client::new()
            .post(format!("{}/api/elections/{id}/ballots{action}", server.url))
            .bearer_auth(voter)
            .body(ballot.to_string())
            .send()
    };
    let with_nonces = &encrypted["ballots"][0];
    let refused = post(with_nonces, "?action=spoil").await.unwrap();
    assert_eq!(
        refused.status(),
        400,
        "the reference's nonce-bearing serialization"
    );
    let refused: Value = refused.json().await.unwrap();
    assert!(
        refused["error"].as_str().unwrap().contains("nonce"),
        "{refused}"
    );
    for (i, action) in [(0, "?action=spoil"), (1, "")] {
        let mut ballot = encrypted["ballots"][i].clone();
        strip_nonces(&mut ballot);
        let answer = post(&ballot, action).await.unwrap();
        assert_eq!(answer.status(), 201);
        let receipt: Value = answer.json().await.unwrap();
        assert_eq!(
            receipt["tracking_code"], ballot["code"],
            "the code the reference library computed is the voter's code"
        );
    }
}

fn strip_nonces(ballot: &mut Value) {
    ballot.as_object_mut().unwrap().remove("nonce");
    for contest in ballot["contests"].as_array_mut().unwrap() {
        contest.as_object_mut().unwrap().remove("nonce");
        for selection in contest["ballot_selections"].as_array_mut().unwrap() {
            selection.as_object_mut().unwrap().remove("nonce");
        }
    }
}

/// The Python with electionguard 1.4 that plays the voter's device: `AMARVOTE_REFERENCE_PYTHON`,
/// or the venv ../shared/tools/README.md sets up (`.ci/run` makes it).
fn reference_python() -> std::path::PathBuf {
    let path = std::env::var_os("AMARVOTE_REFERENCE_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(&std::env::var("HOME").unwrap()).join(".venvs/egpy/bin/python")
        });
    assert!(
        path.exists(),
        "this test needs electionguard-python 1.4 at {} (set AMARVOTE_REFERENCE_PYTHON, or set it up as ../shared/tools/README.md says; .ci/run does)",
        path.display()
    );
    path
}

fn reference_encrypt(record: &Path, request: &Value) -> Value {
    let request_file = record.join("request.json");
    std::fs::write(&request_file, request.to_string()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/encrypt_ballots.py");
    let out = std::process::Command::new(reference_python())
        .arg(script)
        .arg(record)
        .arg(&request_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the reference library failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    let last = printed.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {printed}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_throttled_client_is_told_when_to_return_and_waits() {
    let mut settings = common::settings();
    settings.ballot_rate_limit = 3;
    settings.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    let server = common::embedded_with(settings).await;
    let client = Client::new(&server.url);
    let (id, _, _) = common::small_election(&client, &server.admin, 1).await;
    let codes = format!("{}/api/elections/{id}/ballots", server.url);
    let http = reqwest::Client::new();
    let mut throttled = None;
    for _ in 0..10 {
        let answer = http.get(&codes).send().await.unwrap();
        if answer.status() == 429 {
            throttled = Some(answer);
            break;
        }
    }
    let throttled = throttled.expect("a burst over the limit is throttled");
    let wait: u64 = throttled.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&wait), "Retry-After: {wait}");
    let body: Value = throttled.json().await.unwrap();
    assert_eq!(body["status"], 429);

    // Behind the trusted proxy (127.0.0.1 here), each forwarded client has its own budget.
    for voter in 1..=3 {
        let answer = http
            .get(&codes)
            .header("x-forwarded-for", format!("198.51.100.{voter}"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "client {voter}");
    }

    // The project's own client waits out each 429 and gets through.
    let started = Instant::now();
    for _ in 0..9 {
        client
            .get(&format!("/api/elections/{id}/ballots"))
            .await
            .unwrap();
    }
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn abusive_requests_are_bounded() {
    let mut settings = common::settings();
    settings.pending_ballot_ttl = Duration::from_millis(1);
    let server = common::embedded_with(settings).await;
    let client = Client::new(&server.url);
    let (id, voters, created) = common::small_election(&client, &server.admin, 2).await;
    let encrypt = format!("/api/elections/{id}/ballots/encrypt");
    let choices = r#"{"choices":{}}"#;
    for _ in 0..5 {
        let (status, _) = status_of(
            &server,
            reqwest::Method::POST,
            &encrypt,
            Some(&voters[0]),
            choices,
        )
        .await;
        assert_eq!(status, 201);
    }
    let (status, body) = status_of(
        &server,
        reqwest::Method::POST,
        &encrypt,
        Some(&voters[0]),
        choices,
    )
    .await;
    assert_eq!(status, 409, "a sixth undecided ballot: {body}");
    tokio::time::sleep(Duration::from_millis(5)).await;
    amarvote::workers::reconciler::expire_pending_ballots(&server.app)
        .await
        .unwrap();
    let left = server
        .app
        .store
        .ballots_page(&id, BallotState::Pending, 0, 10)
        .await
        .unwrap();
    assert!(
        left.is_empty(),
        "pending ballots expire: {:?}",
        left.iter()
            .map(|b| (&b.ballot_id, b.created_at))
            .collect::<Vec<_>>()
    );
    common::cast(&client, &id, &voters[1], "contest-1-selection-1").await;

    let admin = |body: &str| {
        let (server, body) = (&server, body.to_string());
        async move {
            status_of(
                server,
                reqwest::Method::POST,
                "/api/elections",
                Some(&server.admin),
                &body,
            )
            .await
        }
    };
    let contests = r#"[{"title":"C","candidates":["a","b"]}]"#;
    let cases = [
        (
            format!(r#"{{"title":"T","contests":{contests},"guardians":64,"quorum":3}}"#),
            "guardians",
        ),
        (
            format!(
                r#"{{"title":"{}","contests":{contests},"guardians":3,"quorum":2}}"#,
                "t".repeat(100_000)
            ),
            "title",
        ),
        (
            format!(
                r#"{{"title":"T","contests":[{{"title":"C","candidates":{}}}],"guardians":3,"quorum":2}}"#,
                json!((0..10_000).map(|i| format!("c{i}")).collect::<Vec<_>>())
            ),
            "candidates",
        ),
        (
            format!(
                r#"{{"title":"T","contests":{contests},"guardians":3,"quorum":2,"voting_start":"2026-06-02T00:00:00Z","voting_end":"2026-06-01T00:00:00Z"}}"#
            ),
            "voting_end",
        ),
    ];
    for (body, field) in cases {
        let started = Instant::now();
        let (status, answer) = admin(&body).await;
        assert_eq!(status, 400, "{field}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(field),
            "{answer}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{field} refused at once"
        );
    }

    common::close_voting(&client, &server.admin, &id).await;
    let jobs = format!("/api/elections/{id}/jobs");
    let starts = (0..4).map(|_| {
        status_of(
            &server,
            reqwest::Method::POST,
            &jobs,
            Some(&server.admin),
            r#"{"kind":"tally"}"#,
        )
    });
    let answers = futures_util::future::join_all(starts).await;
    let accepted: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == 202)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(accepted.len(), 1, "{answers:?}");
    assert!(
        answers.iter().all(|(s, _)| *s == 202 || *s == 409),
        "{answers:?}"
    );
    let job = accepted[0]["job_id"].as_str().unwrap().to_string();
    let streams = (0..3).map(|_| reqwest::get(format!("{}/api/jobs/{job}/events", server.url)));
    for stream in futures_util::future::join_all(streams).await {
        let text = stream.unwrap().text().await.unwrap();
        assert!(
            text.contains("event: progress") && text.contains(r#""state":"done""#),
            "{text}"
        );
    }

    let guardian = &created.guardians[0];
    let consent = format!(
        "/api/elections/{id}/guardians/{}/decryption-consent",
        guardian.guardian_id
    );
    let token = guardian.token.as_str();
    let wrong: Vec<String> = (0..8)
        .map(|i| json!({ "passphrase": format!("guess-{i}") }).to_string())
        .collect();
    let guesses = wrong
        .iter()
        .map(|body| status_of(&server, reqwest::Method::POST, &consent, Some(token), body));
    for (status, body) in futures_util::future::join_all(guesses).await {
        assert!(status == 401 || status == 429, "{status} {body}");
    }
    let right = json!({ "passphrase": guardian.passphrase }).to_string();
    let (status, body) = status_of(
        &server,
        reqwest::Method::POST,
        &consent,
        Some(token),
        &right,
    )
    .await;
    assert_eq!(
        status, 429,
        "even the right passphrase waits after failures: {body}"
    );
    let mut waited = Duration::ZERO;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        waited += Duration::from_secs(2);
        let (status, _) = status_of(
            &server,
            reqwest::Method::POST,
            &consent,
            Some(token),
            &right,
        )
        .await;
        if status == 200 {
            break;
        }
        assert!(
            waited < Duration::from_secs(20),
            "the delay is short after few failures"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_and_excess_connections_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = amarvote::api::http_server::ConnectionLimits {
        max_connections: 2,
        header_read_timeout: Duration::from_millis(300),
        shutdown_grace: Duration::from_secs(1),
    };
    let (_stop, stop) = tokio::sync::watch::channel(false);
    let router = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
    tokio::spawn(amarvote::api::http_server::serve(
        listener, router, limits, stop,
    ));

    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut other = tokio::net::TcpStream::connect(addr).await.unwrap();
    other
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut excess = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(2), excess.read(&mut byte)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "a third connection is closed at once: {read:?}"
    );
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(3), slow.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "headers never finished: the connection is closed"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let answer = reqwest::get(format!("http://{addr}/")).await.unwrap();
    assert_eq!(answer.text().await.unwrap(), "ok", "slots come back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_error_is_one_json_shape_and_auth_comes_before_parsing() {
    let server = common::embedded().await;
    let client = Client::new(&server.url);
    let (id, voters, _) = common::small_election(&client, &server.admin, 1).await;
    let post = reqwest::Method::POST;
    let huge = format!(
        r#"{{"choices":{{"x":["{}"]}}}}"#,
        "a".repeat(3 * 1024 * 1024)
    );
    let cases = [
        (
            post.clone(),
            format!("/api/elections/{id}/ballots/encrypt"),
            Some(voters[0].as_str()),
            huge,
            413,
        ),
        (
            post.clone(),
            "/api/jobs/j/chunks/not-a-number/shares".into(),
            Some("t"),
            "{}".into(),
            400,
        ),
        (
            reqwest::Method::DELETE,
            format!("/api/elections/{id}/close"),
            None,
            String::new(),
            405,
        ),
        (
            post.clone(),
            "/api/jobs/no-such-job/stop".into(),
            Some(server.admin.as_str()),
            String::new(),
            404,
        ),
        (
            post.clone(),
            "/api/jobs/no-such-job/resume".into(),
            Some(server.admin.as_str()),
            String::new(),
            404,
        ),
        (
            post.clone(),
            format!("/api/elections/{id}/guardians/guardian-1/announcement"),
            Some("wrong"),
            "{not json".into(),
            401,
        ),
        (
            post.clone(),
            format!("/api/elections/{id}/guardians/guardian-1/decryption-consent"),
            Some("wrong"),
            "{not json".into(),
            401,
        ),
        (
            reqwest::Method::GET,
            "/no/such/page/at/all".into(),
            None,
            String::new(),
            404,
        ),
    ];
    for (method, path, token, body, expected) in cases {
        let (status, answer) = status_of(&server, method.clone(), &path, token, &body).await;
        assert_eq!(status, expected, "{method} {path}: {answer}");
        assert_eq!(answer["status"], expected, "{method} {path}: {answer}");
        assert!(
            answer["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{answer}"
        );
    }
}

#[test]
fn weak_secrets_and_shared_files_are_refused_at_startup() {
    use std::os::unix::fs::PermissionsExt;
    let serve = |data: &Path| {
        let port = common::free_port().to_string();
        let listen = format!("127.0.0.1:{port}");
        amarvote(&[
            "serve",
            "--data",
            data.to_str().unwrap(),
            "--listen",
            &listen,
        ])
    };
    let cases: [(&str, &str, u32, &str); 4] = [
        ("server.key", &"00".repeat(32), 0o600, "weak"),
        ("server.key", &"ab".repeat(32), 0o600, "weak"),
        ("server.key", "", 0o644, "chmod 600"),
        ("admin.token", "", 0o600, "administrator token"),
    ];
    for (file, content, mode, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let key = if file == "server.key" && !content.is_empty() {
            content.to_string()
        } else {
            amarvote::service::new_credential() + &amarvote::service::new_credential()
        };
        std::fs::write(data.join("server.key"), key).unwrap();
        std::fs::set_permissions(
            data.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        if file == "admin.token" {
            std::fs::write(data.join(file), content).unwrap();
        }
        std::fs::set_permissions(data.join(file), std::fs::Permissions::from_mode(mode)).unwrap();
        let (ok, text) = serve(&data);
        assert!(!ok, "{file} {expected}: {text}");
        assert!(text.contains(expected), "{file}: {text}");
        assert!(
            !data.join("amarvote.db").exists(),
            "refused before any database is opened"
        );
    }

    let closed_port = format!("postgres://127.0.0.1:{}/nothing", common::free_port());
    let good_key = amarvote::service::new_credential() + &amarvote::service::new_credential();
    let good_token = amarvote::service::new_credential();
    for (key, token, expected) in [
        ("", good_token.as_str(), "AMARVOTE_SERVER_KEY"),
        (
            &"00".repeat(32)[..],
            good_token.as_str(),
            "AMARVOTE_SERVER_KEY",
        ),
        (good_key.as_str(), "", "AMARVOTE_ADMIN_TOKEN"),
        (
            good_key.as_str(),
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "AMARVOTE_ADMIN_TOKEN",
        ),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_amarvote"))
            .arg("api")
            .env("DATABASE_URL", &closed_port)
            .env("AMQP_URL", "amqp://127.0.0.1:1/none")
            .env("AMARVOTE_SERVER_KEY", key)
            .env("AMARVOTE_ADMIN_TOKEN", token)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(text.contains(expected), "{expected}: {text}");
        assert!(
            !text.contains("database"),
            "checked before connecting: {text}"
        );
    }
}

#[test]
fn a_new_data_directory_is_private_from_the_start() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = common::free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_amarvote"))
        .args(["serve", "--data", data.to_str().unwrap(), "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "serve did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    let mut files = Vec::new();
    walk(&data, &mut files);
    assert!(files.len() >= 5, "{files:?}");
    for file in files {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A ballot the server encrypts for `credential` with one choice in contest-1; its id.
async fn encrypt_on_server(client: &Client, id: &str, credential: &str, choice: &str) -> String {
    let encrypted = client
        .post(
            &format!("/api/elections/{id}/ballots/encrypt"),
            Some(credential),
            &json!({ "choices": { "contest-1": [choice] } }),
        )
        .await
        .unwrap();
    encrypted["ballot_id"].as_str().unwrap().to_string()
}

/// `voters/me` for a credential: 200 with whether it has cast, or 401.
async fn sign_in(server: &TestServer, id: &str, credential: &str) -> (u16, Value) {
    let answer = reqwest::Client::new()
        .get(format!("{}/api/elections/{id}/voters/me", server.url))
        .bearer_auth(credential)
        .send()
        .await
        .unwrap();
    (answer.status().as_u16(), answer.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_used_credential_is_told_at_sign_in() {
    let server = common::embedded().await;
    let client = Client::new(&server.url);
    let (id, voters, _) = common::small_election(&client, &server.admin, 2).await;
    assert_eq!(sign_in(&server, &id, &voters[0]).await.1["cast"], false);
    let ballot = encrypt_on_server(&client, &id, &voters[0], "contest-1-selection-2").await;
    client
        .post(
            &format!("/api/elections/{id}/ballots/{ballot}/cast"),
            Some(&voters[0]),
            &json!({}),
        )
        .await
        .unwrap();
    let (status, me) = sign_in(&server, &id, &voters[0]).await;
    assert_eq!((status, &me["cast"]), (200, &json!(true)), "{me}");
    assert_eq!(sign_in(&server, &id, &voters[1]).await.1["cast"], false);
    let (status, body) = sign_in(&server, &id, "not-a-credential").await;
    assert_eq!(status, 401, "{body}");
    assert!(body["error"].as_str().unwrap().contains("eligibility list"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_three_message_catalogs_are_served() {
    let server = common::embedded().await;
    let http = reqwest::Client::new();
    let french = http
        .get(format!("{}/assets/i18n/fr.json", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(french.status(), 200);
    assert!(french.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let catalog: serde_json::Map<String, Value> = french.json().await.unwrap();
    assert_eq!(catalog["vote.signIn"], "Se connecter");
    for hostile in [
        "de.json",
        "..%2fapp.js",
        "..%2F..%2Fadmin.token",
        "fr.json%00",
        "FR.JSON",
        "fr.json.bak",
        "%2e%2e",
    ] {
        let answer = http
            .get(format!("{}/assets/i18n/{hostile}", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 404, "{hostile}");
        // The one JSON error shape, from the catalog route or (for a name the URL parser
        // folded into another path) from the router's own fallback.
        let body: Value = answer.json().await.unwrap();
        assert!(body["error"].is_string(), "{hostile}: {body}");
    }
}
