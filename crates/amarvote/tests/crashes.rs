//! Crashes and redelivery on PostgreSQL + RabbitMQ: worker processes killed with SIGKILL
//! in the middle of jobs, again and again, and a RabbitMQ restart mid-job; every job
//! still completes and the published counts are exact.

mod common;

use std::time::Duration;

use amarvote::commands::client::Client;
use amarvote::commands::demo_server::run_job;
use amarvote::domain::JobKind;

/// The two tests must not overlap: one restarts the broker the other depends on.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A job that hangs fails the test instead of hanging CI.
async fn job(client: &Client, admin: &str, id: &str, kind: JobKind) {
    tokio::time::timeout(Duration::from_secs(180), run_job(client, admin, id, kind))
        .await
        .unwrap_or_else(|_| panic!("the {kind} job did not finish in 3 minutes"))
        .unwrap();
}

const CHOICES: [&str; 3] = [
    "contest-1-selection-1",
    "contest-1-selection-2",
    "contest-1-selection-3",
];

async fn election_with_ballots(client: &Client, admin: &str, voters: usize) -> String {
    let (id, credentials, created) = common::small_election(client, admin, voters as u32).await;
    for (i, voter) in credentials.iter().enumerate() {
        let choices = common::choosing(CHOICES[i % 3]);
        let pending = client.encrypt_ballot(voter, &id, &choices).await.unwrap();
        if i % 10 == 9 {
            client
                .challenge_ballot(voter, &id, &pending.ballot_id)
                .await
                .unwrap();
        } else {
            client
                .cast_ballot(voter, &id, &pending.ballot_id)
                .await
                .unwrap();
        }
    }
    common::close_voting(client, admin, &id).await;
    common::consent(client, &id, &created, 2).await;
    id
}

fn expected(voters: usize) -> Vec<u64> {
    let mut counts = vec![0; 3];
    (0..voters)
        .filter(|i| i % 10 != 9)
        .for_each(|i| counts[i % 3] += 1);
    counts
}

/// Kills the worker with SIGKILL every `period`, `times` times, starting a new one each time.
async fn keep_killing(
    env: Vec<(String, String)>,
    times: usize,
    period: Duration,
) -> std::process::Child {
    let mut worker = common::spawn_worker(&env);
    for _ in 0..times {
        tokio::time::sleep(period).await;
        worker.kill().unwrap();
        worker.wait().unwrap();
        worker = common::spawn_worker(&env);
    }
    worker
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_complete_exactly_while_workers_are_killed() {
    let _serial = SERIAL.lock().await;
    let (server, env) = common::postgres_rabbitmq_external_workers().await;
    let client = Client::new(&server.url);
    let voters = 60;
    let id = election_with_ballots(&client, &server.admin, voters).await;
    let killer = tokio::spawn(keep_killing(env, 6, Duration::from_millis(700)));
    job(&client, &server.admin, &id, JobKind::Tally).await;
    job(&client, &server.admin, &id, JobKind::Decrypt).await;
    let mut worker = killer.await.unwrap();
    job(&client, &server.admin, &id, JobKind::Combine).await;
    worker.kill().unwrap();
    let _ = worker.wait();
    assert_eq!(common::votes(&client, &id).await, expected(voters));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_complete_exactly_across_a_rabbitmq_restart() {
    let _serial = SERIAL.lock().await;
    let (server, env) = common::postgres_rabbitmq_external_workers().await;
    let client = Client::new(&server.url);
    let voters = 40;
    let id = election_with_ballots(&client, &server.admin, voters).await;
    let mut worker = common::spawn_worker(&env);
    let restart = tokio::spawn(async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        common::restart_rabbitmq().await;
    });
    job(&client, &server.admin, &id, JobKind::Tally).await;
    restart.await.unwrap();
    job(&client, &server.admin, &id, JobKind::Decrypt).await;
    job(&client, &server.admin, &id, JobKind::Combine).await;
    worker.kill().unwrap();
    let _ = worker.wait();
    assert_eq!(common::votes(&client, &id).await, expected(voters));
}
