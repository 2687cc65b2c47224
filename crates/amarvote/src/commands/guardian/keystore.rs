//! What a guardian's commands share: the flags that name the credential and keystore, the
//! credential file, the passphrase, and the keystore sealed under it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::commands::client::Client;
use crate::sealing::{self, ServerKey};
use crate::service::codec::{from_cbor, to_cbor};
use crate::service::guardians::GuardianSecret;

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

fn keystore_purpose(credential: &Credential) -> String {
    format!(
        "guardian-keystore:{}:{}",
        credential.election_id, credential.guardian_id
    )
}

/// Opens the keystore; a wrong passphrase or another guardian's file is an error.
pub fn open_keystore(
    path: &Path,
    credential: &Credential,
    passphrase: &str,
) -> Result<Box<GuardianSecret>> {
    let sealed = std::fs::read(path)
        .with_context(|| format!("cannot read the keystore {}", path.display()))?;
    let bytes = sealing::open_with_passphrase(
        &ServerKey::local(),
        passphrase,
        &keystore_purpose(credential),
        &sealed,
    )
    .with_context(|| format!("cannot open the keystore {}", path.display()))?;
    Ok(Box::new(from_cbor(&bytes)?))
}

pub fn save_keystore(
    path: &Path,
    credential: &Credential,
    passphrase: &str,
    secret: &GuardianSecret,
) -> Result<()> {
    let bytes = Zeroizing::new(to_cbor(secret));
    let sealed = sealing::seal_with_passphrase(
        &ServerKey::local(),
        passphrase,
        &keystore_purpose(credential),
        &bytes,
    );
    let partial = path.with_extension("partial");
    std::fs::write(&partial, sealed)?;
    std::fs::set_permissions(
        &partial,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )?;
    std::fs::rename(&partial, path)?;
    Ok(())
}
