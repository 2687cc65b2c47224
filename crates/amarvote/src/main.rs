//! `amarvote`: verifiable elections (ElectionGuard 1.0) from one binary.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use amarvote::commands;

#[derive(Parser)]
#[command(name = "amarvote", version, about = "Verifiable, distributed election backend (ElectionGuard 1.0)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a whole election in memory: key ceremony, encryption, tally, decryption, verification.
    Demo(commands::demo::DemoArgs),
    /// Measure the speed of the cryptography core on this machine.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Verify a published election record in the reference export layout.
    Verify {
        /// The record's directory.
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Encrypt, verify and tally ballots of 1 contest × 4 candidates; prints a table.
    Crypto(commands::bench::BenchArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).with_writer(std::io::stderr).init();
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Demo(args) => commands::demo::run(args),
        Command::Bench(BenchCommand::Crypto(args)) => commands::bench::run(args),
        Command::Verify { dir } => commands::verify::run(dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
