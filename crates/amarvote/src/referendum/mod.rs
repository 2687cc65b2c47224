//! The referendum pipeline: national votes where each law is answered `oui`
//! or `non`, at a scale (millions of voters) where ElectionGuard's per-ballot
//! encryption is not needed and a simpler design suffices.
//!
//! Eligibility is proven with a NAS and a one-time mailed code per law. Those
//! are reduced to keyed [`voter_hash::VoterHash`]es at the edge; the
//! [`hashgen`] step turns the mailing list into shard files of hashes, and the
//! [`registry`] records, atomically, which eligible hashes have voted.

pub mod hashgen;
pub mod registry;
pub mod voter_hash;
