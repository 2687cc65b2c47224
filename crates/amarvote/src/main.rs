//! `amarvote`: verifiable elections (ElectionGuard 1.0) and high-volume referendums from one binary.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use amarvote::commands;

#[derive(Parser)]
#[command(
    name = "amarvote",
    version,
    about = "Verifiable, distributed election backend (ElectionGuard 1.0)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a whole election: in memory, or with --server over HTTP against `amarvote serve`.
    Demo(commands::demo::DemoArgs),
    /// Run the API and every worker in one process on the embedded store and queue.
    Serve(commands::serve::ServeArgs),
    /// Run the HTTP API on PostgreSQL + RabbitMQ.
    Api(commands::serve::ScaledArgs),
    /// Run a worker on PostgreSQL + RabbitMQ.
    Worker(commands::serve::WorkerArgs),
    /// The referendum pipeline: hashgen, load, scaled roles, rebuild-registry, loadgen.
    #[command(subcommand)]
    Referendum(commands::referendum::ReferendumCommand),
    /// Measure the speed of the cryptography core or of the election service.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// A guardian's part from their own terminal: consent to decrypt, see who is present.
    #[command(subcommand)]
    Guardian(commands::guardian::GuardianCommand),
    /// Fetch an election's published record from a server into a directory.
    Record(commands::record::RecordArgs),
    /// Verify a published election record in the reference export layout.
    Verify {
        /// The record's directory.
        dir: PathBuf,
        /// The record comes from a producer that publishes no ballot-box declaration
        /// (`ballot_box.json`), such as electionguard-python: gaps in its code chains and
        /// its ballot counts are then reported as not proven instead of failing.
        #[arg(long)]
        foreign: bool,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Encrypt, verify and tally ballots of 1 contest × 4 candidates; prints a table.
    Crypto(commands::bench::BenchArgs),
    /// Tally, decryption and combine of a whole ballot box through the service; cast throughput.
    Election(commands::bench_election::BenchElectionArgs),
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn demo(args: &commands::demo::DemoArgs) -> anyhow::Result<()> {
    let Some(server) = &args.server else {
        return commands::demo::run(args);
    };
    runtime()?.block_on(commands::demo_server::run(
        args,
        server,
        args.admin_token.as_deref(),
    ))
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo(&args),
        Command::Serve(args) => runtime().and_then(|rt| rt.block_on(commands::serve::serve(args))),
        Command::Api(args) => runtime().and_then(|rt| rt.block_on(commands::serve::api(args))),
        Command::Worker(args) => {
            runtime().and_then(|rt| rt.block_on(commands::serve::worker(args)))
        }
        Command::Bench(BenchCommand::Crypto(args)) => commands::bench::run(&args),
        Command::Bench(BenchCommand::Election(args)) => {
            runtime().and_then(|rt| rt.block_on(commands::bench_election::run(&args)))
        }
        Command::Guardian(command) => {
            runtime().and_then(|rt| rt.block_on(commands::guardian::run(command)))
        }
        Command::Record(args) => runtime().and_then(|rt| rt.block_on(commands::record::run(&args))),
        Command::Verify { dir, foreign } => commands::verify::run(&dir, foreign),
        Command::Referendum(command) => commands::referendum::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
