//! The amarvote service crate: commands over the `electionguard` library.
//!
//! `main.rs` only parses flags and dispatches; each subcommand lives in [`commands`].

pub mod commands;
pub mod election;
pub mod record_io;
