//! How a link to PostgreSQL, RabbitMQ or Redis is secured, read from its URL.
//!
//! A RabbitMQ or Redis URL names the authority its server's certificate chains to with
//! `cacertfile=PATH` in its query (the name RabbitMQ's own URI spec gives it; PostgreSQL's
//! URL has `sslrootcert` for the same). [`LinkUrl::parse`] reads that file, trusted beside
//! the public roots, and takes the parameter out of the URL the client library gets.
//! [`exposure`] says whether a link is encrypted and, if not, whether it leaves the host:
//! the roles refuse plain text beyond loopback unless told the network encrypts below.

use std::net::IpAddr;
use std::path::PathBuf;

use url::Url;

/// The query parameter naming a PEM file of certificate authorities to trust.
pub const CA_FILE_PARAM: &str = "cacertfile";

/// A service URL with the certificate authority it names taken out.
#[derive(Clone)]
pub struct LinkUrl {
    /// The URL the client library gets: as given, less [`CA_FILE_PARAM`].
    pub url: String,
    /// The PEM text of the authorities to trust beside the public roots.
    pub ca_pem: Option<String>,
}

impl std::fmt::Debug for LinkUrl {
    /// The URL may hold a password: only whether an authority was named is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkUrl")
            .field("ca_pem", &self.ca_pem.is_some())
            .finish_non_exhaustive()
    }
}

/// Why a link's URL cannot be used. The URL itself is never quoted (it may hold a password).
#[derive(Debug, thiserror::Error)]
pub enum LinkUrlError {
    #[error("not a URL: {0}")]
    Malformed(#[from] url::ParseError),
    #[error("{CA_FILE_PARAM}={path}: {source}")]
    CaFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{CA_FILE_PARAM}={0} holds no PEM certificate")]
    NotPem(PathBuf),
    #[error("{CA_FILE_PARAM} is given for a link without TLS: use {0}")]
    CaWithoutTls(&'static str),
}

impl LinkUrl {
    /// Splits [`CA_FILE_PARAM`] off `url` and reads the file it names.
    pub fn parse(url: &str) -> Result<LinkUrl, LinkUrlError> {
        let mut parsed = Url::parse(url)?;
        let (named, kept): (Vec<_>, Vec<_>) = parsed
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .partition(|(k, _)| k == CA_FILE_PARAM);
        let Some((_, path)) = named.into_iter().last() else {
            return Ok(LinkUrl {
                url: url.to_owned(),
                ca_pem: None,
            });
        };
        if let Some(secure) = secure_scheme_for(parsed.scheme()) {
            return Err(LinkUrlError::CaWithoutTls(secure));
        }
        if kept.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.query_pairs_mut().clear().extend_pairs(kept);
        }
        Ok(LinkUrl {
            url: parsed.into(),
            ca_pem: Some(read_pem(PathBuf::from(path))?),
        })
    }
}

/// The TLS scheme to use instead of a plain one; `None` for a scheme that is already TLS.
fn secure_scheme_for(scheme: &str) -> Option<&'static str> {
    match scheme {
        "amqp" => Some("amqps://"),
        "redis" | "valkey" => Some("rediss://"),
        _ => None,
    }
}

fn read_pem(path: PathBuf) -> Result<String, LinkUrlError> {
    match std::fs::read_to_string(&path) {
        Ok(text) if text.contains("-----BEGIN CERTIFICATE-----") => Ok(text),
        Ok(_) => Err(LinkUrlError::NotPem(path)),
        Err(source) => Err(LinkUrlError::CaFile { path, source }),
    }
}

/// How a link travels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exposure {
    /// TLS with the server's certificate checked.
    Encrypted,
    /// Plain text that stays on this host (loopback or a Unix socket).
    Local,
    /// Plain text to this host, beyond loopback.
    Plaintext(String),
}

/// How the link of a PostgreSQL, RabbitMQ or Redis URL travels; a URL that cannot be read
/// is taken as plain text to wherever it points (its client refuses it later).
pub fn exposure(url: &str) -> Exposure {
    let Ok(parsed) = Url::parse(url) else {
        return Exposure::Plaintext("an unreadable URL".to_owned());
    };
    let encrypted = match parsed.scheme() {
        "amqps" | "rediss" | "valkeys" => true,
        "postgres" | "postgresql" => parsed
            .query_pairs()
            .any(|(k, v)| k == "sslmode" && matches!(&*v, "require" | "verify-ca" | "verify-full")),
        "redis+unix" | "valkey+unix" | "unix" => return Exposure::Local,
        _ => false,
    };
    if encrypted {
        return Exposure::Encrypted;
    }
    let host = postgres_socket_host(&parsed).or_else(|| parsed.host_str().map(str::to_owned));
    match host {
        None => Exposure::Local,
        Some(host) if is_local_host(&host) => Exposure::Local,
        Some(host) => Exposure::Plaintext(host),
    }
}

/// The `host` query parameter a PostgreSQL URL may use instead of its authority.
fn postgres_socket_host(url: &Url) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == "host")
        .map(|(_, v)| v.into_owned())
}

/// Loopback, `localhost` or a Unix socket directory.
pub fn is_local_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.is_empty()
        || host.starts_with('/')
        || host.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca_file(dir: &std::path::Path, text: &str) -> PathBuf {
        let path = dir.join("ca.pem");
        std::fs::write(&path, text).unwrap();
        path
    }

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    #[test]
    fn the_authority_is_read_and_taken_out_of_the_url() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca_file(dir.path(), PEM);
        let url = format!(
            "amqps://u:p@10.0.0.1:5671/%2f?heartbeat=4&{CA_FILE_PARAM}={}",
            ca.display()
        );
        let link = LinkUrl::parse(&url).unwrap();
        assert_eq!(link.url, "amqps://u:p@10.0.0.1:5671/%2f?heartbeat=4");
        assert_eq!(link.ca_pem.as_deref(), Some(PEM));
        let only = LinkUrl::parse(&format!(
            "rediss://10.0.0.1:6380/?cacertfile={}",
            ca.display()
        ));
        assert_eq!(only.unwrap().url, "rediss://10.0.0.1:6380/");
    }

    #[test]
    fn a_url_without_an_authority_is_left_as_given() {
        let url = "amqp://guest:guest@127.0.0.1:5672/%2f";
        let link = LinkUrl::parse(url).unwrap();
        assert_eq!((link.url.as_str(), link.ca_pem), (url, None));
    }

    #[test]
    fn a_bad_authority_file_or_a_plain_scheme_is_refused_without_quoting_the_url() {
        let dir = tempfile::tempdir().unwrap();
        let missing = "rediss://:secret@10.0.0.1/?cacertfile=/nonexistent/ca.pem";
        let error = LinkUrl::parse(missing).unwrap_err().to_string();
        assert!(
            error.contains("/nonexistent/ca.pem") && !error.contains("secret"),
            "{error}"
        );
        let junk = ca_file(dir.path(), "not a certificate");
        let error = LinkUrl::parse(&format!("amqps://h/?cacertfile={}", junk.display()));
        assert!(matches!(error, Err(LinkUrlError::NotPem(_))));
        let plain = LinkUrl::parse(&format!("amqp://h/?cacertfile={}", junk.display()));
        assert!(matches!(plain, Err(LinkUrlError::CaWithoutTls("amqps://"))));
        assert!(LinkUrl::parse("redis://:port").is_err());
    }

    #[test]
    fn exposure_tells_tls_loopback_and_the_network_apart() {
        let plain = |host: &str| Exposure::Plaintext(host.to_owned());
        let cases = [
            ("amqps://10.0.0.1:5671/%2f", Exposure::Encrypted),
            ("rediss://db.example:6380", Exposure::Encrypted),
            (
                "postgres://pg@10.0.0.1/db?sslmode=verify-full",
                Exposure::Encrypted,
            ),
            (
                "postgres://pg@10.0.0.1/db?sslmode=prefer",
                plain("10.0.0.1"),
            ),
            ("postgres://pg@127.0.0.1:5432/db", Exposure::Local),
            ("postgres:///db?host=/var/run/postgresql", Exposure::Local),
            ("amqp://guest:guest@localhost:5672/%2f", Exposure::Local),
            ("redis://[::1]:6379", Exposure::Local),
            ("redis+unix:///run/redis.sock", Exposure::Local),
            ("amqp://guest:guest@rabbit:5672/%2f", plain("rabbit")),
            ("redis://10.0.0.9:6379", plain("10.0.0.9")),
        ];
        for (url, expected) in cases {
            assert_eq!(exposure(url), expected, "{url}");
        }
    }
}
