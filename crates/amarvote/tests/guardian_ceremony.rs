//! The key ceremony run by the guardians on their own machines: three `amarvote guardian
//! ceremony` processes generate their keys, announce them, exchange and verify backups;
//! the server publishes the joint key and opens voting; one guardian hands its key share
//! to the workers, one decrypts on its own machine (`amarvote guardian decrypt`, every
//! uploaded proof checked), the third stays away; the results equal the ballots cast and
//! the record verifies. And the server refuses forged announcements and misaddressed backups;
//! a rejected backup is settled by its sender's answer (the coordinate in clear), which the
//! server checks, and which `amarvote guardian ceremony` gives and takes on its own.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use amarvote::commands::client::{Client, Refused};
use amarvote::commands::demo_server;
use amarvote::commands::guardian::Credential;
use amarvote::domain::JobKind;
use electionguard::group::ElementModQ;
use electionguard::json::to_reference_json;
use electionguard::key_ceremony::{
    ElectionKeyPair, ElectionPartialKeyBackup, ElectionPartialKeyChallenge, ElectionPublicKey,
    GuardianRecord,
};
use serde_json::{json, Value};

async fn guardian_run_election(client: &Client, admin: &str, guardians: u32, quorum: u32) -> Value {
    client
        .post(
            "/api/elections",
            Some(admin),
            &json!({
                "title": "Guardian-run ceremony",
                "contests": [{ "title": "Mayor", "candidates": ["Ada", "Ben", "Cy"] }],
                "guardians": guardians, "quorum": quorum, "key_ceremony": "guardians",
            }),
        )
        .await
        .unwrap()
}

/// Writes each guardian's credential file as the web page hands it out.
fn credential_files(dir: &Path, server: &str, created: &Value) -> Vec<PathBuf> {
    created["guardians"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            let path = dir.join(format!("{}.json", g["guardian_id"].as_str().unwrap()));
            let file = json!({ "server": server, "election_id": created["election_id"],
                "guardian_id": g["guardian_id"], "token": g["token"] });
            std::fs::write(&path, file.to_string()).unwrap();
            path
        })
        .collect()
}

fn guardian(args: &[&str], credential: &Path, keystore: &Path, passphrase: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_amarvote"));
    command
        .arg("guardian")
        .args(args)
        .arg("--credential")
        .arg(credential)
        .arg("--keystore")
        .arg(keystore)
        .env("AMARVOTE_PASSPHRASE", passphrase);
    command
}

fn succeeded(output: std::process::Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "{what} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn guardians_run_the_ceremony_on_their_own_machines_and_decrypt_with_one_missing() {
    let server = common::embedded().await;
    let client = Client::new(&server.url);
    let created = guardian_run_election(&client, &server.admin, 3, 2).await;
    assert_eq!(created["state"], "key_ceremony");
    assert!(created["joint_public_key"].is_null());
    assert!(
        created["guardians"][0].get("passphrase").is_none(),
        "no secret leaves the server"
    );
    let id = created["election_id"].as_str().unwrap().to_string();
    let voters: Vec<String> = serde_json::from_value(
        client
            .post(
                &format!("/api/elections/{id}/voters"),
                Some(&server.admin),
                &json!({ "count": 3 }),
            )
            .await
            .unwrap()["credentials"]
            .clone(),
    )
    .unwrap();
    let early = client
        .post(
            &format!("/api/elections/{id}/ballots/encrypt"),
            Some(&voters[0]),
            &json!({ "choices": {} }),
        )
        .await;
    assert_eq!(
        Refused::of(early.unwrap_err()).status,
        409,
        "no voting before the joint key exists"
    );

    let dir = tempfile::tempdir().unwrap();
    let files = credential_files(dir.path(), &server.url, &created);
    let keystores: Vec<PathBuf> = (1..=3)
        .map(|i| dir.path().join(format!("guardian-{i}.keystore")))
        .collect();
    let runs = (0..3).map(|i| {
        let command = guardian(
            &["ceremony", "--wait", "120"],
            &files[i],
            &keystores[i],
            &format!("passphrase {i}"),
        );
        tokio::process::Command::from(command).output()
    });
    for (i, output) in futures_util::future::join_all(runs)
        .await
        .into_iter()
        .enumerate()
    {
        let stdout = succeeded(output.unwrap(), &format!("guardian-{} ceremony", i + 1));
        assert!(stdout.contains("ceremony complete"), "{stdout}");
    }
    let summary = client.get(&format!("/api/elections/{id}")).await.unwrap();
    assert_eq!(summary["state"], "open");
    assert!(summary["joint_public_key"]
        .as_str()
        .is_some_and(|k| k.len() > 16));
    let status = client
        .get(&format!("/api/elections/{id}/ceremony"))
        .await
        .unwrap();
    assert_eq!(status["public_keys"].as_array().unwrap().len(), 3);
    assert_eq!(status["rejected_backups"], json!([]));

    for (voter, choice) in voters.iter().zip([
        "contest-1-selection-1",
        "contest-1-selection-2",
        "contest-1-selection-1",
    ]) {
        common::cast(&client, &id, voter, choice).await;
    }
    common::close_voting(&client, &server.admin, &id).await;

    let wrong_share = consent_with_share_of(&client, &created, &files[0], &keystores[0], 1).await;
    assert!(
        wrong_share.contains("not the key this guardian announced"),
        "{wrong_share}"
    );
    let by_passphrase = client
        .post(
            &format!("/api/elections/{id}/guardians/guardian-3/decryption-consent"),
            created["guardians"][2]["token"].as_str(),
            &json!({ "passphrase": "anything" }),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(by_passphrase.contains("key share"), "{by_passphrase}");
    let consent = guardian(&["consent"], &files[0], &keystores[0], "passphrase 0");
    let output = tokio::process::Command::from(consent)
        .output()
        .await
        .unwrap();
    succeeded(output, "guardian-1 consent with its key share");
    let remote = tokio::process::Command::new(env!("CARGO_BIN_EXE_amarvote"))
        .args(["guardian", "consent", "--remote", "--credential"])
        .arg(&files[1])
        .output()
        .await
        .unwrap();
    succeeded(remote, "guardian-2 consent to decrypt on its own machine");

    demo_server::run_job(&client, &server.admin, &id, JobKind::Tally)
        .await
        .unwrap();
    let decrypt_here = guardian(
        &["decrypt", "--wait", "120"],
        &files[1],
        &keystores[1],
        "passphrase 1",
    );
    let (job, here) = tokio::join!(
        demo_server::run_job(&client, &server.admin, &id, JobKind::Decrypt),
        async {
            refused_forged_shares(&client, &id, &created).await;
            tokio::process::Command::from(decrypt_here)
                .output()
                .await
                .unwrap()
        }
    );
    let here = succeeded(here, "guardian-2 decrypting on its own machine");
    assert!(here.contains("on behalf of guardian-3"), "{here}");
    job.unwrap();
    demo_server::run_job(&client, &server.admin, &id, JobKind::Combine)
        .await
        .unwrap();
    assert_eq!(common::votes(&client, &id).await, vec![2, 1, 0]);

    let record = dir.path().join("record");
    demo_server::download_record(&client, &id, &record)
        .await
        .unwrap();
    let verify = tokio::process::Command::new(env!("CARGO_BIN_EXE_amarvote"))
        .arg("verify")
        .arg(&record)
        .output();
    let verified = verify.await.unwrap();
    succeeded(
        verified,
        "amarvote verify of the guardian-run election's record",
    );
}

/// While guardian-2's chunks wait for it: shares it did not compute are refused, and so is
/// another guardian's token.
async fn refused_forged_shares(client: &Client, election: &str, created: &Value) {
    let token = |i: usize| {
        created["guardians"][i]["token"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let job = loop {
        let jobs = client
            .get(&format!("/api/elections/{election}/jobs"))
            .await
            .unwrap();
        if let Some(job) = jobs["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["kind"] == "decrypt")
        {
            break job["job_id"].as_str().unwrap().to_string();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let waiting = client
        .get_authorized(
            &format!("/api/jobs/{job}/guardians/guardian-2/chunks"),
            &token(1),
        )
        .await
        .unwrap();
    let index = waiting[0]["index"]
        .as_u64()
        .expect("a chunk waits for guardian-2");
    let shares = format!("/api/jobs/{job}/chunks/{index}/shares");
    let empty = Refused::of(
        client
            .post_text(&shares, &token(1), r#"{"Direct":[]}"#.into())
            .await
            .unwrap_err(),
    );
    assert!(
        empty.status == 400 && empty.message.contains("objects to decrypt"),
        "{empty}"
    );
    let stranger = Refused::of(
        client
            .post_text(&shares, &token(0), r#"{"Direct":[]}"#.into())
            .await
            .unwrap_err(),
    );
    assert_eq!(stranger.status, 401, "{stranger}");
}

/// Sends guardian `holder`'s key share under guardian `as_index`'s name; the error text.
async fn consent_with_share_of(
    client: &Client,
    created: &Value,
    file: &Path,
    keystore: &Path,
    as_index: usize,
) -> String {
    let credential: Credential =
        serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let share =
        amarvote::commands::guardian::open_keystore(keystore, &credential, "passphrase 0").unwrap();
    let other = &created["guardians"][as_index];
    client
        .post_text(
            &format!(
                "/api/elections/{}/guardians/{}/decryption-consent",
                created["election_id"].as_str().unwrap(),
                other["guardian_id"].as_str().unwrap()
            ),
            other["token"].as_str().unwrap(),
            format!(r#"{{"key_share":{}}}"#, to_reference_json(&*share)),
        )
        .await
        .unwrap_err()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_announcements_misaddressed_backups_and_false_answers_are_refused() {
    let server = common::embedded().await;
    let client = Client::new(&server.url);
    let created = guardian_run_election(&client, &server.admin, 2, 2).await;
    let id = created["election_id"].as_str().unwrap();
    let token = |i: usize| {
        created["guardians"][i]["token"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let path = |g: &str, step: &str| format!("/api/elections/{id}/guardians/{g}/{step}");
    let keys = [
        ElectionKeyPair::generate("guardian-1", 1, 2),
        ElectionKeyPair::generate("guardian-2", 2, 2),
    ];
    let record = |k: &ElectionKeyPair| to_reference_json(&GuardianRecord::from(&k.share()));
    let refused = |r: anyhow::Result<Value>| Refused::of(r.unwrap_err());

    let mut forged = GuardianRecord::from(&keys[0].share());
    forged.election_proofs[0].response = ElementModQ::random();
    let answer = refused(
        client
            .post_text(
                &path("guardian-1", "announcement"),
                &token(0),
                to_reference_json(&forged),
            )
            .await,
    );
    assert!(
        answer.status == 400 && answer.message.contains("election_proofs"),
        "{answer}"
    );
    let answer = refused(
        client
            .post_text(
                &path("guardian-1", "announcement"),
                &token(1),
                record(&keys[0]),
            )
            .await,
    );
    assert!(answer.status == 401, "{answer}");
    let answer = refused(
        client
            .post_text(
                &path("guardian-2", "announcement"),
                &token(1),
                record(&keys[0]),
            )
            .await,
    );
    assert!(
        answer.status == 400 && answer.message.contains("sequence_order"),
        "{answer}"
    );
    client
        .post_text(
            &path("guardian-1", "announcement"),
            &token(0),
            record(&keys[0]),
        )
        .await
        .unwrap();
    client
        .post_text(
            &path("guardian-1", "announcement"),
            &token(0),
            record(&keys[0]),
        )
        .await
        .unwrap();
    let other = ElectionKeyPair::generate("guardian-1", 1, 2);
    let answer = refused(
        client
            .post_text(
                &path("guardian-1", "announcement"),
                &token(0),
                record(&other),
            )
            .await,
    );
    assert!(
        answer.status == 409,
        "a guardian cannot swap its key: {answer}"
    );

    let backups = |sender: &ElectionKeyPair| -> Vec<ElectionPartialKeyBackup> {
        keys.iter()
            .map(|r| ElectionPartialKeyBackup::generate(sender, &r.share()))
            .collect()
    };
    let answer = refused(
        client
            .post_text(
                &path("guardian-1", "backups"),
                &token(0),
                to_reference_json(&backups(&keys[0])),
            )
            .await,
    );
    assert!(
        answer.status == 409 && answer.message.contains("not announced"),
        "{answer}"
    );
    client
        .post_text(
            &path("guardian-2", "announcement"),
            &token(1),
            record(&keys[1]),
        )
        .await
        .unwrap();
    let answer = refused(
        client
            .post_text(
                &path("guardian-1", "backups"),
                &token(0),
                to_reference_json(&backups(&keys[0])[..1]),
            )
            .await,
    );
    assert!(
        answer.message.contains("one backup per guardian"),
        "{answer}"
    );
    let answer = refused(
        client
            .post_text(
                &path("guardian-1", "backups"),
                &token(0),
                to_reference_json(&backups(&keys[1])),
            )
            .await,
    );
    assert!(answer.message.contains("owner_id"), "{answer}");
    client
        .post_text(
            &path("guardian-1", "backups"),
            &token(0),
            to_reference_json(&backups(&keys[0])),
        )
        .await
        .unwrap();
    client
        .post_text(
            &path("guardian-2", "backups"),
            &token(1),
            to_reference_json(&backups(&keys[1])),
        )
        .await
        .unwrap();

    let answer = refused(
        client
            .post(
                &path("guardian-2", "backup-verdicts"),
                Some(&token(1)),
                &json!([{ "sender": "guardian-9", "verified": true }]),
            )
            .await,
    );
    assert!(
        answer.message.contains("no backup from guardian-9"),
        "{answer}"
    );
    let verdicts = json!([{ "sender": "guardian-1", "verified": false }, { "sender": "guardian-2", "verified": true }]);
    client
        .post(
            &path("guardian-2", "backup-verdicts"),
            Some(&token(1)),
            &verdicts,
        )
        .await
        .unwrap();
    let all_good = json!([{ "sender": "guardian-1", "verified": true }, { "sender": "guardian-2", "verified": true }]);
    client
        .post(
            &path("guardian-1", "backup-verdicts"),
            Some(&token(0)),
            &all_good,
        )
        .await
        .unwrap();
    let status = ceremony_when(&client, id, |_| true).await;
    assert_eq!(
        status["state"], "key_ceremony",
        "a rejected backup keeps voting closed"
    );
    assert_eq!(
        status["rejected_backups"],
        json!([["guardian-1", "guardian-2"]])
    );

    let answer = |sender: &ElectionKeyPair, recipient: &ElectionKeyPair| {
        ElectionPartialKeyChallenge::answer(sender, &recipient.share())
    };
    let answer_path = |g: &str| path(g, "challenge-answers");
    let refused_answer = |body: ElectionPartialKeyChallenge, token: String| {
        let client = &client;
        async move {
            client
                .post_text(&answer_path("guardian-1"), &token, to_reference_json(&body))
                .await
                .map(|_| ())
                .map_err(Refused::of)
                .unwrap_err()
        }
    };
    let true_answer = answer(&keys[0], &keys[1]);
    let denied = refused_answer(true_answer.clone(), token(1)).await;
    assert!(denied.status == 401, "{denied}");
    let mut forged = true_answer.clone();
    forged.value = ElementModQ::random();
    let denied = refused_answer(forged, token(0)).await;
    assert!(
        denied.status == 400 && denied.message.contains("value"),
        "{denied}"
    );
    let impostor = ElectionKeyPair::generate("guardian-1", 1, 2);
    let denied = refused_answer(answer(&impostor, &keys[1]), token(0)).await;
    assert!(
        denied.status == 400 && denied.message.contains("coefficient_commitments"),
        "an answer must match the announced commitments: {denied}"
    );
    let denied = refused_answer(answer(&keys[0], &keys[0]), token(0)).await;
    assert!(
        denied.status == 409 && denied.message.contains("nothing to answer"),
        "{denied}"
    );
    client
        .post_text(
            &answer_path("guardian-1"),
            &token(0),
            to_reference_json(&true_answer),
        )
        .await
        .unwrap();
    let status = ceremony_when(&client, id, |_| true).await;
    assert_eq!(
        status["state"], "open",
        "the answer settled the last backup"
    );
    assert_eq!(status["rejected_backups"], json!([]));
    assert_eq!(
        status["answered_challenges"],
        json!([["guardian-1", "guardian-2"]])
    );
    let owed: Vec<ElectionPartialKeyChallenge> = electionguard::json::from_json(
        &client
            .get_text(&answer_path("guardian-2"), Some(&token(1)))
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(owed, vec![true_answer]);
    assert_eq!(&owed[0].value, keys[0].polynomial.coordinate(2).expose());
}

/// Polls the ceremony status until `ready` holds.
async fn ceremony_when(client: &Client, id: &str, ready: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..600 {
        let status = client
            .get(&format!("/api/elections/{id}/ceremony"))
            .await
            .unwrap();
        if ready(&status) {
            return status;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the ceremony did not get there in 60 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_guardian_command_answers_a_rejection_and_takes_the_answer_to_its_own() {
    let server = common::embedded().await;
    let client = Client::new(&server.url);
    let created = guardian_run_election(&client, &server.admin, 2, 2).await;
    let id = created["election_id"].as_str().unwrap().to_string();
    let token = created["guardians"][0]["token"]
        .as_str()
        .unwrap()
        .to_string();
    let path = |step: &str| format!("/api/elections/{id}/guardians/guardian-1/{step}");
    let dir = tempfile::tempdir().unwrap();
    let files = credential_files(dir.path(), &server.url, &created);
    let keystore = dir.path().join("guardian-2.keystore");
    let cli = tokio::process::Command::from(guardian(
        &["ceremony", "--wait", "60"],
        &files[1],
        &keystore,
        "passphrase 2",
    ))
    .output();
    let cli = tokio::spawn(cli);

    // The test plays guardian-1: it sends guardian-2 a backup from another polynomial,
    // and rejects guardian-2's honest backup.
    let me = ElectionKeyPair::generate("guardian-1", 1, 2);
    client
        .post_text(
            &path("announcement"),
            &token,
            to_reference_json(&GuardianRecord::from(&me.share())),
        )
        .await
        .unwrap();
    let status = ceremony_when(&client, &id, |s| {
        s["guardians"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["announced"] == true)
    })
    .await;
    let records: Vec<GuardianRecord> =
        serde_json::from_value(status["public_keys"].clone()).unwrap();
    let other = ElectionPublicKey::from(&records[1]);
    let impostor = ElectionKeyPair::generate("guardian-1", 1, 2);
    let backups = vec![
        ElectionPartialKeyBackup::generate(&me, &me.share()),
        ElectionPartialKeyBackup::generate(&impostor, &other),
    ];
    client
        .post_text(&path("backups"), &token, to_reference_json(&backups))
        .await
        .unwrap();
    ceremony_when(&client, &id, |s| s["guardians"][1]["backups_sent"] == true).await;
    let verdicts = json!([{ "sender": "guardian-1", "verified": true }, { "sender": "guardian-2", "verified": false }]);
    client
        .post(&path("backup-verdicts"), Some(&token), &verdicts)
        .await
        .unwrap();

    ceremony_when(&client, &id, |s| {
        s["rejected_backups"]
            .as_array()
            .unwrap()
            .contains(&json!(["guardian-1", "guardian-2"]))
    })
    .await;
    let answer = ElectionPartialKeyChallenge::answer(&me, &other);
    client
        .post_text(
            &path("challenge-answers"),
            &token,
            to_reference_json(&answer),
        )
        .await
        .unwrap();

    let stdout = succeeded(cli.await.unwrap().unwrap(), "guardian-2 ceremony");
    assert!(
        stdout.contains("guardian-1 rejected our backup; our answer"),
        "{stdout}"
    );
    assert!(stdout.contains("took guardian-1's coordinate"), "{stdout}");
    assert!(stdout.contains("ceremony complete"), "{stdout}");
    let status = ceremony_when(&client, &id, |s| s["state"] == "open").await;
    assert_eq!(
        status["answered_challenges"],
        json!([["guardian-1", "guardian-2"], ["guardian-2", "guardian-1"]])
    );
    let credential: Credential =
        serde_json::from_str(&std::fs::read_to_string(&files[1]).unwrap()).unwrap();
    let secret =
        amarvote::commands::guardian::open_keystore(&keystore, &credential, "passphrase 2")
            .unwrap();
    let taken = secret
        .received
        .iter()
        .find(|(owner, _)| owner == "guardian-1")
        .map(|(_, coordinate)| coordinate.expose().clone());
    assert_eq!(taken.as_ref(), Some(me.polynomial.coordinate(2).expose()));
}
