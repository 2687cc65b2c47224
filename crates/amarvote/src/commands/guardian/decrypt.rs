//! `amarvote guardian decrypt`: a guardian's decryption shares computed on its own machine.
//! It waits for the administrator's decryption job, then, for every chunk waiting for this
//! guardian, fetches the ciphertexts, computes the shares with Chaum-Pedersen proofs from
//! the keystore (its own key, or the coordinate a missing guardian sent it), and uploads
//! them; the server checks every proof. The secret never leaves this machine.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use electionguard::context::CiphertextElectionContext;
use electionguard::decrypt::{
    compute_compensated_share, compute_decryption_share, ContestCiphertexts,
};
use electionguard::json::{from_json, to_reference_json};
use electionguard::key_ceremony::{ElectionPublicKey, GuardianRecord};

use super::keystore::{open_keystore, passphrase, read_credential, Credential, KeystoreArgs};
use crate::commands::client::Client;
use crate::service::guardians::GuardianSecret;
use crate::service::operations::decrypt::Shares;
use crate::service::remote_decryption::{describe, RemoteChunk};

pub async fn run(args: &KeystoreArgs) -> Result<()> {
    let Some(keystore) = &args.guardian.keystore else {
        bail!("--keystore FILE is needed: the guardian's secret is kept there");
    };
    let (client, credential) = read_credential(&args.guardian)?;
    let secret = open_keystore(keystore, &credential, &passphrase()?)?;
    let deadline = Instant::now() + Duration::from_secs(args.wait);
    let job = wait_for_decryption(&client, &credential, deadline).await?;
    let election = &credential.election_id;
    let context: CiphertextElectionContext = from_json(
        &client
            .get_text(
                &format!("/api/elections/{election}/record/context.json"),
                None,
            )
            .await?,
    )?;
    let status = client
        .get(&format!("/api/elections/{election}/ceremony"))
        .await?;
    let records: Vec<GuardianRecord> = from_json(&status["public_keys"].to_string())?;
    let keys: Vec<ElectionPublicKey> = records.iter().map(ElectionPublicKey::from).collect();
    let chunks: Vec<RemoteChunk> = serde_json::from_value(
        client
            .get_authorized(
                &format!(
                    "/api/jobs/{job}/guardians/{}/chunks",
                    credential.guardian_id
                ),
                &credential.token,
            )
            .await?,
    )?;
    for chunk in &chunks {
        let path = |what: &str| format!("/api/jobs/{job}/chunks/{}/{what}", chunk.index);
        let objects: Vec<(String, Vec<ContestCiphertexts>)> = from_json(
            &client
                .get_text(&path("ciphertexts"), Some(&credential.token))
                .await?,
        )?;
        let shares = compute(&secret, &keys, chunk, &objects, &context)?;
        client
            .post_text(
                &path("shares"),
                &credential.token,
                to_reference_json(&shares),
            )
            .await?;
        let behalf = chunk
            .spec
            .missing
            .as_ref()
            .map(|m| format!(" on behalf of {m}"))
            .unwrap_or_default();
        println!(
            "{}: shares of {}{behalf} uploaded and verified",
            credential.guardian_id,
            describe(&chunk.spec.target)
        );
    }
    println!(
        "{}: {} chunks decrypted on this machine",
        credential.guardian_id,
        chunks.len()
    );
    Ok(())
}

/// The running decryption job of the election, once the administrator has started it.
async fn wait_for_decryption(
    client: &Client,
    credential: &Credential,
    deadline: Instant,
) -> Result<String> {
    loop {
        let jobs = client
            .get(&format!("/api/elections/{}/jobs", credential.election_id))
            .await?;
        let running = jobs["jobs"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|j| j["kind"] == "decrypt" && j["state"] == "running");
        if let Some(job) = running {
            return Ok(job["job_id"].as_str().context("a job id")?.to_string());
        }
        if Instant::now() > deadline {
            bail!("no decryption job is running; ask the administrator to start one");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// This guardian's shares of the chunk's objects: its own, or compensated ones.
fn compute(
    secret: &GuardianSecret,
    keys: &[ElectionPublicKey],
    chunk: &RemoteChunk,
    objects: &[(String, Vec<ContestCiphertexts>)],
    context: &CiphertextElectionContext,
) -> Result<Shares> {
    let qbar = &context.crypto_extended_base_hash;
    let Some(missing) = &chunk.spec.missing else {
        return Ok(Shares::Direct(
            objects
                .iter()
                .map(|(id, contests)| {
                    compute_decryption_share(id, &secret.key_pair, contests, qbar)
                })
                .collect(),
        ));
    };
    let find = |id: &str| {
        keys.iter()
            .find(|k| k.owner_id == id)
            .with_context(|| format!("no announced key for {id}"))
    };
    let (available, absent) = (find(&secret.key_pair.owner_id)?, find(missing)?);
    let (_, coordinate) = secret
        .received
        .iter()
        .find(|(from, _)| from == missing)
        .with_context(|| format!("the keystore holds no coordinate from {missing}"))?;
    Ok(Shares::Compensated(
        objects
            .iter()
            .map(|(id, contests)| {
                compute_compensated_share(id, coordinate, available, absent, contests, qbar)
            })
            .collect(),
    ))
}
