//! The HTTP edge's certificate, by flag or environment, for every role that listens.
//!
//! Every role serves HTTPS when given a certificate chain and its key (`--tls-cert` and
//! `--tls-key`, or `AMARVOTE_TLS_CERT` and `AMARVOTE_TLS_KEY`, both PEM); without them it
//! serves plain HTTP and says so at start, as a warning when it listens beyond loopback.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::api::tls::ServerTls;

/// The HTTP edge's certificate, by flag or environment.
#[derive(Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// PEM certificate chain of the HTTP edge (leaf first); HTTPS with --tls-key.
    #[arg(long, env = "AMARVOTE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "AMARVOTE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl TlsArgs {
    /// The edge's TLS, read now so that a bad file ends the start before anything listens;
    /// `None` for plain HTTP, which is announced.
    pub fn server(&self, listen: SocketAddr) -> Result<Option<ServerTls>> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                tracing::info!(%listen, "serving HTTPS");
                ServerTls::from_files(cert, key).map(Some)
            }
            _ if listen.ip().is_loopback() => {
                tracing::info!(%listen, "serving plain HTTP, on loopback only");
                Ok(None)
            }
            _ => {
                tracing::warn!(
                    %listen,
                    "serving plain HTTP beyond loopback: tokens and ballots cross the network \
                     readable; give --tls-cert and --tls-key, or terminate TLS in front"
                );
                Ok(None)
            }
        }
    }
}
