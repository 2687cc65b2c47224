//! ElectionGuard 1.0, wire-compatible with electionguard-python 1.4.
//!
//! A pure library: no I/O, no async, no database. Modules are named after the
//! specification's steps, so a reader holding the spec finds each one by its name:
//! [`group`], [`hash`], [`elgamal`], [`proof`], [`manifest`], [`context`], [`ballot`],
//! [`encrypt`], [`key_ceremony`], [`tally`], [`decrypt`], [`verify`] and [`record`]
//! (the reference JSON).

pub mod ballot;
pub mod batch;
mod bignum;
pub mod challenge;
pub mod context;
pub mod decrypt;
pub mod dlog;
pub mod elgamal;
pub mod encrypt;
pub mod fixed_base;
pub mod group;
pub mod hash;
pub mod json;
pub mod key_ceremony;
pub mod manifest;
mod multiexp;
pub mod proof;
pub mod record;
pub mod tally;
pub mod verify;
