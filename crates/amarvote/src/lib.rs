//! The amarvote service crate: the election service and the referendum pipeline over
//! the `electionguard` library.
//!
//! The layout follows the architecture, bottom up: [`domain`] types; [`ports`] (traits for
//! the stores and queues of both systems) and their [`adapters`]; the use cases, the
//! election's in [`service`] and the referendum's in [`referendum`]; the roles, [`api`]
//! (the one HTTP edge) and [`workers`] (chunks); and [`commands`], where processes are
//! assembled and `main.rs` dispatches. Imports point down only (`tests/architecture.rs`).

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
