//! Creating an election (manifest, server-side key ceremony, sealed guardian secrets),
//! the voter list, guardians' consent to decrypt, and the published results.

use electionguard::ballot::EncryptionDevice;
use electionguard::json::to_reference_json;
use electionguard::key_ceremony::{ElectionKeyPair, GuardianRecord};
use electionguard::manifest::Manifest;
use serde::{Deserialize, Serialize};

use super::codec::to_cbor;
use super::guardians::{authorize_guardian, grant_purpose, guardian_purpose, GuardianSecret};
use super::{credential_hash, new_credential, App, ServiceError, ServiceResult};
use crate::domain::{now_ms, ElectionId, ElectionRow, ElectionState, GuardianRow};
use crate::election::{build_manifest, key_ceremony, ContestSpec};
use crate::sealing;

/// An administrator's description of an election.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "title": "City council",
    "contests": [{ "title": "Mayor", "candidates": ["Alice", "Bob"] }],
    "guardians": 3,
    "quorum": 2
}))]
pub struct NewElection {
    #[schema(min_length = 1, max_length = 256)]
    pub title: String,
    #[schema(min_items = 1, max_items = 50)]
    pub contests: Vec<NewContest>,
    /// How many guardians share the election key.
    #[schema(minimum = 1, maximum = 16)]
    pub guardians: u32,
    /// How many of them must take part to decrypt.
    #[schema(minimum = 1, maximum = 16)]
    pub quorum: u32,
    /// When voting opens (RFC 3339); at once by default.
    #[serde(default)]
    #[schema(format = DateTime)]
    pub voting_start: Option<String>,
    /// When voting closes (RFC 3339); a week after it opens by default.
    #[serde(default)]
    #[schema(format = DateTime)]
    pub voting_end: Option<String>,
    /// Who runs the key ceremony: the server (convenience) or the guardians themselves.
    #[serde(default)]
    pub key_ceremony: KeyCeremonyMode,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeyCeremonyMode {
    /// Keys generated on the server, each sealed under its guardian's passphrase.
    #[default]
    Server,
    /// Each guardian generates its keys on its own machine (`amarvote guardian ceremony`).
    Guardians,
}

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewContest {
    #[schema(min_length = 1, max_length = 256)]
    pub title: String,
    /// Candidates; a referendum question leaves this empty and gets `Yes` and `No`.
    #[serde(default)]
    #[schema(max_items = 50)]
    pub candidates: Vec<String>,
    #[serde(default)]
    pub referendum: bool,
    /// n of n-of-m (default 1).
    #[serde(default = "one")]
    #[schema(minimum = 1, maximum = 50, default = 1)]
    pub votes_allowed: u32,
}

fn one() -> u32 {
    1
}

impl NewElection {
    /// An election whose keys the server generates, voting open at once for a week.
    pub fn server_run(title: &str, contests: Vec<NewContest>, guardians: u32, quorum: u32) -> Self {
        NewElection {
            title: title.to_owned(),
            contests,
            guardians,
            quorum,
            voting_start: None,
            voting_end: None,
            key_ceremony: KeyCeremonyMode::Server,
        }
    }
}

impl NewContest {
    /// A one-vote contest between `candidates`.
    pub fn between<S: Into<String>>(title: &str, candidates: impl IntoIterator<Item = S>) -> Self {
        NewContest {
            title: title.to_owned(),
            candidates: candidates.into_iter().map(Into::into).collect(),
            referendum: false,
            votes_allowed: 1,
        }
    }
}

/// Handed out once, at creation: each guardian's API token, and its passphrase when the
/// server generated its keys.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GuardianCredentials {
    pub guardian_id: String,
    pub token: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub passphrase: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreatedElection {
    pub election_id: String,
    pub state: ElectionState,
    pub manifest_hash: String,
    /// Known at once when the server ran the ceremony; after it, when the guardians do.
    pub joint_public_key: Option<String>,
    pub guardians: Vec<GuardianCredentials>,
}

/// How a guardian consents to decrypt: with the passphrase of the secret the server
/// sealed for it, or, after a guardian-run ceremony, by handing over its key share.
pub enum Consent {
    Passphrase(String),
    KeyShare(GuardianSecret),
    /// The guardian computes its shares on its own machine (`amarvote guardian decrypt`).
    Remote,
}

/// Bounds on what an administrator may describe: enough for any real ballot, small
/// enough that no request can make the server build a huge manifest or key ceremony.
pub const MAX_TITLE_CHARS: usize = 256;
pub const MAX_CONTESTS: usize = 50;
pub const MAX_CANDIDATES: usize = 50;
/// The key ceremony is quadratic in the guardians (every guardian backs up its
/// polynomial to every other): 64 took minutes inside one request.
pub const MAX_GUARDIANS: u32 = 16;

fn check_text(field: &str, text: &str) -> ServiceResult<()> {
    let chars = text.chars().count();
    if text.trim().is_empty() || chars > MAX_TITLE_CHARS {
        return Err(ServiceError::BadRequest(format!(
            "{field} must be 1 to {MAX_TITLE_CHARS} characters (it has {chars})"
        )));
    }
    if text.chars().any(char::is_control) {
        return Err(ServiceError::BadRequest(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(())
}

/// The voting window, normalized to UTC; the end must come after the start.
fn voting_window(request: &NewElection) -> ServiceResult<(String, String)> {
    let date = |field: &str, value: &Option<String>, default: &str| {
        let text = value.clone().unwrap_or_else(|| default.to_string());
        electionguard::manifest::iso_utc(&text)
            .map(|_| text.clone())
            .ok_or_else(|| {
                ServiceError::BadRequest(format!(
                    "{field} must be an ISO 8601 date and time, e.g. 2026-11-03T07:00:00-05:00"
                ))
            })
    };
    let start = date(
        "voting_start",
        &request.voting_start,
        "2026-01-01T00:00:00+00:00",
    )?;
    let end = date(
        "voting_end",
        &request.voting_end,
        "2036-01-01T00:00:00+00:00",
    )?;
    if electionguard::manifest::iso_utc(&end) <= electionguard::manifest::iso_utc(&start) {
        return Err(ServiceError::BadRequest(
            "voting_end must come after voting_start".into(),
        ));
    }
    Ok((start, end))
}

fn contest_specs(request: &NewElection) -> ServiceResult<Vec<ContestSpec>> {
    let bad = |m: String| Err(ServiceError::BadRequest(m));
    check_text("title", &request.title)?;
    if request.contests.is_empty() || request.contests.len() > MAX_CONTESTS {
        return bad(format!("contests: 1 to {MAX_CONTESTS} contests are needed"));
    }
    if request.guardians == 0 || request.guardians > MAX_GUARDIANS {
        return bad(format!("guardians must be 1 to {MAX_GUARDIANS}"));
    }
    if request.quorum == 0 || request.quorum > request.guardians {
        return bad("quorum must be between 1 and the number of guardians".into());
    }
    for (i, c) in request.contests.iter().enumerate() {
        check_text(&format!("contests[{i}].title"), &c.title)?;
        if c.candidates.len() > MAX_CANDIDATES {
            return bad(format!(
                "contests[{i}].candidates: at most {MAX_CANDIDATES} candidates"
            ));
        }
        for (j, name) in c.candidates.iter().enumerate() {
            check_text(&format!("contests[{i}].candidates[{j}]"), name)?;
        }
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
    let (start, end) = voting_window(&request)?;
    let id = ElectionId::random();
    let manifest = build_manifest(&id, &request.title, &specs, &start, &end);
    manifest
        .validate()
        .map_err(|e| ServiceError::BadRequest(format!("manifest: {e}")))?;
    if request.key_ceremony == KeyCeremonyMode::Guardians {
        return create_for_guardians(app, id, &request, &manifest).await;
    }
    let (guardians, quorum) = (request.guardians, request.quorum);
    let ceremony = tokio::task::spawn_blocking(move || key_ceremony(guardians, quorum))
        .await
        .map_err(anyhow::Error::from)??;
    let context = crate::election::context(&manifest, &ceremony.public_keys, quorum);
    let device = server_device(&id);
    let mut credentials = Vec::new();
    let mut rows = Vec::new();
    for (i, key_pair) in ceremony.guardians.iter().enumerate() {
        let (row, creds) = seal_guardian(app, &id, key_pair, &ceremony, i).await?;
        rows.push(row);
        credentials.push(creds);
    }
    let mut election = election_row(&id, &request, &manifest, &device);
    election.context_json = to_reference_json(&context);
    app.store
        .insert_election(&election, &super::ballots::device_row(&device, None), &rows)
        .await?;
    Ok(CreatedElection {
        election_id: id.into(),
        state: election.state,
        manifest_hash: context.manifest_hash.to_hex(),
        joint_public_key: Some(context.elgamal_public_key.to_hex()),
        guardians: credentials,
    })
}

/// The one encryption device of the server-side encryption.
fn server_device(election_id: &str) -> EncryptionDevice {
    EncryptionDevice {
        device_id: 1,
        session_id: 1,
        launch_code: 1,
        location: format!("amarvote-server:{election_id}"),
    }
}

/// An open election; a guardian-run ceremony clears its context until the joint key exists.
fn election_row(
    id: &ElectionId,
    request: &NewElection,
    manifest: &Manifest,
    device: &EncryptionDevice,
) -> ElectionRow {
    ElectionRow {
        id: id.clone(),
        title: request.title.clone(),
        state: ElectionState::Open,
        guardians: request.guardians,
        quorum: request.quorum,
        manifest_json: to_reference_json(manifest),
        context_json: String::new(),
        device_json: to_reference_json(device),
        shuffle_key: new_credential().into_bytes(),
        created_at: now_ms(),
    }
}

/// Stores the election in the key-ceremony state with a token per guardian and no keys:
/// the guardians generate and announce them (see [`super::ceremony`]).
async fn create_for_guardians(
    app: &App,
    id: ElectionId,
    request: &NewElection,
    manifest: &Manifest,
) -> ServiceResult<CreatedElection> {
    let device = server_device(&id);
    let mut rows = Vec::new();
    let mut credentials = Vec::new();
    for sequence_order in 1..=u64::from(request.guardians) {
        let guardian_id = format!("guardian-{sequence_order}");
        let token = new_credential();
        rows.push(GuardianRow {
            election_id: id.clone(),
            guardian_id: guardian_id.clone(),
            sequence_order,
            public_json: String::new(),
            sealed_secret: Vec::new(),
            token_hash: credential_hash(&token),
            decryption_grant: None,
        });
        credentials.push(GuardianCredentials {
            guardian_id,
            token,
            passphrase: None,
        });
    }
    let mut election = election_row(&id, request, manifest, &device);
    election.state = ElectionState::KeyCeremony;
    app.store
        .insert_election(&election, &super::ballots::device_row(&device, None), &rows)
        .await?;
    Ok(CreatedElection {
        election_id: id.into(),
        state: election.state,
        manifest_hash: manifest.crypto_hash().to_hex(),
        joint_public_key: None,
        guardians: credentials,
    })
}

async fn seal_guardian(
    app: &App,
    election_id: &ElectionId,
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
        election_id: election_id.clone(),
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
            passphrase: Some(passphrase),
        },
    ))
}

/// A guardian consents to decryption: its secret, opened with its passphrase or handed
/// over, is sealed under the server key for the workers. Wrong passphrase: 401.
pub async fn grant_decryption(
    app: &App,
    election_id: &str,
    guardian_id: &str,
    token: &str,
    consent: Consent,
) -> ServiceResult<()> {
    let guardian = authorize_guardian(app, election_id, guardian_id, token).await?;
    let guardian_run = guardian.sealed_secret.is_empty();
    let passphrase = match consent {
        Consent::Passphrase(passphrase) if !guardian_run => passphrase,
        Consent::KeyShare(secret) if guardian_run => {
            let guardians = app.store.guardians(election_id).await?;
            super::ceremony::check_key_share(&guardian, &guardians, &secret)?;
            let grant = sealing::seal(
                &app.server_key,
                &grant_purpose(election_id, guardian_id),
                &zeroize::Zeroizing::new(to_cbor(&secret)),
            );
            app.store
                .set_decryption_grant(election_id, guardian_id, &grant)
                .await?;
            return Ok(());
        }
        Consent::Remote if guardian_run => {
            app.store
                .set_decryption_grant(election_id, guardian_id, &[])
                .await?;
            return Ok(());
        }
        Consent::Remote => {
            return Err(ServiceError::BadRequest(
                "remote: the server generated this guardian's keys, so it cannot decrypt elsewhere".into(),
            ))
        }
        Consent::Passphrase(_) => {
            return Err(ServiceError::BadRequest(
                "key_share: this guardian generated its own keys; consent with its key share (amarvote guardian consent --keystore)".into(),
            ))
        }
        Consent::KeyShare(_) => {
            return Err(ServiceError::BadRequest(
                "passphrase: the server generated this guardian's keys; consent with the passphrase".into(),
            ))
        }
    };
    let (key, purpose, grant_for) = (
        app.server_key.clone(),
        guardian_purpose(election_id, guardian_id),
        grant_purpose(election_id, guardian_id),
    );
    let who = format!("{election_id}/{guardian_id}");
    let grant = app
        .passphrase_gate
        .check(&who, move || {
            let secret = sealing::open_with_passphrase(
                &key,
                &passphrase,
                &purpose,
                &guardian.sealed_secret,
            )?;
            Ok::<_, sealing::SealError>(sealing::seal(&key, &grant_for, &secret))
        })
        .await?
        .map_err(|e| ServiceError::Unauthorized(e.to_string()))?;
    app.store
        .set_decryption_grant(election_id, guardian_id, &grant)
        .await?;
    Ok(())
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
    // In the background: closing answers at once, and a tally that starts meanwhile is
    // only slower, never wrong.
    let store = app.store.clone();
    tokio::spawn(async move {
        if let Err(e) = store.refresh_ballot_statistics().await {
            tracing::warn!(error = %e, "could not refresh the ballot table's statistics");
        }
    });
    Ok(())
}
