//! The amarvote service crate: the election service and the referendum pipeline over
//! the `electionguard` library.
//!
//! The layout follows the architecture: [`domain`] types; [`ports`] (traits for the
//! store and the work queue) and their [`adapters`]; the use cases in [`service`]; the
//! roles — [`api`] (HTTP) and [`workers`] (chunks) — and [`referendum`]. `main.rs` only
//! parses flags and dispatches to [`commands`].

pub mod adapters;
pub mod api;
pub mod commands;
pub mod domain;
pub mod election;
mod memory;
pub mod metrics;
pub mod ports;
pub mod record_io;
pub mod referendum;
pub mod sealing;
pub mod service;
pub mod workers;
