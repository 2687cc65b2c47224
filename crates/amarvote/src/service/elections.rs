//! Creating an election (manifest, server-side key ceremony, sealed guardian secrets),
//! the voter list, guardians' consent to decrypt, and the published results.

use electionguard::ballot::EncryptionDevice;
use electionguard::elgamal::SecretKey;
use electionguard::json::to_reference_json;
use electionguard::key_ceremony::{ElectionKeyPair, GuardianRecord};
use serde::{Deserialize, Serialize};

use super::codec::{from_cbor, to_cbor};
use super::{credential_hash, new_credential, App, ServiceError, ServiceResult};
use crate::domain::{new_id, now_ms, ElectionRow, ElectionState, GuardianRow};
use crate::election::{build_manifest, key_ceremony, ContestSpec};
use crate::sealing;

/// An administrator's description of an election.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NewElection {
    pub title: String,
    pub contests: Vec<NewContest>,
    pub guardians: u32,
    pub quorum: u32,
    #[serde(default)]
    pub voting_start: Option<String>,
    #[serde(default)]
    pub voting_end: Option<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NewContest {
    pub title: String,
    /// Candidates; a referendum question leaves this empty and gets `Yes` and `No`.
    #[serde(default)]
    pub candidates: Vec<String>,
    #[serde(default)]
    pub referendum: bool,
    /// n of n-of-m (default 1).
    #[serde(default = "one")]
    pub votes_allowed: u32,
}

fn one() -> u32 {
    1
}

/// Handed out once, at creation: each guardian's API token and passphrase.
#[derive(Debug, Serialize, Deserialize)]
pub struct GuardianCredentials {
    pub guardian_id: String,
    pub token: String,
    pub passphrase: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CreatedElection {
    pub election_id: String,
    pub manifest_hash: String,
    pub joint_public_key: String,
    pub guardians: Vec<GuardianCredentials>,
}

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

fn contest_specs(request: &NewElection) -> ServiceResult<Vec<ContestSpec>> {
    let bad = |m: String| Err(ServiceError::BadRequest(m));
    if request.title.trim().is_empty() {
        return bad("title must not be empty".into());
    }
    if request.contests.is_empty() {
        return bad("contests: at least one contest is needed".into());
    }
    if request.guardians == 0
        || request.guardians > 64
        || request.quorum == 0
        || request.quorum > request.guardians
    {
        return bad("guardians must be 1..=64 and quorum between 1 and guardians".into());
    }
    let mut specs = Vec::new();
    for (i, c) in request.contests.iter().enumerate() {
        let choices = if c.referendum {
            vec!["Yes".to_string(), "No".to_string()]
        } else {
            c.candidates.clone()
        };
        if c.referendum && !c.candidates.is_empty() {
            return bad(format!(
                "contests[{i}]: a referendum question has no candidates"
            ));
        }
        if choices.is_empty() || choices.iter().any(|n| n.trim().is_empty()) {
            return bad(format!(
                "contests[{i}].candidates: at least one named candidate is needed"
            ));
        }
        if c.votes_allowed == 0 || c.votes_allowed as usize > choices.len() {
            return bad(format!(
                "contests[{i}].votes_allowed must be between 1 and the number of candidates"
            ));
        }
        specs.push(ContestSpec {
            title: c.title.clone(),
            votes_allowed: c.votes_allowed,
            choices,
        });
    }
    Ok(specs)
}

/// Validates the request, runs the key ceremony and stores the election with its
/// guardians' secrets sealed under their passphrases and the server key.
pub async fn create(app: &App, request: NewElection) -> ServiceResult<CreatedElection> {
    let specs = contest_specs(&request)?;
    let id = new_id("election");
    let start = request
        .voting_start
        .clone()
        .unwrap_or_else(|| "2026-01-01T00:00:00+00:00".into());
    let end = request
        .voting_end
        .clone()
        .unwrap_or_else(|| "2036-01-01T00:00:00+00:00".into());
    let manifest = build_manifest(&id, &request.title, &specs, &start, &end);
    manifest
        .validate()
        .map_err(|e| ServiceError::BadRequest(format!("manifest: {e}")))?;
    let (guardians, quorum) = (request.guardians, request.quorum);
    let ceremony = tokio::task::spawn_blocking(move || key_ceremony(guardians, quorum))
        .await
        .map_err(anyhow::Error::from)??;
    let context = crate::election::context(&manifest, &ceremony, quorum);
    let device = EncryptionDevice {
        device_id: 1,
        session_id: 1,
        launch_code: 1,
        location: format!("amarvote-server:{id}"),
    };
    let mut credentials = Vec::new();
    let mut rows = Vec::new();
    for (i, key_pair) in ceremony.guardians.iter().enumerate() {
        let (row, creds) = seal_guardian(app, &id, key_pair, &ceremony, i).await?;
        rows.push(row);
        credentials.push(creds);
    }
    let election = ElectionRow {
        id: id.clone(),
        title: request.title.clone(),
        state: ElectionState::Open,
        guardians,
        quorum,
        manifest_json: to_reference_json(&manifest),
        context_json: to_reference_json(&context),
        device_json: to_reference_json(&device),
        shuffle_key: new_credential().into_bytes(),
        created_at: now_ms(),
    };
    app.store
        .insert_election(&election, &device.hash().to_hex(), &rows)
        .await?;
    Ok(CreatedElection {
        election_id: id,
        manifest_hash: context.manifest_hash.to_hex(),
        joint_public_key: context.elgamal_public_key.to_hex(),
        guardians: credentials,
    })
}

async fn seal_guardian(
    app: &App,
    election_id: &str,
    key_pair: &ElectionKeyPair,
    ceremony: &crate::election::Ceremony,
    index: usize,
) -> ServiceResult<(GuardianRow, GuardianCredentials)> {
    let guardian_id = key_pair.owner_id.clone();
    let received = ceremony
        .public_keys
        .iter()
        .zip(&ceremony.received[index])
        .map(|(k, c)| (k.owner_id.clone(), c.clone()))
        .collect();
    let secret = zeroize::Zeroizing::new(to_cbor(&GuardianSecret {
        key_pair: key_pair.clone(),
        received,
    }));
    let passphrase = sealing::random_passphrase();
    let token = new_credential();
    let purpose = guardian_purpose(election_id, &guardian_id);
    let sealed = {
        let (phrase, key) = (passphrase.clone(), app.server_key.clone());
        tokio::task::spawn_blocking(move || {
            sealing::seal_with_passphrase(&key, &phrase, &purpose, &secret)
        })
        .await
        .map_err(anyhow::Error::from)?
    };
    let row = GuardianRow {
        election_id: election_id.to_string(),
        guardian_id: guardian_id.clone(),
        sequence_order: key_pair.sequence_order,
        public_json: to_reference_json(&GuardianRecord::from(&key_pair.share())),
        sealed_secret: sealed,
        token_hash: credential_hash(&token),
        decryption_grant: None,
    };
    Ok((
        row,
        GuardianCredentials {
            guardian_id,
            token,
            passphrase,
        },
    ))
}

/// A guardian consents to decryption: its secret is opened with its passphrase and
/// resealed under the server key for the workers. Wrong passphrase: 401.
pub async fn grant_decryption(
    app: &App,
    election_id: &str,
    guardian_id: &str,
    token: &str,
    passphrase: String,
) -> ServiceResult<()> {
    let guardian = authorize_guardian(app, election_id, guardian_id, token).await?;
    let (key, purpose, grant_for) = (
        app.server_key.clone(),
        guardian_purpose(election_id, guardian_id),
        grant_purpose(election_id, guardian_id),
    );
    let grant = tokio::task::spawn_blocking(move || {
        let secret =
            sealing::open_with_passphrase(&key, &passphrase, &purpose, &guardian.sealed_secret)?;
        Ok::<_, sealing::SealError>(sealing::seal(&key, &grant_for, &secret))
    })
    .await
    .map_err(anyhow::Error::from)?
    .map_err(|e| ServiceError::Unauthorized(e.to_string()))?;
    app.store
        .set_decryption_grant(election_id, guardian_id, &grant)
        .await?;
    Ok(())
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
    if !super::same_secret(&guardian.token_hash, &credential_hash(token)) {
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
    let bytes = sealing::open(
        &app.server_key,
        &grant_purpose(&guardian.election_id, &guardian.guardian_id),
        grant,
    )?;
    from_cbor(&bytes)
}

/// Issues `count` one-time voting credentials; only their hashes are stored.
pub async fn add_voters(app: &App, election_id: &str, count: u32) -> ServiceResult<Vec<String>> {
    app.election(election_id).await?;
    if count == 0 || count > 100_000 {
        return Err(ServiceError::BadRequest(
            "count must be between 1 and 100000".into(),
        ));
    }
    let credentials: Vec<String> = (0..count).map(|_| new_credential()).collect();
    let hashes: Vec<String> = credentials.iter().map(|c| credential_hash(c)).collect();
    app.store.insert_voters(election_id, &hashes).await?;
    Ok(credentials)
}

/// Closes voting: no ballot is accepted after this, and the tally may start.
pub async fn close(app: &App, election_id: &str) -> ServiceResult<()> {
    app.election(election_id).await?;
    if !app
        .store
        .set_election_state(election_id, ElectionState::Open, ElectionState::Closed)
        .await?
    {
        return Err(ServiceError::Conflict("the election is not open".into()));
    }
    Ok(())
}
