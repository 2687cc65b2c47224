//! ElectionGuard 1.0, wire-compatible with electionguard-python 1.4.
//!
//! A pure library: no I/O, no async, no database. Modules are named after the
//! specification's steps, so a reader holding the spec finds each one by its name:
//! [`group`], [`hash`], [`elgamal`], [`proof`], [`manifest`], [`context`], [`ballot`],
//! [`encrypt`], [`key_ceremony`], [`tally`], [`decrypt`], [`verify`] and [`record`]
//! (the reference JSON).

mod bignum;
pub mod fixed_base;
pub mod group;
pub mod dlog;
pub mod elgamal;
pub mod hash;
pub mod proof;
pub mod manifest;
pub mod context;
pub mod json;
pub mod ballot;
pub mod encrypt;
pub mod challenge;
pub mod key_ceremony;
pub mod decrypt;
pub mod tally;
pub mod record;
pub mod verify;
mod multiexp;
pub mod batch;
