//! Guardians' identity and secrets on the server: who a guardian token belongs to, and
//! how a guardian's sealed secret and decryption grant are named and opened.

use electionguard::elgamal::SecretKey;
use electionguard::key_ceremony::ElectionKeyPair;
use serde::{Deserialize, Serialize};

use super::codec::from_cbor;
use super::{credential_hash, same_secret, App, ServiceError, ServiceResult};
use crate::domain::GuardianRow;
use crate::sealing;

/// A guardian's private state: its key pair and polynomial, and the coordinates P_j(i)
/// the other guardians sent it (what it needs to stand in for a missing guardian j).
#[derive(Serialize, Deserialize)]
pub struct GuardianSecret {
    pub key_pair: ElectionKeyPair,
    pub received: Vec<(String, SecretKey)>,
}

pub fn guardian_purpose(election_id: &str, guardian_id: &str) -> String {
    format!("guardian-secret:{election_id}:{guardian_id}")
}

pub fn grant_purpose(election_id: &str, guardian_id: &str) -> String {
    format!("decryption-grant:{election_id}:{guardian_id}")
}

pub async fn authorize_guardian(
    app: &App,
    election_id: &str,
    guardian_id: &str,
    token: &str,
) -> ServiceResult<GuardianRow> {
    app.election(election_id).await?;
    let guardian = app
        .store
        .guardians(election_id)
        .await?
        .into_iter()
        .find(|g| g.guardian_id == guardian_id)
        .ok_or_else(|| {
            ServiceError::NotFound(format!(
                "no guardian {guardian_id} in election {election_id}"
            ))
        })?;
    if !same_secret(&guardian.token_hash, &credential_hash(token)) {
        return Err(ServiceError::Unauthorized("wrong guardian token".into()));
    }
    Ok(guardian)
}

/// Opens a decryption grant inside a worker; the secret is zeroized when dropped.
pub fn open_grant(app: &App, guardian: &GuardianRow) -> anyhow::Result<GuardianSecret> {
    let grant = guardian.decryption_grant.as_ref().ok_or_else(|| {
        anyhow::anyhow!(
            "guardian {} has not consented to decrypt",
            guardian.guardian_id
        )
    })?;
    anyhow::ensure!(
        !grant.is_empty(),
        "guardian {} decrypts on its own machine",
        guardian.guardian_id
    );
    let bytes = sealing::open(
        &app.server_key,
        &grant_purpose(&guardian.election_id, &guardian.guardian_id),
        grant,
    )?;
    from_cbor(&bytes)
}
