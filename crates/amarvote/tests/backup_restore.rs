//! Backup and restore as `docs/operations.md` describes them: a `pg_dump` of the database
//! taken mid-election (ballots cast, voting closed, nothing tallied), with the server key
//! kept apart from it, restored with `pg_restore` into a new database. A server given the
//! same key finishes the election there (tally, the guardians' consent, decryption,
//! combine): the results equal the ballots cast before the dump and the exported record
//! verifies. A server given another key cannot open the guardians' sealed secrets: the
//! election is not decrypted, and nothing is published.

mod common;

use std::path::Path;
use std::process::Command;

use amarvote::commands::client::Client;
use amarvote::commands::demo_server::{consent, download_record, run_job};
use amarvote::domain::JobKind;
use amarvote::sealing::ServerKey;

fn postgres_tool(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("this test needs {program} (Debian's postgresql-client): {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `pg_dump` in its custom format, as the operator's guide says.
fn dump(database: &str, file: &Path) {
    let file = file.to_str().unwrap();
    postgres_tool("pg_dump", &["--format=custom", "--file", file, database]);
}

/// `pg_restore` into an empty database.
fn restore(file: &Path, database: &str) {
    let file = file.to_str().unwrap();
    postgres_tool("pg_restore", &["--no-owner", "--dbname", database, file]);
}

fn key(hex: &str) -> ServerKey {
    ServerKey::from_hex(hex).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dump_restored_with_its_server_key_finishes_the_election_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let server_key = amarvote::service::new_credential() + &amarvote::service::new_credential();
    let database = common::postgres_url().await;
    let original = common::postgres_rabbitmq_on(&database, key(&server_key)).await;
    let client = Client::new(&original.url);
    let (election, credentials, created) =
        common::small_election(&client, &original.admin, 6).await;
    for (credential, pick) in credentials.iter().zip([1, 2, 1, 3, 1, 2]) {
        let selection = format!("contest-1-selection-{pick}");
        common::cast(&client, &election, credential, &selection).await;
    }
    client
        .close_voting(&original.admin, &election)
        .await
        .unwrap();
    let backup = dir.path().join("amarvote.dump");
    dump(&database, &backup);
    drop(original);

    let restored_database = common::postgres_url().await;
    restore(&backup, &restored_database);
    let restored = common::postgres_rabbitmq_on(&restored_database, key(&server_key)).await;
    let client = Client::new(&restored.url);
    run_job(&client, &restored.admin, &election, JobKind::Tally)
        .await
        .unwrap();
    consent(&client, &election, &created, 2).await.unwrap();
    for kind in [JobKind::Decrypt, JobKind::Combine] {
        run_job(&client, &restored.admin, &election, kind)
            .await
            .unwrap();
    }
    assert_eq!(common::votes(&client, &election).await, vec![3, 2, 1]);
    let record = dir.path().join("record");
    download_record(&client, &election, &record).await.unwrap();
    let record = amarvote::record_io::read_record(&record).unwrap();
    let report = electionguard::verify::verify_record(&record);
    assert!(report.passed(), "the restored election's record verifies");

    // The same dump with another server key: the guardians' secrets stay sealed.
    let elsewhere = common::postgres_url().await;
    restore(&backup, &elsewhere);
    let wrong_key = amarvote::service::new_credential() + &amarvote::service::new_credential();
    let stranger = common::postgres_rabbitmq_on(&elsewhere, key(&wrong_key)).await;
    let client = Client::new(&stranger.url);
    run_job(&client, &stranger.admin, &election, JobKind::Tally)
        .await
        .unwrap();
    assert!(
        common::decryption_refused(&client, &stranger.admin, &election, &created).await,
        "a server without the election's key cannot decrypt it"
    );
    assert!(
        client.results(&election).await.is_err(),
        "nothing published"
    );
}
