//! The election service end to end over HTTP: a whole election (5 guardians, quorum 3,
//! 2 missing, several chunks, spoiled ballots) on the embedded default and on
//! PostgreSQL + RabbitMQ, results equal to ground truth and an exported record that
//! verifies; redelivered and malformed messages; bad input refused with nothing stored.

mod common;

use amarvote::commands::client::{Client, Refused};
use amarvote::commands::demo::DemoArgs;
use amarvote::commands::demo_server;
use amarvote::domain::{BallotState, ChunkTask, JobId, JobKind, JobState, QueueName};
use serde_json::json;

fn demo_args(ballots: u32, record: Option<std::path::PathBuf>) -> DemoArgs {
    DemoArgs {
        guardians: 5,
        quorum: 3,
        missing: 2,
        ballots,
        contests: 2,
        selections: 3,
        spoil: 0.25,
        seed: 7,
        record,
        server: None,
        admin_token: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn whole_election_on_the_embedded_default() {
    let server = common::embedded().await;
    let record = tempfile::tempdir().unwrap();
    demo_server::run(
        &demo_args(20, Some(record.path().to_path_buf())),
        &server.url,
        Some(&server.admin),
    )
    .await
    .unwrap();
    let exported = amarvote::record_io::read_record(record.path()).unwrap();
    assert_eq!(
        exported
            .submitted_ballots
            .iter()
            .filter(|b| b.is_cast())
            .count(),
        20
    );
    assert!(
        !exported.spoiled_ballots.is_empty(),
        "some voters challenged a ballot first"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn whole_election_on_postgres_and_rabbitmq() {
    let server = common::postgres_rabbitmq().await;
    let record = tempfile::tempdir().unwrap();
    demo_server::run(
        &demo_args(20, Some(record.path().to_path_buf())),
        &server.url,
        Some(&server.admin),
    )
    .await
    .unwrap();
    assert!(electionguard::verify::verify_record(
        &amarvote::record_io::read_record(record.path()).unwrap()
    )
    .passed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redelivered_chunks_count_once_and_a_malformed_message_is_dead_lettered() {
    let server = common::embedded().await;
    let client = Client::new(&server.url);
    let (id, voters, created) = common::small_election(&client, &server.admin, 20).await;
    for (i, voter) in voters.iter().enumerate() {
        common::cast(
            &client,
            &id,
            voter,
            [
                "contest-1-selection-1",
                "contest-1-selection-2",
                "contest-1-selection-3",
            ][i % 3],
        )
        .await;
    }
    common::close_voting(&client, &server.admin, &id).await;
    server
        .app
        .queue
        .publish(QueueName::Tally, b"{not a chunk task")
        .await
        .unwrap();
    let started = client
        .start_job(&server.admin, &id, JobKind::Tally)
        .await
        .unwrap();
    let job = started.job_id.as_str();
    for chunk in 0..started.total_chunks {
        let task = serde_json::to_vec(&ChunkTask {
            job_id: JobId::parse(job).unwrap(),
            chunk,
        })
        .unwrap();
        server
            .app
            .queue
            .publish(QueueName::Tally, &task)
            .await
            .unwrap();
    }
    common::wait_done(&client, job).await;
    common::consent(&client, &id, &created, 2).await;
    demo_server::run_job(&client, &server.admin, &id, JobKind::Decrypt)
        .await
        .unwrap();
    demo_server::run_job(&client, &server.admin, &id, JobKind::Combine)
        .await
        .unwrap();
    assert_eq!(common::votes(&client, &id).await, vec![7, 7, 6]);
    assert_eq!(
        server
            .app
            .queue
            .dead_letters(QueueName::Tally)
            .await
            .unwrap(),
        1
    );
    demo_server::run_job(&client, &server.admin, &id, JobKind::Verify)
        .await
        .unwrap();
    let report = client
        .get(&format!("/api/elections/{id}/verification"))
        .await
        .unwrap();
    assert_eq!(report["checked"], 20);
    assert_eq!(report["failures"], json!([]));
    let checks = report["checks"].as_object().unwrap();
    assert_eq!(checks.len(), 2, "{checks:?}");
    for count in checks.values() {
        assert_eq!(count["passed"], 20);
        assert_eq!(count["failed"], 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_gets_a_clear_4xx_and_nothing_is_stored() {
    let server = common::embedded().await;
    let client = Client::new(&server.url);
    let (id, voters, _) = common::small_election(&client, &server.admin, 3).await;
    let post = reqwest::Method::POST;

    let (status, body) = common::status_of(
        &server,
        post.clone(),
        "/api/elections/nope/ballots/encrypt",
        Some(&voters[0]),
        r#"{"choices":{}}"#,
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = common::status_of(
        &server,
        post.clone(),
        "/api/elections",
        Some(&server.admin),
        r#"{"title": "x", "contests": 3}"#,
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("contests: invalid type"),
        "the error names the field: {body}"
    );
    let (status, body) = common::status_of(
        &server,
        post.clone(),
        "/api/elections",
        Some(&server.admin),
        r#"{"title": "x", "#,
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("malformed body"),
        "{body}"
    );
    let (status, body) = common::status_of(
        &server,
        post.clone(),
        "/api/elections",
        Some(&server.admin),
        r#"{"title": "x", "contests": [], "guardians": 3, "quorum": 4}"#,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = common::status_of(
        &server,
        post.clone(),
        "/api/elections",
        Some("not-the-admin"),
        r#"{}"#,
    )
    .await;
    assert_eq!(status, 403);

    let overvote =
        json!({ "choices": { "contest-1": ["contest-1-selection-1", "contest-1-selection-2"] } })
            .to_string();
    let (status, body) = common::status_of(
        &server,
        post.clone(),
        &format!("/api/elections/{id}/ballots/encrypt"),
        Some(&voters[0]),
        &overvote,
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("overvote"),
        "{body}"
    );

    let (status, _) = common::status_of(
        &server,
        post.clone(),
        &format!("/api/elections/{id}/ballots/encrypt"),
        Some("unknown-credential"),
        r#"{"choices":{}}"#,
    )
    .await;
    assert_eq!(status, 401);

    common::cast(&client, &id, &voters[0], "contest-1-selection-1").await;
    let (status, body) = common::status_of(
        &server,
        post.clone(),
        &format!("/api/elections/{id}/ballots/encrypt"),
        Some(&voters[0]),
        r#"{"choices":{}}"#,
    )
    .await;
    assert_eq!(
        status, 409,
        "a used credential encrypts no second ballot: {body}"
    );

    let mut device = common::VoterDevice::register(&server, &id, &voters[1], 501).await;
    let ballot = common::without_nonces(&device.encrypt("client-ballot-1", 3));
    let mut tampered = ballot.clone();
    let proof = tampered.contests[0].ballot_selections[0]
        .proof
        .as_mut()
        .unwrap();
    proof.proof_zero_response = proof.proof_one_response.clone();
    let (status, body) = submit(&server, &id, &voters[1], &tampered).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("proof"), "{body}");
    let mut wrong_manifest = ballot.clone();
    wrong_manifest.manifest_hash = electionguard::group::ElementModQ::from_u64(42).unwrap();
    let (status, body) = submit(&server, &id, &voters[1], &wrong_manifest).await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("manifest hash"),
        "{body}"
    );
    let (status, body) = common::status_of(
        &server,
        post.clone(),
        &format!("/api/elections/{id}/ballots"),
        Some(&voters[1]),
        r#"{"object_id": 5}"#,
    )
    .await;
    assert_eq!(status, 400, "{body}");

    assert_eq!(
        server
            .app
            .store
            .count_ballots(&id, BallotState::Cast)
            .await
            .unwrap(),
        1,
        "only the one valid ballot is stored"
    );
    assert_eq!(
        server
            .app
            .store
            .count_ballots(&id, BallotState::Spoiled)
            .await
            .unwrap(),
        0
    );
    let (status, receipt) = submit(&server, &id, &voters[1], &ballot).await;
    assert_eq!(
        status, 201,
        "the untampered client ballot is accepted: {receipt}"
    );
    let lookup = client
        .get(&format!(
            "/api/elections/{id}/tracking/{}",
            receipt["tracking_code"].as_str().unwrap()
        ))
        .await
        .unwrap();
    assert_eq!(lookup["state"], "cast");
}

async fn submit(
    server: &common::TestServer,
    id: &str,
    voter: &str,
    ballot: &electionguard::ballot::CiphertextBallot,
) -> (u16, serde_json::Value) {
    common::status_of(
        server,
        reqwest::Method::POST,
        &format!("/api/elections/{id}/ballots"),
        Some(voter),
        &electionguard::json::to_reference_json(ballot),
    )
    .await
}

#[tokio::test]
async fn a_batch_published_to_rabbitmq_arrives_whole_and_in_order() {
    use amarvote::ports::WorkQueue;
    let (amqp, vhost) = common::rabbitmq_vhost();
    let _vhost = common::VhostGuard(vhost);
    let queue = amarvote::adapters::rabbitmq::RabbitQueue::connect(&amqp)
        .await
        .unwrap_or_else(|e| panic!("this test needs RabbitMQ at {amqp}: {e}"));
    let batch: Vec<(QueueName, Vec<u8>)> = (0..300u32)
        .map(|i| (QueueName::Verification, i.to_be_bytes().to_vec()))
        .collect();
    let published = queue.publish_many(&batch).await;
    assert_eq!((published.stored, published.error.is_none()), (300, true));
    for (_, body) in &batch {
        let delivery = queue.next(QueueName::Verification).await.unwrap().unwrap();
        assert_eq!(&delivery.body, body);
        delivery.settle.ack().await.unwrap();
    }
    assert_eq!(queue.depth(QueueName::Verification).await.unwrap(), 0);
}

/// A stopped job is not resumed once another job of its kind has moved the election on:
/// its finalization would overwrite what the other produced (the encrypted tally that a
/// decryption reads). PostgreSQL + RabbitMQ with no worker running, so jobs wait.
#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_job_is_not_resumed_after_its_kind_moved_the_election_on() {
    let (server, _workers_env) = common::postgres_rabbitmq_external_workers().await;
    let client = Client::new(&server.url);
    let (id, _, _) = common::small_election(&client, &server.admin, 1).await;
    common::close_voting(&client, &server.admin, &id).await;
    let jobs = format!("/api/elections/{id}/jobs");
    let tally = json!({ "kind": "tally" });
    let start_tally = || async {
        let started = client.post(&jobs, Some(&server.admin), &tally).await;
        started.unwrap()["job_id"].as_str().unwrap().to_string()
    };
    let first = start_tally().await;
    let stop = format!("/api/jobs/{first}/stop");
    client
        .post(&stop, Some(&server.admin), &json!({}))
        .await
        .unwrap();
    let second = start_tally().await;
    // The second finishes, as a worker would finish it.
    let store = &server.app.store;
    let job = store.job(&second).await.unwrap().unwrap();
    store
        .set_job_state(&second, &[JobState::Running], JobState::Finalizing, None)
        .await
        .unwrap();
    amarvote::service::operations::finalize(&server.app, &job)
        .await
        .unwrap();
    let resume = format!("/api/jobs/{first}/resume");
    let refused = client.post(&resume, Some(&server.admin), &json!({})).await;
    assert_eq!(Refused::of(refused.unwrap_err()).status, 409);
    let first = store.job(&first).await.unwrap().unwrap();
    assert_eq!(
        first.state,
        JobState::Stopped,
        "the stopped job stays stopped"
    );
}
