//! The ballot box: server-side encryption with the Benaloh choice (cast or challenge),
//! client-encrypted ballots (every proof verified before anything is stored), one cast
//! ballot per voting credential, and "verify my vote" by tracking code.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use electionguard::ballot::{
    BallotBoxState, CiphertextBallot, EncryptionDevice, PlaintextBallot, PlaintextBallotContest,
    PlaintextBallotSelection,
};
use electionguard::challenge::{open_challenged_ballot, verify_challenge};
use electionguard::encrypt::Encryptor;
use electionguard::group::ElementModQ;
use electionguard::manifest::Manifest;
use electionguard::tally::TallyLayout;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::codec::{from_cbor, to_cbor};
use super::{credential_hash, App, ElectionCrypto, ServiceError, ServiceResult, WideKeys};
use crate::domain::{
    check_id, new_id, now_ms, tally_shard, BallotRow, BallotState, ElectionRow, ElectionState,
};
use crate::election::BALLOT_STYLE;
use crate::ports::{
    CastRules, ChainLink, DeviceError, DeviceRow, TallyContribution, TallyFolder, VoterStatus,
};
use crate::sealing;

/// The voter's marks: for each contest id, the selection ids chosen.
pub type Choices = HashMap<String, Vec<String>>;

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EncryptedBallot {
    pub ballot_id: String,
    /// The encryption's fingerprint, shown before the voter casts or challenges.
    pub crypto_hash: String,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Receipt {
    pub ballot_id: String,
    pub state: BallotState,
    pub tracking_code: String,
    /// For a challenged ballot: the choices it was opened to (and proved to contain).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    #[schema(value_type = Option<std::collections::HashMap<String, Vec<String>>>)]
    pub revealed: Option<Choices>,
}

fn nonce_purpose(election_id: &str, ballot_id: &str) -> String {
    format!("ballot-nonces:{election_id}:{ballot_id}")
}

/// The ballot's place in the election's keyed permutation: chunks are ranges of it.
pub fn shuffle_position(election: &ElectionRow, ballot_id: &str) -> i64 {
    let mut mac = <Hmac<Sha256>>::new_from_slice(&election.shuffle_key).expect("any key length");
    mac.update(ballot_id.as_bytes());
    i64::from_be_bytes(
        mac.finalize().into_bytes()[..8]
            .try_into()
            .expect("8 bytes"),
    )
}

fn plaintext_from_choices(
    manifest: &Manifest,
    ballot_id: &str,
    choices: &Choices,
) -> ServiceResult<PlaintextBallot> {
    let bad = |m: String| Err(ServiceError::BadRequest(m));
    for contest_id in choices.keys() {
        if manifest.contest(contest_id).is_none() {
            return bad(format!("choices: unknown contest {contest_id}"));
        }
    }
    let mut contests = Vec::new();
    for contest in &manifest.contests {
        let chosen: HashSet<&String> = choices
            .get(&contest.object_id)
            .map(|c| c.iter().collect())
            .unwrap_or_default();
        if let Some(unknown) = chosen.iter().find(|id| {
            !contest
                .ballot_selections
                .iter()
                .any(|s| &&s.object_id == *id)
        }) {
            return bad(format!(
                "choices.{}: unknown selection {unknown}",
                contest.object_id
            ));
        }
        let allowed = contest.votes_allowed.unwrap_or(contest.number_elected);
        if chosen.len() as u64 > allowed {
            return bad(format!(
                "choices.{}: {} selections but at most {allowed} allowed (overvote)",
                contest.object_id,
                chosen.len()
            ));
        }
        let ballot_selections = contest
            .ballot_selections
            .iter()
            .map(|s| PlaintextBallotSelection {
                object_id: s.object_id.clone(),
                vote: u64::from(chosen.contains(&s.object_id)),
                is_placeholder_selection: false,
                write_in: None,
            })
            .collect();
        contests.push(PlaintextBallotContest {
            object_id: contest.object_id.clone(),
            ballot_selections,
        });
    }
    Ok(PlaintextBallot {
        object_id: ballot_id.to_string(),
        style_id: BALLOT_STYLE.into(),
        contests,
    })
}

/// The selections marked on a plaintext ballot, per contest.
pub fn choices_of(plaintext: &PlaintextBallot) -> Choices {
    plaintext
        .contests
        .iter()
        .map(|c| {
            (
                c.object_id.clone(),
                c.ballot_selections
                    .iter()
                    .filter(|s| s.vote == 1)
                    .map(|s| s.object_id.clone())
                    .collect(),
            )
        })
        .collect()
}

async fn open_election(
    app: &App,
    election_id: &str,
) -> ServiceResult<(ElectionRow, Arc<ElectionCrypto>)> {
    let election = app.election(election_id).await?;
    if election.state != ElectionState::Open {
        return Err(ServiceError::Conflict(
            "voting is not open for this election".into(),
        ));
    }
    let crypto = app.crypto(&election).await?;
    Ok((election, crypto))
}

/// The credential's hash and standing, if the credential is on the election's eligibility list.
pub async fn eligible_voter(
    app: &App,
    election_id: &str,
    credential: &str,
) -> ServiceResult<(String, VoterStatus)> {
    let hash = credential_hash(credential);
    match app.store.voter(election_id, &hash).await? {
        Some(status) => Ok((hash, status)),
        None => Err(ServiceError::Unauthorized(
            "the voting credential is not on the eligibility list".into(),
        )),
    }
}

/// A voter who may still make a ballot: the credential is unused.
async fn voter_who_has_not_cast(
    app: &App,
    election_id: &str,
    credential: &str,
) -> ServiceResult<(String, VoterStatus)> {
    let (hash, status) = eligible_voter(app, election_id, credential).await?;
    if status.cast_ballot.is_some() {
        return Err(ServiceError::Conflict(
            "this voting credential has already been used".into(),
        ));
    }
    Ok((hash, status))
}

/// An encryption device as the store keeps it.
pub fn device_row(device: &EncryptionDevice, registered_by: Option<String>) -> DeviceRow {
    DeviceRow {
        device_id: device.device_id,
        device_hash: device.hash().to_hex(),
        body: electionguard::json::to_reference_json(device),
        registered_by,
        last_code: None,
        ballots: 0,
    }
}

/// A voter's device that encrypts ballots itself (as electionguard-python's
/// `encrypt_ballot` does) is declared before its first ballot: its hash seeds its chain
/// of tracking codes, and it is published under `encryption_devices/`. True if new.
pub async fn register_device(
    app: &App,
    election_id: &str,
    credential: &str,
    device: EncryptionDevice,
) -> ServiceResult<bool> {
    open_election(app, election_id).await?;
    let (voter, _) = voter_who_has_not_cast(app, election_id, credential).await?;
    if device.location.is_empty() || device.location.len() > 64 {
        return Err(ServiceError::BadRequest(
            "location must be 1 to 64 characters".into(),
        ));
    }
    let row = device_row(&device, Some(voter));
    match app
        .store
        .register_device(election_id, &row, app.settings.max_devices_per_voter)
        .await
    {
        Ok(new) => Ok(new),
        Err(DeviceError::Store(e)) => Err(e.into()),
        Err(e) => Err(ServiceError::Conflict(e.to_string())),
    }
}

/// The server's own encryption device: it links every ballot it encrypted.
pub(crate) fn server_device_id(election: &ElectionRow) -> ServiceResult<u64> {
    let device: EncryptionDevice = electionguard::json::from_json(&election.device_json)
        .map_err(|e| anyhow::anyhow!("election {}: device: {e}", election.id))?;
    Ok(device.device_id)
}

/// Per contest, the hex digest of its ciphertexts: a repeat means a copied ballot.
fn fingerprints(ballot: &CiphertextBallot) -> Vec<String> {
    ballot
        .contest_fingerprints()
        .iter()
        .map(|f| crate::domain::hex(f))
        .collect()
}

/// Encrypts the voter's choices on the server. The ballot waits, with its nonces sealed,
/// until the voter casts it or challenges it.
pub async fn encrypt(
    app: &App,
    election_id: &str,
    credential: &str,
    choices: Choices,
) -> ServiceResult<EncryptedBallot> {
    let (election, crypto) = open_election(app, election_id).await?;
    let (voter_hash, status) = voter_who_has_not_cast(app, election_id, credential).await?;
    if status.pending >= MAX_PENDING_PER_VOTER {
        return Err(ServiceError::Conflict(format!(
            "this voting credential has {} ballots waiting to be cast or challenged; decide on one first",
            status.pending
        )));
    }
    let ballot_id = new_id("ballot");
    let plaintext = plaintext_from_choices(&crypto.manifest, &ballot_id, &choices)?;
    let worker = crypto.clone();
    let wide_key = app.wide_keys.slot(&election.id);
    let ballot = tokio::task::spawn_blocking(move || {
        let key = match &wide_key {
            Some(slot) => WideKeys::fill(slot, &worker).clone(),
            None => worker.key.clone(),
        };
        let encryptor = Encryptor::with_key(&worker.manifest, &worker.context, key);
        let seed = worker.context.manifest_hash.clone();
        encryptor.encrypt(&plaintext, &seed, &ElementModQ::random(), now_ms() / 1000)
    })
    .await
    .map_err(anyhow::Error::from)?
    .map_err(|e| ServiceError::BadRequest(e.to_string()))?;
    let row = BallotRow {
        election_id: election.id.clone(),
        ballot_id: ballot_id.clone(),
        state: BallotState::Pending,
        shuffle: shuffle_position(&election, &ballot_id),
        code: None,
        body: to_cbor(&ballot.submit(BallotBoxState::Unknown)),
        sealed_nonces: Some(sealing::seal(
            &app.server_key,
            &nonce_purpose(election_id, &ballot_id),
            &to_cbor(&ballot),
        )),
        voter_hash: Some(voter_hash),
        created_at: now_ms(),
    };
    app.store.insert_pending_ballot(&row).await?;
    Ok(EncryptedBallot {
        ballot_id,
        crypto_hash: ballot.crypto_hash.to_hex(),
    })
}

async fn pending_ballot(
    app: &App,
    election_id: &str,
    ballot_id: &str,
    credential: &str,
) -> ServiceResult<BallotRow> {
    let row = app
        .store
        .ballot(election_id, ballot_id)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("no ballot {ballot_id}")))?;
    if !row
        .voter_hash
        .as_deref()
        .is_some_and(|h| super::same_secret(h, &credential_hash(credential)))
    {
        return Err(ServiceError::Unauthorized(
            "this ballot belongs to another voting credential".into(),
        ));
    }
    if row.state != BallotState::Pending {
        return Err(ServiceError::Conflict(format!(
            "ballot {ballot_id} is already {}",
            row.state
        )));
    }
    Ok(row)
}

/// Ballots one credential may have encrypted on the server and not yet decided on.
const MAX_PENDING_PER_VOTER: u64 = 5;

/// Links a ballot the server encrypted into the server device's chain and stores it as
/// cast or spoiled, in one transaction.
async fn record(
    app: &App,
    (election, crypto): (&ElectionRow, &ElectionCrypto),
    row: BallotRow,
    ballot: CiphertextBallot,
    state: BallotBoxState,
) -> ServiceResult<String> {
    let prints = fingerprints(&ballot);
    link_pending(app, (election, crypto), row, ballot, state, &prints).await
}

/// A cast ballot's tally input (none for a spoiled one): its ciphertexts alone, made
/// before the cast transaction, which only multiplies it into its shard's product.
fn tally_input(
    crypto: &ElectionCrypto,
    ballot: &CiphertextBallot,
    state: BallotState,
) -> ServiceResult<Option<Vec<u8>>> {
    if state != BallotState::Cast {
        return Ok(None);
    }
    let input = crypto.tally_layout.input_of(ballot);
    input
        .map(Some)
        .map_err(|e| ServiceError::BadRequest(e.to_string()))
}

/// How a tally input (of one ballot, or the product of many) joins a shard's running product.
pub(crate) fn folding<'a>(
    layout: &'a TallyLayout,
    input: &'a [u8],
) -> impl Fn(Option<&[u8]>) -> Result<Vec<u8>, String> + Send + Sync + 'a {
    move |stored| {
        let parts: Vec<&[u8]> = stored.into_iter().chain([input]).collect();
        layout.product(&parts).map_err(|e| e.to_string())
    }
}

/// Links a pending ballot into the server device's chain, refusing the given fingerprints
/// if any is in the ballot box already. The election bench seeds its ballot box through
/// this with none: it stores copies of a pool of ballots under new ids on purpose.
pub(crate) async fn link_pending(
    app: &App,
    (election, crypto): (&ElectionRow, &ElectionCrypto),
    row: BallotRow,
    ballot: CiphertextBallot,
    state: BallotBoxState,
    prints: &[String],
) -> ServiceResult<String> {
    let input = tally_input(crypto, &ballot, row.state)?;
    let fold = input.as_deref().map(|i| folding(&crypto.tally_layout, i));
    let submitted = ballot.submit(state);
    let chain = move |previous: &str| {
        let mut linked = submitted.clone();
        linked.code_seed = ElementModQ::from_hex(previous).expect("stored codes are valid");
        linked.timestamp = now_ms() / 1000;
        linked.code = CiphertextBallot::compute_code(
            &linked.code_seed,
            linked.timestamp,
            &linked.crypto_hash,
        );
        (linked.code.to_hex(), to_cbor(&linked))
    };
    let link = ChainLink::Server {
        device_id: server_device_id(election)?,
        chain: &chain,
    };
    let rules = cast_rules(app, prints, &row, fold.as_ref().map(|f| f as _));
    let code = app.store.record_ballot(&row, link, &rules).await?;
    app.metrics.ballot_accepted(row.state.as_str());
    Ok(code)
}

fn cast_rules<'a>(
    app: &App,
    fingerprints: &'a [String],
    row: &BallotRow,
    fold: Option<TallyFolder<'a>>,
) -> CastRules<'a> {
    CastRules {
        fingerprints,
        max_challenges: app.settings.max_challenges_per_voter,
        tally: fold.map(|fold| TallyContribution {
            shard: tally_shard(row.shuffle),
            ballots: 1,
            fold,
        }),
    }
}

/// Casts a pending ballot: uses up the voter's credential, atomically.
pub async fn cast(
    app: &App,
    election_id: &str,
    ballot_id: &str,
    credential: &str,
) -> ServiceResult<Receipt> {
    let (election, crypto) = open_election(app, election_id).await?;
    let row = pending_ballot(app, election_id, ballot_id, credential).await?;
    let ballot: CiphertextBallot = from_cbor(&row.body)?;
    let row = BallotRow {
        state: BallotState::Cast,
        ..row
    };
    let code = record(app, (&election, &crypto), row, ballot, BallotBoxState::Cast).await?;
    Ok(Receipt {
        ballot_id: ballot_id.to_string(),
        state: BallotState::Cast,
        tracking_code: code,
        revealed: None,
    })
}

/// The Benaloh challenge: the pending ballot is opened with its nonces, the opening is
/// proved to re-encrypt to exactly that ballot, and the ballot is kept as spoiled. The
/// credential stays unused, so the voter can start again.
pub async fn challenge(
    app: &App,
    election_id: &str,
    ballot_id: &str,
    credential: &str,
) -> ServiceResult<Receipt> {
    let (election, crypto) = open_election(app, election_id).await?;
    let row = pending_ballot(app, election_id, ballot_id, credential).await?;
    let sealed = row
        .sealed_nonces
        .clone()
        .ok_or_else(|| anyhow::anyhow!("pending ballot {ballot_id} has no nonces"))?;
    let (key, purpose, worker) = (
        app.server_key.clone(),
        nonce_purpose(election_id, ballot_id),
        crypto.clone(),
    );
    let (ballot, revealed) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let with_nonces: CiphertextBallot = from_cbor(&sealing::open(&key, &purpose, &sealed)?)?;
        let opened = open_challenged_ballot(&with_nonces, &worker.manifest, &worker.context)?;
        verify_challenge(&with_nonces, &opened, &worker.manifest, &worker.context)?;
        Ok((with_nonces, choices_of(&opened)))
    })
    .await
    .map_err(anyhow::Error::from)??;
    let row = BallotRow {
        state: BallotState::Spoiled,
        ..row
    };
    let code = record(
        app,
        (&election, &crypto),
        row,
        ballot,
        BallotBoxState::Spoiled,
    )
    .await?;
    Ok(Receipt {
        ballot_id: ballot_id.to_string(),
        state: BallotState::Spoiled,
        tracking_code: code,
        revealed: Some(revealed),
    })
}

/// A ballot the voter's own device encrypted and linked into that device's chain of
/// tracking codes: checked completely before it is stored, and stored as it came, so the
/// code the device showed is the voter's code.
pub async fn submit(
    app: &App,
    election_id: &str,
    credential: &str,
    ballot: CiphertextBallot,
    spoil: bool,
) -> ServiceResult<Receipt> {
    let (election, crypto) = open_election(app, election_id).await?;
    check_id("object_id", &ballot.object_id).map_err(ServiceError::BadRequest)?;
    let (voter_hash, status) = eligible_voter(app, election_id, credential).await?;
    if let Some(receipt) = replayed(app, election_id, &voter_hash, &ballot).await? {
        return Ok(receipt);
    }
    if status.cast_ballot.is_some() {
        return Err(ServiceError::Conflict(
            "this voting credential has already been used".into(),
        ));
    }
    if let Some(field) = ballot.carried_nonce() {
        app.metrics.ballot_rejected("malformed");
        return Err(ServiceError::BadRequest(format!(
            "{field}: a submitted ballot must not carry its nonces (they open the vote); send the ballot without them"
        )));
    }
    let box_state = if spoil {
        BallotBoxState::Spoiled
    } else {
        BallotBoxState::Cast
    };
    let (checked, worker) = (ballot.clone(), crypto.clone());
    tokio::task::spawn_blocking(move || {
        electionguard::verify::verify_submission(
            &checked,
            &worker.manifest,
            &worker.context,
            &worker.key,
        )
    })
    .await
    .map_err(anyhow::Error::from)?
    .map_err(|e| {
        app.metrics.ballot_rejected("invalid");
        ServiceError::BadRequest(e)
    })?;
    let state = if spoil {
        BallotState::Spoiled
    } else {
        BallotState::Cast
    };
    let submitted = ballot.submit(box_state);
    let (seed, code) = (submitted.code_seed.to_hex(), submitted.code.to_hex());
    let row = BallotRow {
        election_id: election.id.clone(),
        ballot_id: submitted.object_id.clone(),
        state,
        shuffle: shuffle_position(&election, &submitted.object_id),
        code: None,
        body: Vec::new(),
        sealed_nonces: None,
        voter_hash: Some(voter_hash),
        created_at: now_ms(),
    };
    let prints = fingerprints(&submitted);
    let input = tally_input(&crypto, &submitted, state)?;
    let fold = input.as_deref().map(|i| folding(&crypto.tally_layout, i));
    let body = to_cbor(&submitted);
    let link = ChainLink::Device {
        seed: &seed,
        code: &code,
        body: &body,
    };
    let rules = cast_rules(app, &prints, &row, fold.as_ref().map(|f| f as _));
    let code = app
        .store
        .record_ballot(&row, link, &rules)
        .await
        .inspect_err(|_| app.metrics.ballot_rejected("conflict"))?;
    app.metrics.ballot_accepted(state.as_str());
    Ok(Receipt {
        ballot_id: row.ballot_id,
        state,
        tracking_code: code,
        revealed: None,
    })
}

/// The receipt of a submission this voter already made, when a client sends the same
/// ballot again (its answer was lost): same id, same credential, same tracking code.
async fn replayed(
    app: &App,
    election_id: &str,
    voter_hash: &str,
    ballot: &CiphertextBallot,
) -> ServiceResult<Option<Receipt>> {
    let Some(row) = app.store.ballot(election_id, &ballot.object_id).await? else {
        return Ok(None);
    };
    let same_voter = row
        .voter_hash
        .as_deref()
        .is_some_and(|h| super::same_secret(h, voter_hash));
    let code = ballot.code.to_hex();
    if !same_voter || row.code.as_deref() != Some(code.as_str()) {
        return Ok(None);
    }
    Ok(Some(Receipt {
        ballot_id: row.ballot_id,
        state: row.state,
        tracking_code: code,
        revealed: None,
    }))
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BallotStatus {
    pub ballot_id: String,
    pub state: BallotState,
    pub tracking_code: String,
    pub crypto_hash: String,
}

/// "Verify my vote": what the ballot box holds under a tracking code.
pub async fn lookup(app: &App, election_id: &str, code: &str) -> ServiceResult<BallotStatus> {
    app.election(election_id).await?;
    let row = app
        .store
        .ballot_by_code(election_id, &code.to_uppercase())
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("no ballot with tracking code {code}")))?;
    let ballot: CiphertextBallot = from_cbor(&row.body)?;
    Ok(BallotStatus {
        ballot_id: row.ballot_id,
        state: row.state,
        tracking_code: code.to_uppercase(),
        crypto_hash: ballot.crypto_hash.to_hex(),
    })
}
