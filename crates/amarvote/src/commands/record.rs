//! `amarvote record`: fetch a published election record from a server into a directory
//! in the reference layout, ready for `amarvote verify` or electionguard-python.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::client::Client;
use super::demo_server::download_record;

#[derive(Args, Debug)]
pub struct RecordArgs {
    /// The server, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    pub server: String,
    /// The election's id.
    #[arg(long)]
    pub election: String,
    /// The directory to write the record into.
    #[arg(long)]
    pub out: PathBuf,
}

pub async fn run(args: &RecordArgs) -> Result<()> {
    download_record(&Client::new(&args.server), &args.election, &args.out).await?;
    println!(
        "record of {} written to {}; check it with: amarvote verify {}",
        args.election,
        args.out.display(),
        args.out.display()
    );
    Ok(())
}
