//! The election API's operations as methods, each sending and reading the very types the
//! server's routes take and answer (so a change on one side fails to compile on the
//! other). A refusal is a [`super::Refused`] with its status.

use anyhow::{Context, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Client;
use crate::api::ballots::EncryptRequest;
use crate::api::elections::{ElectionStateChange, Results, VoterCredentials, VoterRequest};
use crate::api::jobs::{JobStateChange, StartJob, StartedJob};
use crate::domain::JobKind;
use crate::service::ballots::{Choices, EncryptedBallot, Receipt};
use crate::service::elections::{CreatedElection, NewElection};
use crate::service::jobs::JobStatus;

/// A body with no fields, for the actions that take none.
#[derive(Serialize)]
struct Empty {}

impl Client {
    async fn send_typed<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        token: &str,
        body: &B,
    ) -> Result<T> {
        let request = self.http.post(self.url(path)).json(body);
        let response = self.send(request, Some(token), path, false).await?;
        response
            .json()
            .await
            .with_context(|| format!("{path}: the answer is not what the server's contract says"))
    }

    async fn read_typed<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let response = self
            .send(self.http.get(self.url(path)), None, path, true)
            .await?;
        response
            .json()
            .await
            .with_context(|| format!("{path}: the answer is not what the server's contract says"))
    }

    /// Creates an election (the server runs or opens its key ceremony). Administrator.
    pub async fn create_election(
        &self,
        admin: &str,
        election: &NewElection,
    ) -> Result<CreatedElection> {
        self.send_typed("/api/elections", admin, election).await
    }

    /// Issues `count` anonymous voting credentials. Administrator.
    pub async fn issue_credentials(
        &self,
        admin: &str,
        election: &str,
        count: u32,
    ) -> Result<VoterCredentials> {
        let request = VoterRequest {
            count: Some(count),
            voters: None,
        };
        let path = format!("/api/elections/{election}/voters");
        self.send_typed(&path, admin, &request).await
    }

    /// Encrypts a ballot on the server; it stays pending until cast or challenged. Voter.
    pub async fn encrypt_ballot(
        &self,
        credential: &str,
        election: &str,
        choices: &Choices,
    ) -> Result<EncryptedBallot> {
        let request = EncryptRequest {
            choices: choices.clone(),
        };
        let path = format!("/api/elections/{election}/ballots/encrypt");
        self.send_typed(&path, credential, &request).await
    }

    /// Casts a pending ballot. Voter.
    pub async fn cast_ballot(
        &self,
        credential: &str,
        election: &str,
        ballot: &str,
    ) -> Result<Receipt> {
        let path = format!("/api/elections/{election}/ballots/{ballot}/cast");
        self.send_typed(&path, credential, &Empty {}).await
    }

    /// Challenges a pending ballot: the answer reveals the choices it was opened to. Voter.
    pub async fn challenge_ballot(
        &self,
        credential: &str,
        election: &str,
        ballot: &str,
    ) -> Result<Receipt> {
        let path = format!("/api/elections/{election}/ballots/{ballot}/challenge");
        self.send_typed(&path, credential, &Empty {}).await
    }

    /// Closes voting. Administrator.
    pub async fn close_voting(&self, admin: &str, election: &str) -> Result<ElectionStateChange> {
        let path = format!("/api/elections/{election}/close");
        self.send_typed(&path, admin, &Empty {}).await
    }

    /// Starts a job (answered 202 at once). Administrator.
    pub async fn start_job(
        &self,
        admin: &str,
        election: &str,
        kind: JobKind,
    ) -> Result<StartedJob> {
        let path = format!("/api/elections/{election}/jobs");
        self.send_typed(&path, admin, &StartJob { kind }).await
    }

    /// Stops a running job. Administrator.
    pub async fn stop_job(&self, admin: &str, job: &str) -> Result<JobStateChange> {
        let path = format!("/api/jobs/{job}/stop");
        self.send_typed(&path, admin, &Empty {}).await
    }

    /// Resumes a stopped or failed job. Administrator.
    pub async fn resume_job(&self, admin: &str, job: &str) -> Result<JobStateChange> {
        let path = format!("/api/jobs/{job}/resume");
        self.send_typed(&path, admin, &Empty {}).await
    }

    /// A job's progress.
    pub async fn job(&self, job: &str) -> Result<JobStatus> {
        self.read_typed(&format!("/api/jobs/{job}")).await
    }

    /// The published results.
    pub async fn results(&self, election: &str) -> Result<Results> {
        self.read_typed(&format!("/api/elections/{election}/results"))
            .await
    }
}
