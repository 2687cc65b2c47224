//! The path parameters of the API's routes, as typed extractors that also describe
//! themselves in the contract. Ids are at most 64 characters wherever they are made.

use serde::Deserialize;
use utoipa::IntoParams;

/// An election's id, as its creation answered it.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ElectionId {
    /// The election's id.
    #[param(max_length = 64)]
    pub id: String,
}

/// A guardian in an election.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct GuardianPath {
    /// The election's id.
    #[param(max_length = 64)]
    pub id: String,
    /// The guardian's id.
    #[param(max_length = 64)]
    pub guardian: String,
}

/// A ballot in an election.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct BallotPath {
    /// The election's id.
    #[param(max_length = 64)]
    pub id: String,
    /// The ballot's id, as its encryption answered it.
    #[param(max_length = 64)]
    pub ballot: String,
}

/// A tracking code in an election.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TrackingPath {
    /// The election's id.
    #[param(max_length = 64)]
    pub id: String,
    /// The ballot's tracking code: 64 hex digits, in any case, grouped or not.
    #[param(max_length = 128)]
    pub code: String,
}

/// A job.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct JobId {
    /// The job's id, as its start answered it.
    #[param(max_length = 64)]
    pub job: String,
}

/// A guardian's part of a decryption job.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct JobGuardianPath {
    /// The decryption job's id.
    #[param(max_length = 64)]
    pub job: String,
    /// The guardian's id.
    #[param(max_length = 64)]
    pub guardian: String,
}

/// One chunk of a job.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ChunkPath {
    /// The job's id.
    #[param(max_length = 64)]
    pub job: String,
    /// The chunk's index in the job.
    pub index: u64,
}
