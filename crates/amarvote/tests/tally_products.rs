//! The tally reads running products kept at cast time, not the ballots. What must hold:
//! the products hold exactly the ballots the ballot box accepted, even when casts race
//! the close of voting; and a ballot box cast before products were kept (a database of
//! the previous schema version) is upgraded and tallied from its ballots.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use amarvote::commands::client::Client;
use amarvote::commands::demo_server::{download_record, run_job};
use amarvote::domain::{BallotState, JobKind, TALLY_SHARDS};
use amarvote::sealing::ServerKey;
use sqlx::Connection;

const CHOICES: [&str; 3] = [
    "contest-1-selection-1",
    "contest-1-selection-2",
    "contest-1-selection-3",
];

/// Runs decryption and combination, then checks the published counts and the record.
async fn publish_and_verify(
    client: &Client,
    admin: &str,
    id: &str,
    created: &amarvote::service::elections::CreatedElection,
    expected: Vec<u64>,
) {
    common::consent(client, id, created, 2).await;
    run_job(client, admin, id, JobKind::Decrypt).await.unwrap();
    run_job(client, admin, id, JobKind::Combine).await.unwrap();
    assert_eq!(common::votes(client, id).await, expected);
    let dir = tempfile::tempdir().unwrap();
    download_record(client, id, dir.path()).await.unwrap();
    let record = amarvote::record_io::read_record(dir.path()).unwrap();
    let report = electionguard::verify::verify_record(&record);
    let failed: Vec<_> = report
        .checks
        .iter()
        .filter(|c| !c.passed())
        .map(|c| (c.name, &c.failures))
        .collect();
    assert!(failed.is_empty(), "{failed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_ballot_box_cast_under_the_previous_schema_is_upgraded_and_tallied_from_its_ballots() {
    let database = common::postgres_url().await;
    let key_hex = format!(
        "{}{}",
        amarvote::service::new_credential(),
        amarvote::service::new_credential()
    );
    let key = || ServerKey::from_hex(&key_hex).unwrap();
    let server = common::postgres_rabbitmq_on(&database, key()).await;
    let client = Client::new(&server.url);
    let (id, voters, created) = common::small_election(&client, &server.admin, 9).await;
    for (i, voter) in voters.iter().enumerate() {
        common::cast(&client, &id, voter, CHOICES[i % 3]).await;
    }
    common::close_voting(&client, &server.admin, &id).await;
    drop(server);
    // What a database of the previous version holds: no products, version 3.
    let mut db = sqlx::PgConnection::connect(&database).await.unwrap();
    for statement in [
        "DROP TABLE tally_shards",
        "UPDATE schema_version SET version = 3",
    ] {
        sqlx::query(statement).execute(&mut db).await.unwrap();
    }

    let server = common::postgres_rabbitmq_on(&database, key()).await;
    let version: i64 = sqlx::query_scalar("SELECT version FROM schema_version")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(
        version, 4,
        "the database is brought to this build's version"
    );
    let client = Client::new(&server.url);
    let job = client
        .start_job(&server.admin, &id, JobKind::Tally)
        .await
        .unwrap();
    assert_eq!(
        job.total_chunks, 2,
        "9 ballots in chunks of 8: read from the ballots themselves"
    );
    common::wait_done(&client, &job.job_id).await;
    publish_and_verify(&client, &server.admin, &id, &created, vec![3, 3, 3]).await;

    // A ballot box cast under this version is tallied from its products.
    let (id, voters, created) = common::small_election(&client, &server.admin, 4).await;
    for (i, voter) in voters.iter().enumerate() {
        common::cast(&client, &id, voter, CHOICES[i % 2]).await;
    }
    common::close_voting(&client, &server.admin, &id).await;
    let job = client
        .start_job(&server.admin, &id, JobKind::Tally)
        .await
        .unwrap();
    assert_eq!(job.total_chunks, TALLY_SHARDS / 4, "four chunks of shards");
    common::wait_done(&client, &job.job_id).await;
    publish_and_verify(&client, &server.admin, &id, &created, vec![2, 2, 0]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ballots_cast_while_voting_closes_are_in_the_tally_exactly_when_they_were_accepted() {
    const VOTERS: usize = 60;
    let server = common::postgres_rabbitmq().await;
    let client = Client::new(&server.url);
    let (id, voters, created) = common::small_election(&client, &server.admin, VOTERS as u32).await;
    let mut pending = Vec::new();
    for (i, voter) in voters.iter().enumerate() {
        let ballot = client
            .encrypt_ballot(voter, &id, &common::choosing(CHOICES[i % 3]))
            .await
            .unwrap();
        pending.push((i, voter.clone(), ballot.ballot_id));
    }
    // Four streams cast one ballot after another; voting closes once ten are in.
    let accepted = Arc::new(AtomicUsize::new(0));
    let streams = (0..4)
        .map(|s| {
            let (client, id, accepted) = (client.clone(), id.clone(), accepted.clone());
            let mine: Vec<_> = pending
                .iter()
                .filter(|(i, ..)| i % 4 == s)
                .cloned()
                .collect();
            tokio::spawn(async move {
                let mut cast = Vec::new();
                for (i, voter, ballot) in mine {
                    if client.cast_ballot(&voter, &id, &ballot).await.is_ok() {
                        accepted.fetch_add(1, Ordering::SeqCst);
                        cast.push(i);
                    }
                }
                cast
            })
        })
        .collect::<Vec<_>>();
    while accepted.load(Ordering::SeqCst) < 10 {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    common::close_voting(&client, &server.admin, &id).await;
    let mut expected = vec![0u64; 3];
    let mut cast = 0;
    for stream in streams {
        for i in stream.await.unwrap() {
            expected[i % 3] += 1;
            cast += 1;
        }
    }
    assert!(
        cast < VOTERS as u64,
        "the close fell among the casts: {cast} accepted"
    );
    let store = &server.app.store;
    assert_eq!(
        store.count_ballots(&id, BallotState::Cast).await.unwrap(),
        cast
    );
    let held: u64 = store
        .tally_shards(&id, 0, TALLY_SHARDS)
        .await
        .unwrap()
        .iter()
        .map(|s| s.ballots)
        .sum();
    assert_eq!(
        held, cast,
        "the products hold the accepted ballots and no other"
    );
    run_job(&client, &server.admin, &id, JobKind::Tally)
        .await
        .unwrap();
    publish_and_verify(&client, &server.admin, &id, &created, expected).await;
}
