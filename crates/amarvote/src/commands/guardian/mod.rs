//! `amarvote guardian …`: a guardian's part, done from the guardian's own terminal with
//! the credential file the administrator handed out and the guardian's passphrase.

use anyhow::Result;
use clap::Subcommand;
use serde_json::json;
use zeroize::Zeroizing;

mod ceremony;
mod decrypt;
mod keystore;

pub use keystore::{open_keystore, ConsentArgs, Credential, KeystoreArgs};

use super::client::Client;
use keystore::{passphrase, read_credential};

#[derive(Subcommand, Debug)]
pub enum GuardianCommand {
    /// Take part in a guardian-run key ceremony: generate this guardian's keys here, announce
    /// them, exchange backups with the other guardians and verify those received. The secret
    /// stays in the keystore file, sealed under the passphrase.
    Ceremony(KeystoreArgs),
    /// Consent to decrypt: unlock this guardian's key share for the election's decryption
    /// (with --keystore after a guardian-run ceremony).
    Consent(ConsentArgs),
    /// Show the election's guardians: who is present, who is missing, whether the quorum is met.
    Status(ConsentArgs),
    /// Decrypt on this machine: compute this guardian's shares (and compensated shares for
    /// missing guardians) of the running decryption job, with proofs, and upload them.
    /// The guardian consents first with `consent --remote`.
    Decrypt(KeystoreArgs),
}

pub async fn run(command: GuardianCommand) -> Result<()> {
    match command {
        GuardianCommand::Ceremony(args) => ceremony::run(&args).await,
        GuardianCommand::Consent(args) => consent(&args).await,
        GuardianCommand::Decrypt(args) => decrypt::run(&args).await,
        GuardianCommand::Status(args) => {
            let (client, credential) = read_credential(&args)?;
            print_status(&client, &credential.election_id).await
        }
    }
}

async fn consent(args: &ConsentArgs) -> Result<()> {
    let (client, credential) = read_credential(args)?;
    let path = format!(
        "/api/elections/{}/guardians/{}/decryption-consent",
        credential.election_id, credential.guardian_id
    );
    if args.remote {
        client
            .post(&path, Some(&credential.token), &json!({ "remote": true }))
            .await?;
        println!(
            "{} will decrypt election {} on this machine: run `amarvote guardian decrypt` once the administrator starts decryption",
            credential.guardian_id, credential.election_id
        );
        return print_status(&client, &credential.election_id).await;
    }
    let passphrase = passphrase()?;
    let body = match &args.keystore {
        None => Zeroizing::new(json!({ "passphrase": passphrase.as_str() }).to_string()),
        Some(keystore) => {
            let secret = open_keystore(keystore, &credential, &passphrase)?;
            Zeroizing::new(format!(
                r#"{{"key_share":{}}}"#,
                *Zeroizing::new(electionguard::json::to_reference_json(&*secret))
            ))
        }
    };
    client
        .post_text(&path, &credential.token, body.to_string())
        .await?;
    println!(
        "{} consents to decrypt election {}",
        credential.guardian_id, credential.election_id
    );
    print_status(&client, &credential.election_id).await
}

async fn print_status(client: &Client, election: &str) -> Result<()> {
    let status = client
        .get(&format!("/api/elections/{election}/guardians"))
        .await?;
    for guardian in status["guardians"].as_array().into_iter().flatten() {
        let present = if guardian["consented_to_decrypt"] == true {
            "present"
        } else {
            "missing"
        };
        println!(
            "  {:<14} {present:<8} proofs {}",
            guardian["guardian_id"].as_str().unwrap_or("?"),
            if guardian["proofs_verified"] == true {
                "verified"
            } else {
                "FAILED"
            }
        );
    }
    println!(
        "{} present, quorum {}: {}",
        status["present"],
        status["quorum"],
        if status["quorum_met"] == true {
            "met"
        } else {
            "not met"
        }
    );
    Ok(())
}
