//! `amarvote guardian …`: a guardian's part, done from the guardian's own terminal with
//! the credential file the administrator handed out and the guardian's passphrase.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde::Deserialize;
use serde_json::json;
use zeroize::Zeroizing;

use super::demo_server::Client;

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

#[derive(Args, Debug)]
pub struct ConsentArgs {
    /// The guardian credential file (`guardian-N.json`) from the administrator.
    #[arg(long)]
    pub credential: PathBuf,
    /// The server; by default the one named in the credential file.
    #[arg(long)]
    pub server: Option<String>,
    /// The keystore written by `amarvote guardian ceremony` (guardian-run ceremonies).
    #[arg(long)]
    pub keystore: Option<PathBuf>,
    /// Consent to decrypt on this machine (`amarvote guardian decrypt`): the key share
    /// never leaves it.
    #[arg(long, conflicts_with = "keystore")]
    pub remote: bool,
}

#[derive(Args, Debug)]
pub struct KeystoreArgs {
    #[command(flatten)]
    pub guardian: ConsentArgs,
    /// How long to wait for the other guardians, in seconds.
    #[arg(long, default_value_t = 3600)]
    pub wait: u64,
}

/// What the web page writes for each guardian when the election is created.
#[derive(Deserialize)]
pub struct Credential {
    pub server: Option<String>,
    pub election_id: String,
    pub guardian_id: String,
    pub token: String,
}

pub fn read_credential(args: &ConsentArgs) -> Result<(Client, Credential)> {
    let text = std::fs::read_to_string(&args.credential)
        .with_context(|| format!("cannot read {}", args.credential.display()))?;
    let credential: Credential = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not an AmarVote guardian credential file",
            args.credential.display()
        )
    })?;
    let Some(server) = args.server.clone().or_else(|| credential.server.clone()) else {
        bail!("the credential file names no server: pass --server URL");
    };
    Ok((Client::new(&server), credential))
}

/// The passphrase from `AMARVOTE_PASSPHRASE`, or asked for without echo.
pub fn passphrase() -> Result<Zeroizing<String>> {
    if let Ok(value) = std::env::var("AMARVOTE_PASSPHRASE") {
        return Ok(Zeroizing::new(value));
    }
    let value = rpassword::prompt_password("Guardian passphrase: ").context(
        "cannot read the passphrase (set AMARVOTE_PASSPHRASE when there is no terminal)",
    )?;
    Ok(Zeroizing::new(value))
}

pub async fn run(command: GuardianCommand) -> Result<()> {
    match command {
        GuardianCommand::Ceremony(args) => super::guardian_ceremony::run(&args).await,
        GuardianCommand::Consent(args) => consent(&args).await,
        GuardianCommand::Decrypt(args) => super::guardian_decrypt::run(&args).await,
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
            let secret =
                super::guardian_ceremony::open_keystore(keystore, &credential, &passphrase)?;
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
