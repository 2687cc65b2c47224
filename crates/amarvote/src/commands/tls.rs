//! The HTTP edge's certificate, by flag or environment, for every role that listens.
//!
//! Every role serves HTTPS when given a certificate chain and its key (`--tls-cert` and
//! `--tls-key`, or `AMARVOTE_TLS_CERT` and `AMARVOTE_TLS_KEY`, both PEM); without them it
//! serves plain HTTP on loopback only. Its links to PostgreSQL, RabbitMQ and Redis are
//! checked the same way: each is announced at start, and one that would carry plain text
//! beyond loopback is refused unless `--plaintext-beyond-loopback` says the network
//! encrypts below (a service mesh, WireGuard) or TLS ends in front of the role; then it
//! is named in a warning.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

use crate::adapters::link_tls::{exposure, Exposure};
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
    /// Let plain-text links leave this host (the HTTP edge, PostgreSQL, RabbitMQ, Redis):
    /// only where TLS ends in front of the role or the network itself encrypts (a service
    /// mesh, WireGuard). Each such link is named in a warning at start.
    #[arg(long, env = "AMARVOTE_PLAINTEXT_BEYOND_LOOPBACK")]
    pub plaintext_beyond_loopback: bool,
}

impl TlsArgs {
    /// The edge's TLS, read now so that a bad file ends the start before anything listens;
    /// `None` for plain HTTP, which is announced, and refused beyond loopback unless allowed.
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
            _ if self.plaintext_beyond_loopback => {
                tracing::warn!(
                    %listen,
                    "serving plain HTTP beyond loopback (--plaintext-beyond-loopback): TLS must \
                     end in front of this role"
                );
                Ok(None)
            }
            _ => bail!(
                "refusing to serve plain HTTP on {listen}, beyond loopback: tokens and ballots \
                 would cross the network readable; give --tls-cert and --tls-key, or \
                 --plaintext-beyond-loopback where TLS ends in front of this role"
            ),
        }
    }

    /// Announces how each of a role's links (`(its variable, its URL)`) travels, and
    /// refuses one that would leave this host in plain text, or over TLS that checks no
    /// certificate, unless allowed.
    pub fn check_links(&self, links: &[(&str, &str)]) -> Result<()> {
        for (name, url) in links {
            let (host, how) = match exposure(url) {
                Exposure::Encrypted => {
                    tracing::info!(link = name, "TLS");
                    continue;
                }
                Exposure::Local => {
                    tracing::info!(link = name, "on this host only");
                    continue;
                }
                Exposure::Unverified(host) => (host, "TLS that checks no certificate"),
                Exposure::Plaintext(host) => (host, "plain text"),
            };
            if !self.plaintext_beyond_loopback {
                bail!(
                    "{name} would carry {how} to {host}, beyond loopback: use TLS that checks \
                     the server (postgres …?sslmode=verify-full&sslrootcert=CA, \
                     amqps://…?cacertfile=CA, rediss://…?cacertfile=CA), or \
                     --plaintext-beyond-loopback where the network itself encrypts"
                );
            }
            tracing::warn!(
                link = name,
                %host,
                "{how} beyond loopback (--plaintext-beyond-loopback): the network must \
                 encrypt below"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(allow: bool) -> TlsArgs {
        TlsArgs {
            plaintext_beyond_loopback: allow,
            ..TlsArgs::default()
        }
    }

    #[test]
    fn plain_http_is_served_on_loopback_and_refused_beyond_unless_allowed() {
        assert!(args(false)
            .server("127.0.0.1:8080".parse().unwrap())
            .unwrap()
            .is_none());
        let error = args(false)
            .server("0.0.0.0:8080".parse().unwrap())
            .unwrap_err();
        assert!(error.to_string().contains("--tls-cert"), "{error}");
        assert!(args(true)
            .server("10.0.0.2:8080".parse().unwrap())
            .unwrap()
            .is_none());
    }

    #[test]
    fn a_plain_link_beyond_loopback_is_refused_by_name_unless_allowed() {
        let links = [
            ("DATABASE_URL", "postgres://pg@127.0.0.1/db"),
            ("AMQP_URL", "amqps://guest:secret@10.0.0.1:5671/%2f"),
            ("REDIS_URL", "redis://:secret@10.0.0.3:6379"),
        ];
        let error = args(false).check_links(&links).unwrap_err().to_string();
        assert!(
            error.starts_with("REDIS_URL would carry plain text to 10.0.0.3"),
            "{error}"
        );
        assert!(
            !error.contains("secret"),
            "a URL's password is never quoted: {error}"
        );
        args(true).check_links(&links).unwrap();
        let unchecked = [("DATABASE_URL", "postgres://pg@10.0.0.4/db?sslmode=require")];
        let error = args(false).check_links(&unchecked).unwrap_err().to_string();
        assert!(
            error.contains("TLS that checks no certificate to 10.0.0.4"),
            "{error}"
        );
        args(false).check_links(&links[..2]).unwrap();
    }
}
