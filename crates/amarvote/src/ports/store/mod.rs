//! The store port: elections, guardians, voters, ballots, jobs and their chunks.
//!
//! Every write that the exactly-once guarantees rest on is a single conditional
//! statement or one transaction, so several API instances and workers may share a store.

mod artifacts;
mod ballot_box;
mod ceremony;
mod elections;
mod error;
mod jobs;

pub use artifacts::ArtifactStore;
pub use ballot_box::{
    BallotBox, CastError, CastRules, ChainLink, CodeChainer, DeviceError, DeviceRow, ImportError,
    TallyContribution, TallyFolder, TallyShardRow, VoterStatus,
};
pub use ceremony::CeremonyStore;
pub use elections::ElectionStore;
pub use error::StoreError;
pub use jobs::JobStore;

/// The whole store, one trait per aggregate; an adapter implements each.
pub trait Store: ElectionStore + CeremonyStore + BallotBox + ArtifactStore + JobStore {}

impl<T: ElectionStore + CeremonyStore + BallotBox + ArtifactStore + JobStore> Store for T {}
