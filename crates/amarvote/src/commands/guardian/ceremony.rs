//! `amarvote guardian ceremony`: one guardian's part of a guardian-run key ceremony, on
//! the guardian's own machine. Its secret (key pair, polynomial, coordinates received)
//! lives only in the keystore file, sealed under the guardian's passphrase; the server
//! sees the public record, backups encrypted to the other guardians, and verdicts. When
//! a recipient rejects one of its backups, the guardian answers the challenge by
//! publishing that coordinate in clear; when one of its own rejections is answered, it
//! takes the coordinate from the answer. Every step is safe to repeat, so an interrupted
//! run is simply started again.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use electionguard::elgamal::SecretKey;
use electionguard::json::{from_json, to_reference_json};
use electionguard::key_ceremony::{
    ElectionKeyPair, ElectionPartialKeyBackup, ElectionPartialKeyChallenge, ElectionPublicKey,
    GuardianRecord,
};
use serde_json::{json, Value};
use zeroize::Zeroizing;

use super::keystore::{
    open_keystore, passphrase, read_credential, save_keystore, Credential, KeystoreArgs,
};
use crate::commands::client::{Client, Refused};
use crate::service::guardians::GuardianSecret;

/// What a guardian needs to answer, while it waits, a rejection of one of its backups.
struct Answerer<'a> {
    key_pair: &'a ElectionKeyPair,
    recipients: &'a [ElectionPublicKey],
    token: &'a str,
    path: String,
}

impl Answerer<'_> {
    /// Answers each unanswered rejection of this guardian's backups with the coordinate
    /// in clear; the server checks it against the announced commitments.
    async fn answer_rejections(&self, client: &Client, status: &Value) -> Result<()> {
        let me = &self.key_pair.owner_id;
        for (_, recipient) in rejected(status).filter(|(sender, _)| sender == me) {
            let recipient_key = self
                .recipients
                .iter()
                .find(|r| r.owner_id == recipient)
                .with_context(|| format!("{recipient} is not among the announced guardians"))?;
            let answer = ElectionPartialKeyChallenge::answer(self.key_pair, recipient_key);
            match client
                .post_text(&self.path, self.token, to_reference_json(&answer))
                .await
            {
                Ok(_) => println!("{me}: {recipient} rejected our backup; our answer (that coordinate, in clear) verified"),
                // The server found the answer false: our backup was faulty.
                Err(err) if err.downcast_ref::<Refused>().is_some_and(|r| r.status == 400) => {
                    return Err(err.context(format!("{recipient} rejected our backup and the server refused our answer; the administrator must start a new election")));
                }
                // Anything else (the network, a verdict changed meanwhile): the next poll sees.
                Err(err) => eprintln!("{me}: answering {recipient}'s challenge failed ({err:#}); trying again"),
            }
        }
        Ok(())
    }
}

/// (sender, recipient) of each rejected backup not answered yet.
fn rejected(status: &Value) -> impl Iterator<Item = (String, String)> + '_ {
    status["rejected_backups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|pair| Some((pair[0].as_str()?.to_owned(), pair[1].as_str()?.to_owned())))
}

/// Polls the ceremony status until `done` says so, or the wait is over, answering
/// rejections of this guardian's backups on the way.
async fn wait_for(
    client: &Client,
    election: &str,
    deadline: Instant,
    what: &str,
    answerer: Option<&Answerer<'_>>,
    done: impl Fn(&Value) -> bool,
) -> Result<Value> {
    loop {
        let status = client
            .get(&format!("/api/elections/{election}/ceremony"))
            .await?;
        if done(&status) {
            return Ok(status);
        }
        if let Some(answerer) = answerer {
            answerer.answer_rejections(client, &status).await?;
        }
        if Instant::now() > deadline {
            let unanswered: Vec<String> = rejected(&status)
                .map(|(sender, recipient)| {
                    format!("{recipient} rejected the backup from {sender}, which has not answered")
                })
                .collect();
            if unanswered.is_empty() {
                bail!("gave up waiting for {what}");
            }
            bail!("gave up waiting for {what}: {}", unanswered.join("; "));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn all(status: &Value, flag: &str) -> bool {
    status["guardians"]
        .as_array()
        .is_some_and(|g| g.iter().all(|g| g[flag] == true))
}

/// One guardian's link to the ceremony: the server, its credential and its keystore.
struct Guardian<'a> {
    client: Client,
    credential: Credential,
    keystore: &'a Path,
    passphrase: Zeroizing<String>,
}

impl Guardian<'_> {
    fn path(&self, step: &str) -> String {
        format!(
            "/api/elections/{}/guardians/{}/{step}",
            self.credential.election_id, self.credential.guardian_id
        )
    }

    fn save(&self, secret: &GuardianSecret) -> Result<()> {
        save_keystore(self.keystore, &self.credential, &self.passphrase, secret)
    }

    async fn status(&self) -> Result<Value> {
        let election = &self.credential.election_id;
        self.client
            .get(&format!("/api/elections/{election}/ceremony"))
            .await
    }

    fn answerer<'s>(
        &'s self,
        secret: &'s GuardianSecret,
        others: &'s [ElectionPublicKey],
    ) -> Answerer<'s> {
        Answerer {
            key_pair: &secret.key_pair,
            recipients: others,
            token: &self.credential.token,
            path: self.path("challenge-answers"),
        }
    }

    async fn wait_for(
        &self,
        what: &str,
        deadline: Instant,
        answerer: Option<&Answerer<'_>>,
        done: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        let election = &self.credential.election_id;
        wait_for(&self.client, election, deadline, what, answerer, done).await
    }
}

pub async fn run(args: &KeystoreArgs) -> Result<()> {
    let Some(keystore) = &args.guardian.keystore else {
        bail!("--keystore FILE is needed: the guardian's secret is kept there");
    };
    let (client, credential) = read_credential(&args.guardian)?;
    let guardian = Guardian {
        passphrase: passphrase()?,
        client,
        credential,
        keystore,
    };
    let deadline = Instant::now() + Duration::from_secs(args.wait);
    let mut secret = load_or_generate(
        &guardian.client,
        &guardian.credential,
        keystore,
        &guardian.passphrase,
    )
    .await?;
    let me = secret.key_pair.owner_id.clone();
    let mut status = guardian.status().await?;
    if status["state"] == "key_ceremony" {
        status = take_part(&guardian, &mut secret, deadline).await?;
    } else {
        println!("{me}: the key ceremony is already complete");
    }
    // Also on a rerun after the ceremony ended: an answer may have come after we stopped waiting.
    let records: Vec<GuardianRecord> = from_json(&status["public_keys"].to_string())?;
    let others: Vec<ElectionPublicKey> = records.iter().map(ElectionPublicKey::from).collect();
    collect_answers(&guardian, &mut secret, &others).await?;
    let election = &guardian.credential.election_id;
    let summary = guardian
        .client
        .get(&format!("/api/elections/{election}"))
        .await?;
    println!(
        "{me}: ceremony complete; election {election} is {}; joint public key {}…",
        summary["state"].as_str().unwrap_or("?"),
        summary["joint_public_key"]
            .as_str()
            .unwrap_or("")
            .get(..16)
            .unwrap_or("")
    );
    Ok(())
}

/// Announce, send backups, check the ones received, and wait for the joint key, answering
/// rejections of our backups on the way. Returns the completed ceremony's status.
async fn take_part(
    guardian: &Guardian<'_>,
    secret: &mut GuardianSecret,
    deadline: Instant,
) -> Result<Value> {
    let me = secret.key_pair.share();
    let token = &guardian.credential.token;
    let announcement = to_reference_json(&GuardianRecord::from(&me));
    guardian
        .client
        .post_text(&guardian.path("announcement"), token, announcement)
        .await?;
    println!(
        "{}: public key announced; waiting for the other guardians",
        me.owner_id
    );
    let status = guardian
        .wait_for("every announcement", deadline, None, |s| {
            all(s, "announced")
        })
        .await?;
    let records: Vec<GuardianRecord> = from_json(&status["public_keys"].to_string())?;
    let others: Vec<ElectionPublicKey> = records.iter().map(ElectionPublicKey::from).collect();
    let quorum = u32::try_from(me.coefficient_commitments.len())?;
    for other in &others {
        other
            .validate(quorum)
            .with_context(|| format!("{}'s announcement does not verify", other.owner_id))?;
    }
    let backups: Vec<ElectionPartialKeyBackup> = others
        .iter()
        .map(|recipient| ElectionPartialKeyBackup::generate(&secret.key_pair, recipient))
        .collect();
    guardian
        .client
        .post_text(
            &guardian.path("backups"),
            token,
            to_reference_json(&backups),
        )
        .await?;
    println!(
        "{}: backups sent to {} guardians",
        me.owner_id,
        others.len()
    );

    let answerer = guardian.answerer(secret, &others);
    guardian
        .wait_for("every guardian's backups", deadline, Some(&answerer), |s| {
            all(s, "backups_sent")
        })
        .await?;
    let received: Vec<ElectionPartialKeyBackup> = from_json(
        &guardian
            .client
            .get_text(&guardian.path("backups"), Some(token))
            .await?,
    )?;
    let verdicts = verify_received(secret, &others, &received);
    guardian.save(secret)?;
    guardian
        .client
        .post(
            &guardian.path("backup-verdicts"),
            Some(token),
            &json!(verdicts),
        )
        .await?;
    println!(
        "{}: {} backups received and checked",
        me.owner_id,
        received.len()
    );

    let answerer = guardian.answerer(secret, &others);
    guardian
        .wait_for("the joint key", deadline, Some(&answerer), |s| {
            s["state"] != "key_ceremony"
        })
        .await
}

/// Takes into the keystore the coordinates senders published in answer to our rejections.
async fn collect_answers(
    guardian: &Guardian<'_>,
    secret: &mut GuardianSecret,
    others: &[ElectionPublicKey],
) -> Result<()> {
    let token = &guardian.credential.token;
    let answers: Vec<ElectionPartialKeyChallenge> = from_json(
        &guardian
            .client
            .get_text(&guardian.path("challenge-answers"), Some(token))
            .await?,
    )?;
    if !answers.is_empty() {
        take_answers(secret, others, &answers)?;
        guardian.save(secret)?;
    }
    Ok(())
}

/// The keys from an earlier run's keystore, or new ones (saved before anything is sent).
async fn load_or_generate(
    client: &Client,
    credential: &Credential,
    keystore: &Path,
    passphrase: &str,
) -> Result<Box<GuardianSecret>> {
    if keystore.exists() {
        return open_keystore(keystore, credential, passphrase);
    }
    let summary = client
        .get(&format!("/api/elections/{}", credential.election_id))
        .await?;
    let status = client
        .get(&format!(
            "/api/elections/{}/ceremony",
            credential.election_id
        ))
        .await?;
    let sequence_order = status["guardians"]
        .as_array()
        .and_then(|g| {
            g.iter()
                .find(|g| g["guardian_id"] == credential.guardian_id.as_str())
        })
        .and_then(|g| g["sequence_order"].as_u64())
        .context("the ceremony does not list this guardian")?;
    let quorum = u32::try_from(summary["quorum"].as_u64().context("no quorum")?)?;
    let secret = Box::new(GuardianSecret {
        key_pair: ElectionKeyPair::generate(&credential.guardian_id, sequence_order, quorum),
        received: Vec::new(),
    });
    save_keystore(keystore, credential, passphrase, &secret)?;
    Ok(secret)
}

/// Decrypts each backup and checks it against its sender's commitments; keeps the good ones.
fn verify_received(
    secret: &mut GuardianSecret,
    senders: &[ElectionPublicKey],
    received: &[ElectionPartialKeyBackup],
) -> Vec<Value> {
    secret.received.clear();
    received
        .iter()
        .map(|backup| {
            let sender = senders.iter().find(|s| s.owner_id == backup.owner_id);
            let coordinate = sender.and_then(|s| backup.verify(&secret.key_pair, s).ok());
            let verified = coordinate.is_some();
            if let Some(coordinate) = coordinate {
                secret.received.push((backup.owner_id.clone(), coordinate));
            }
            json!({ "sender": backup.owner_id, "verified": verified })
        })
        .collect()
}

/// Takes the coordinates senders published in answer to this guardian's rejections, each
/// checked against its sender's announced commitments, in place of the rejected backups.
fn take_answers(
    secret: &mut GuardianSecret,
    senders: &[ElectionPublicKey],
    answers: &[ElectionPartialKeyChallenge],
) -> Result<()> {
    for answer in answers {
        let sender = senders
            .iter()
            .find(|s| s.owner_id == answer.owner_id)
            .with_context(|| {
                format!("an answer from {}, who is not a guardian", answer.owner_id)
            })?;
        let addressed = answer.designated_id == secret.key_pair.owner_id
            && answer.designated_sequence_order == secret.key_pair.sequence_order;
        if !addressed
            || answer.coefficient_commitments != sender.coefficient_commitments
            || !answer.verify()
        {
            bail!(
                "{}'s answer to our challenge does not verify",
                sender.owner_id
            );
        }
        secret
            .received
            .retain(|(owner, _)| owner != &sender.owner_id);
        secret.received.push((
            sender.owner_id.clone(),
            SecretKey::new(answer.value.clone()),
        ));
        println!(
            "{}: took {}'s coordinate from its answer to our challenge",
            secret.key_pair.owner_id, sender.owner_id
        );
    }
    Ok(())
}
