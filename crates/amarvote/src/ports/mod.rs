//! The service's ports: what the roles need from storage and messaging, as traits.
//! The adapters (`crate::adapters`) implement them for each deployment scale.

pub mod queue;
pub mod store;
pub mod vote_queue;
pub mod vote_store;
pub mod voter_registry;

pub use queue::{Delivery, WorkQueue};
pub use store::{
    CastError, CastRules, ChainLink, DeviceError, DeviceRow, ImportError, Store, StoreError,
    TallyContribution, TallyFolder, TallyShardRow, VoterStatus,
};
