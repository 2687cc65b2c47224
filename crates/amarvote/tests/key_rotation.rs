//! Rotating the server key and the admin token as `docs/operations.md` describes: the roles
//! are restarted with a new current key and the old one retired. An election whose
//! guardians' secrets and decryption grants were sealed under the old key finishes exactly
//! (results equal the ballots, the record verifies); what is sealed afterwards is under the
//! new key only, so once the old key's elections are over it is dropped, and a server with
//! the old key alone cannot decrypt the new election. The old admin token is refused after
//! the restart and the new one accepted.

mod common;

use amarvote::commands::client::Client;
use amarvote::commands::demo_server::{consent, download_record, run_job};
use amarvote::domain::JobKind;
use amarvote::sealing::ServerKey;
use amarvote::service::elections::CreatedElection;

fn new_key_hex() -> String {
    amarvote::service::new_credential() + &amarvote::service::new_credential()
}

fn key(hex: &str) -> ServerKey {
    ServerKey::from_hex(hex).unwrap()
}

/// Casts `picks` (1-based selections of contest 1) and closes voting.
async fn vote(client: &Client, admin: &str, election: &str, credentials: &[String], picks: &[u32]) {
    for (credential, pick) in credentials.iter().zip(picks) {
        let selection = format!("contest-1-selection-{pick}");
        common::cast(client, election, credential, &selection).await;
    }
    client.close_voting(admin, election).await.unwrap();
}

/// Decrypts with two of three guardians, combines, and checks the record.
async fn finish(client: &Client, admin: &str, election: &str, created: &CreatedElection) {
    consent(client, election, created, 2).await.unwrap();
    for kind in [JobKind::Decrypt, JobKind::Combine] {
        run_job(client, admin, election, kind).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    download_record(client, election, dir.path()).await.unwrap();
    let record = amarvote::record_io::read_record(dir.path()).unwrap();
    assert!(electionguard::verify::verify_record(&record).passed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_server_key_finishes_old_elections_and_seals_new_ones_alone() {
    let database = common::postgres_url().await;
    let (old_hex, new_hex) = (new_key_hex(), new_key_hex());

    // Before the rotation: an election set up, voted and tallied under the old key.
    let before = common::postgres_rabbitmq_on(&database, key(&old_hex)).await;
    let client = Client::new(&before.url);
    let (first, voters, first_created) = common::small_election(&client, &before.admin, 5).await;
    vote(&client, &before.admin, &first, &voters, &[1, 2, 1, 3, 1]).await;
    run_job(&client, &before.admin, &first, JobKind::Tally)
        .await
        .unwrap();
    let old_admin = before.admin.clone();
    drop(before);

    // The roles restarted with the new key current and the old one retired, and a new
    // admin token: the old election finishes, a new one is set up under the new key.
    let rotated = key(&new_hex).retiring(vec![key(&old_hex)]).unwrap();
    let during = common::postgres_rabbitmq_on(&database, rotated).await;
    let client = Client::new(&during.url);
    assert!(
        client
            .issue_credentials(&old_admin, &first, 1)
            .await
            .is_err(),
        "the old admin token is refused after the restart"
    );
    finish(&client, &during.admin, &first, &first_created).await;
    assert_eq!(common::votes(&client, &first).await, vec![3, 1, 1]);
    let (second, voters, second_created) = common::small_election(&client, &during.admin, 4).await;
    vote(&client, &during.admin, &second, &voters, &[2, 2, 3, 1]).await;
    run_job(&client, &during.admin, &second, JobKind::Tally)
        .await
        .unwrap();
    drop(during);

    // The old key alone opens nothing sealed since the rotation.
    let old_only = common::postgres_rabbitmq_on(&database, key(&old_hex)).await;
    let client = Client::new(&old_only.url);
    assert!(
        common::decryption_refused(&client, &old_only.admin, &second, &second_created).await,
        "the new election is sealed under the new key"
    );
    drop(old_only);

    // The old key dropped: the new election finishes under the new key alone.
    let after = common::postgres_rabbitmq_on(&database, key(&new_hex)).await;
    let client = Client::new(&after.url);
    finish(&client, &after.admin, &second, &second_created).await;
    assert_eq!(common::votes(&client, &second).await, vec![1, 2, 1]);
}
