//! One module per subcommand.

pub mod bench;
pub mod bench_election;
pub mod client;
pub mod demo;
pub mod demo_server;
pub mod guardian;
pub mod lifecycle;
pub mod record;
pub mod referendum;
pub mod serve;
pub mod simulation;
pub mod startup;
pub mod tls;
pub mod verify;
