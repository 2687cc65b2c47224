//! The key ceremony run by the guardians themselves (`"key_ceremony": "guardians"`): each
//! guardian generates its keys on its own machine and announces its public record
//! (public key, coefficient commitments, Schnorr proofs); once every guardian has
//! announced, each sends backups encrypted to every other guardian; each recipient checks
//! the backups it received against the sender's commitments and reports its verdicts.
//! When every backup is verified the server publishes the joint key and opens voting.
//! A recipient that rejects a backup challenges its sender, who answers by publishing
//! that coordinate in clear; the server checks the answer against the sender's announced
//! commitments, and if it holds the backup counts as verified and the recipient takes the
//! coordinate from the answer (ElectionGuard's key-ceremony challenge).
//! The server checks every proof and every backup's addressing, but never holds a secret:
//! a guardian's secret reaches it only with the guardian's consent to decrypt.

use electionguard::json::{from_json, to_reference_json};
use electionguard::key_ceremony::{
    verify_coordinate, ElectionPartialKeyBackup, ElectionPartialKeyChallenge, ElectionPublicKey,
    GuardianRecord,
};
use electionguard::manifest::Manifest;
use serde::{Deserialize, Serialize};

use super::guardians::{authorize_guardian, GuardianSecret};
use super::{App, ServiceError, ServiceResult};
use crate::domain::{ElectionRow, ElectionState, GuardianRow, KeyBackupRow, KeyChallengeRow};

/// Where the ceremony stands, as anyone may see it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CeremonyStatus {
    pub election_id: String,
    pub state: ElectionState,
    pub guardians: Vec<GuardianProgress>,
    /// The announced public records (ElectionGuard 1.0 `GuardianRecord`), in sequence order.
    #[schema(value_type = Vec<Object>)]
    pub public_keys: Vec<GuardianRecord>,
    /// (sender, recipient) of each backup the recipient rejected and the sender has not
    /// answered: the sender's next step.
    #[schema(value_type = Vec<Vec<String>>)]
    pub rejected_backups: Vec<(String, String)>,
    /// (sender, recipient) of each rejected backup whose sender's answer verified.
    #[schema(value_type = Vec<Vec<String>>)]
    pub answered_challenges: Vec<(String, String)>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GuardianProgress {
    pub guardian_id: String,
    pub sequence_order: u64,
    pub announced: bool,
    pub backups_sent: bool,
    pub backups_verified: bool,
}

/// A recipient's verdict on the backup one sender sent it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupVerdict {
    pub sender: String,
    pub verified: bool,
}

fn announced(guardian: &GuardianRow) -> Option<GuardianRecord> {
    (!guardian.public_json.is_empty())
        .then(|| from_json(&guardian.public_json).ok())
        .flatten()
}

async fn in_ceremony(app: &App, election_id: &str) -> ServiceResult<ElectionRow> {
    let election = app.election(election_id).await?;
    if election.state != ElectionState::KeyCeremony {
        return Err(ServiceError::Conflict(format!(
            "the key ceremony is over (the election is {})",
            election.state
        )));
    }
    Ok(election)
}

pub async fn status(app: &App, election_id: &str) -> ServiceResult<CeremonyStatus> {
    let election = app.election(election_id).await?;
    let guardians = app.store.guardians(election_id).await?;
    let backups = app.store.key_backups(election_id, None).await?;
    let challenges = app.store.key_backup_challenges(election_id, None).await?;
    let progress = guardians
        .iter()
        .map(|g| GuardianProgress {
            guardian_id: g.guardian_id.clone(),
            sequence_order: g.sequence_order,
            announced: !g.public_json.is_empty(),
            backups_sent: backups.iter().any(|b| b.sender == g.guardian_id),
            backups_verified: backups
                .iter()
                .filter(|b| b.recipient == g.guardian_id && b.verified.is_some())
                .count()
                == guardians.len(),
        })
        .collect();
    Ok(CeremonyStatus {
        election_id: election.id.into(),
        state: election.state,
        guardians: progress,
        public_keys: guardians.iter().filter_map(announced).collect(),
        rejected_backups: backups
            .iter()
            .filter(|b| b.verified == Some(false))
            .map(|b| (b.sender.clone(), b.recipient.clone()))
            .collect(),
        answered_challenges: challenges
            .into_iter()
            .map(|c| (c.sender, c.recipient))
            .collect(),
    })
}

/// A guardian announces its public record; every Schnorr proof is checked.
pub async fn announce(
    app: &App,
    election_id: &str,
    guardian_id: &str,
    token: &str,
    record: GuardianRecord,
) -> ServiceResult<()> {
    let guardian = authorize_guardian(app, election_id, guardian_id, token).await?;
    let election = in_ceremony(app, election_id).await?;
    if record.guardian_id != guardian_id || record.sequence_order != guardian.sequence_order {
        return Err(ServiceError::BadRequest(format!(
            "guardian_id and sequence_order must be {guardian_id} and {}",
            guardian.sequence_order
        )));
    }
    ElectionPublicKey::from(&record)
        .validate(election.quorum)
        .map_err(|e| ServiceError::BadRequest(format!("election_proofs: {e}")))?;
    let json = to_reference_json(&record);
    if !app
        .store
        .announce_guardian(election_id, guardian_id, &json)
        .await?
        && guardian.public_json != json
    {
        return Err(ServiceError::Conflict(format!(
            "{guardian_id} has already announced a different key"
        )));
    }
    Ok(())
}

/// A guardian sends its backups: one for every guardian, itself included, each
/// encrypted to the recipient's announced key (the server cannot read them).
pub async fn send_backups(
    app: &App,
    election_id: &str,
    guardian_id: &str,
    token: &str,
    backups: Vec<ElectionPartialKeyBackup>,
) -> ServiceResult<()> {
    authorize_guardian(app, election_id, guardian_id, token).await?;
    in_ceremony(app, election_id).await?;
    let guardians = app.store.guardians(election_id).await?;
    let waiting = guardians
        .iter()
        .filter(|g| g.public_json.is_empty())
        .count();
    if waiting > 0 {
        return Err(ServiceError::Conflict(format!(
            "{waiting} guardians have not announced their keys yet"
        )));
    }
    let rows = backup_rows(guardian_id, &guardians, &backups)?;
    if !app.store.insert_key_backups(election_id, &rows).await? {
        let sent = app.store.key_backups(election_id, None).await?;
        let same = rows.iter().all(|row| {
            sent.iter().any(|s| {
                s.sender == row.sender && s.recipient == row.recipient && s.body == row.body
            })
        });
        if !same {
            return Err(ServiceError::Conflict(format!(
                "{guardian_id} has already sent different backups"
            )));
        }
    }
    Ok(())
}

/// Checks that the backups come from `sender` and reach every guardian exactly once.
fn backup_rows(
    sender: &str,
    guardians: &[GuardianRow],
    backups: &[ElectionPartialKeyBackup],
) -> ServiceResult<Vec<KeyBackupRow>> {
    let bad = |m: String| Err(ServiceError::BadRequest(m));
    if backups.len() != guardians.len() {
        return bad(format!(
            "one backup per guardian is needed: {} guardians, {} backups",
            guardians.len(),
            backups.len()
        ));
    }
    let mut rows = Vec::with_capacity(backups.len());
    for (i, backup) in backups.iter().enumerate() {
        let recipient = guardians
            .iter()
            .find(|g| g.guardian_id == backup.designated_id);
        match recipient {
            _ if backup.owner_id != sender => {
                return bad(format!("[{i}].owner_id: must be {sender}"))
            }
            None => return bad(format!("[{i}].designated_id: no such guardian")),
            Some(g) if g.sequence_order != backup.designated_sequence_order => {
                return bad(format!(
                    "[{i}].designated_sequence_order: must be {}",
                    g.sequence_order
                ))
            }
            Some(_)
                if rows
                    .iter()
                    .any(|r: &KeyBackupRow| r.recipient == backup.designated_id) =>
            {
                return bad(format!(
                    "[{i}].designated_id: a second backup for the same guardian"
                ))
            }
            Some(_) => rows.push(KeyBackupRow {
                sender: sender.to_string(),
                recipient: backup.designated_id.clone(),
                body: to_reference_json(backup),
                verified: None,
            }),
        }
    }
    Ok(rows)
}

/// The backups sent to one guardian, for it to decrypt and check.
pub async fn backups_for(
    app: &App,
    election_id: &str,
    guardian_id: &str,
    token: &str,
) -> ServiceResult<Vec<ElectionPartialKeyBackup>> {
    authorize_guardian(app, election_id, guardian_id, token).await?;
    let rows = app
        .store
        .key_backups(election_id, Some(guardian_id))
        .await?;
    parse_bodies(rows.iter().map(|row| row.body.as_str()))
}

/// Stored reference JSON, read back.
fn parse_bodies<'a, T: serde::de::DeserializeOwned>(
    bodies: impl Iterator<Item = &'a str>,
) -> ServiceResult<Vec<T>> {
    bodies
        .map(|body| from_json(body).map_err(|e| ServiceError::Internal(e.into())))
        .collect()
}

/// A recipient reports its verdicts; the last verified backup completes the ceremony. A
/// backup settled by an answered challenge keeps its verdict (the store sees to that, so a
/// verdict racing the answer cannot undo it).
pub async fn report_verdicts(
    app: &App,
    election_id: &str,
    guardian_id: &str,
    token: &str,
    verdicts: Vec<BackupVerdict>,
) -> ServiceResult<()> {
    authorize_guardian(app, election_id, guardian_id, token).await?;
    let election = in_ceremony(app, election_id).await?;
    let received = app
        .store
        .key_backups(election_id, Some(guardian_id))
        .await?;
    for (i, verdict) in verdicts.iter().enumerate() {
        if !received.iter().any(|b| b.sender == verdict.sender) {
            return Err(ServiceError::BadRequest(format!(
                "[{i}].sender: no backup from {} to {guardian_id}",
                verdict.sender
            )));
        }
        app.store
            .set_key_backup_verified(election_id, &verdict.sender, guardian_id, verdict.verified)
            .await?;
    }
    finish_if_complete(app, &election).await
}

/// A sender answers the rejection of its backup to `designated_id` with the coordinate in
/// clear. The answer must be for a rejected backup of this sender, carry the commitments
/// the sender announced, and match them; then the backup counts as verified.
pub async fn answer_challenge(
    app: &App,
    election_id: &str,
    guardian_id: &str,
    token: &str,
    answer: ElectionPartialKeyChallenge,
) -> ServiceResult<()> {
    authorize_guardian(app, election_id, guardian_id, token).await?;
    let election = in_ceremony(app, election_id).await?;
    let guardians = app.store.guardians(election_id).await?;
    check_answer(guardian_id, &guardians, &answer)?;
    let row = KeyChallengeRow {
        sender: guardian_id.to_string(),
        recipient: answer.designated_id.clone(),
        body: to_reference_json(&answer),
    };
    let answered = app
        .store
        .key_backup_challenges(election_id, Some(&row.recipient))
        .await?;
    match answered.iter().find(|c| c.sender == row.sender) {
        Some(earlier) if earlier.body != row.body => {
            return Err(ServiceError::Conflict(format!(
                "{guardian_id} has already answered {}'s challenge",
                row.recipient
            )))
        }
        // A repeated answer is stored again, harmlessly, and completes what the first
        // may have left undone.
        Some(_) => {}
        None => check_rejected(app, election_id, &row).await?,
    }
    app.store
        .answer_key_backup_challenge(election_id, &row)
        .await?;
    finish_if_complete(app, &election).await
}

/// The backup the answer is for exists and was rejected.
async fn check_rejected(
    app: &App,
    election_id: &str,
    answer: &KeyChallengeRow,
) -> ServiceResult<()> {
    let backups = app
        .store
        .key_backups(election_id, Some(&answer.recipient))
        .await?;
    match backups.iter().find(|b| b.sender == answer.sender) {
        None => Err(ServiceError::BadRequest(format!(
            "designated_id: no backup from {} to {}",
            answer.sender, answer.recipient
        ))),
        Some(b) if b.verified != Some(false) => Err(ServiceError::Conflict(format!(
            "{} has not rejected the backup from {}: there is nothing to answer",
            answer.recipient, answer.sender
        ))),
        Some(_) => Ok(()),
    }
}

/// The answer's addressing and commitments are the announced ones, and its coordinate
/// matches them.
fn check_answer(
    sender: &str,
    guardians: &[GuardianRow],
    answer: &ElectionPartialKeyChallenge,
) -> ServiceResult<()> {
    let bad = |m: String| Err(ServiceError::BadRequest(m));
    if answer.owner_id != sender {
        return bad(format!("owner_id: must be {sender}"));
    }
    let Some(recipient) = guardians
        .iter()
        .find(|g| g.guardian_id == answer.designated_id)
    else {
        return bad("designated_id: no such guardian".into());
    };
    if recipient.sequence_order != answer.designated_sequence_order {
        return bad(format!(
            "designated_sequence_order: must be {}",
            recipient.sequence_order
        ));
    }
    let announced_record = guardians
        .iter()
        .find(|g| g.guardian_id == sender)
        .and_then(announced);
    if announced_record.is_none_or(|r| {
        r.election_commitments != answer.coefficient_commitments
            || r.election_proofs != answer.coefficient_proofs
    }) {
        return bad(format!(
            "coefficient_commitments: not the commitments and proofs {sender} announced"
        ));
    }
    if !answer.verify() {
        return bad(format!(
            "value: the coordinate does not match {sender}'s commitments, so its backup to {} was faulty",
            answer.designated_id
        ));
    }
    Ok(())
}

/// The coordinates senders published for this guardian's rejected backups.
pub async fn challenges_for(
    app: &App,
    election_id: &str,
    guardian_id: &str,
    token: &str,
) -> ServiceResult<Vec<ElectionPartialKeyChallenge>> {
    authorize_guardian(app, election_id, guardian_id, token).await?;
    let rows = app
        .store
        .key_backup_challenges(election_id, Some(guardian_id))
        .await?;
    parse_bodies(rows.iter().map(|row| row.body.as_str()))
}

/// Every guardian announced and every backup verified: publish the joint key, open voting.
async fn finish_if_complete(app: &App, election: &ElectionRow) -> ServiceResult<()> {
    let guardians = app.store.guardians(&election.id).await?;
    let backups = app.store.key_backups(&election.id, None).await?;
    let everyone = guardians.len() * guardians.len();
    if backups.len() < everyone || backups.iter().any(|b| b.verified != Some(true)) {
        return Ok(());
    }
    let public_keys: Vec<ElectionPublicKey> = guardians
        .iter()
        .filter_map(announced)
        .map(|r| ElectionPublicKey::from(&r))
        .collect();
    let manifest: Manifest =
        from_json(&election.manifest_json).map_err(|e| ServiceError::Internal(e.into()))?;
    let context = crate::election::context(&manifest, &public_keys, election.quorum);
    app.store
        .open_after_ceremony(&election.id, &to_reference_json(&context))
        .await?;
    Ok(())
}

/// A guardian of a guardian-run ceremony consents to decrypt by handing its key share
/// over for the workers. It must be the key the guardian announced, with a verified
/// coordinate from every other guardian (what compensating for a missing one needs).
pub fn check_key_share(
    guardian: &GuardianRow,
    guardians: &[GuardianRow],
    secret: &GuardianSecret,
) -> ServiceResult<()> {
    let bad = |m: &str| Err(ServiceError::BadRequest(m.to_string()));
    let share = GuardianRecord::from(&secret.key_pair.share());
    if to_reference_json(&share) != guardian.public_json {
        return bad("key_share: it is not the key this guardian announced");
    }
    for other in guardians {
        let Some(record) = announced(other) else {
            return bad("key_share: the key ceremony is not complete");
        };
        let coordinate = secret
            .received
            .iter()
            .find(|(sender, _)| *sender == other.guardian_id);
        let valid = coordinate.is_some_and(|(_, c)| {
            verify_coordinate(
                c.expose(),
                guardian.sequence_order,
                &record.election_commitments,
            )
        });
        if !valid {
            return bad("key_share: a received coordinate is missing or does not match its sender's commitments");
        }
    }
    Ok(())
}
