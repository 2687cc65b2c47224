//! One module per subcommand.

pub mod bench;
pub mod demo;
pub mod demo_server;
pub mod serve;
pub mod verify;
