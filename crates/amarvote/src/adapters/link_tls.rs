//! How a link to PostgreSQL, RabbitMQ or Redis is secured, read from its URL.
//!
//! A RabbitMQ or Redis URL names the authority its server's certificate chains to with
//! `cacertfile=PATH` in its query (the name RabbitMQ's own URI spec gives it; PostgreSQL's
//! URL has `sslrootcert` for the same). [`LinkUrl::parse`] reads that file, trusted beside
//! the public roots, and takes the parameter out of the URL the client library gets.
//! [`exposure`] says whether a link is encrypted with the server's certificate checked and,
//! if not, whether it leaves the host, reading each URL as its own client library does:
//! the roles refuse plain text beyond loopback unless told the network encrypts below.

use std::net::IpAddr;
use std::path::PathBuf;

use lapin::uri::{AMQPScheme, AMQPUri};
use redis::{ConnectionAddr, IntoConnectionInfo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use sqlx::postgres::{PgConnectOptions, PgSslMode};
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
    #[error("not a URL of the form SCHEME://HOST…")]
    NoAuthority,
    #[error("{CA_FILE_PARAM}={path}: {source}")]
    CaFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{CA_FILE_PARAM}={0} holds no PEM certificate rustls can read")]
    NotPem(PathBuf),
    #[error("{CA_FILE_PARAM} is given for a link without TLS: use {0}")]
    CaWithoutTls(&'static str),
    #[error("{CA_FILE_PARAM} is for amqps:// and rediss:// URLs (PostgreSQL takes sslrootcert=)")]
    CaNotHere,
    #[error("{CA_FILE_PARAM} is given more than once")]
    CaTwice,
}

impl LinkUrl {
    /// Splits [`CA_FILE_PARAM`] off `url` and reads the file it names. The rest of the
    /// query is kept as written.
    pub fn parse(url: &str) -> Result<LinkUrl, LinkUrlError> {
        let mut parsed = Url::parse(url)?;
        if parsed.cannot_be_a_base() {
            return Err(LinkUrlError::NoAuthority);
        }
        let raw = parsed.query().unwrap_or_default().to_owned();
        let (named, kept): (Vec<&str>, Vec<&str>) = raw
            .split('&')
            .filter(|pair| !pair.is_empty())
            .partition(|pair| pair.split('=').next() == Some(CA_FILE_PARAM));
        let path = match named.as_slice() {
            [] => {
                return Ok(LinkUrl {
                    url: url.to_owned(),
                    ca_pem: None,
                })
            }
            [one] => one.split_once('=').map_or("", |(_, path)| path),
            _ => return Err(LinkUrlError::CaTwice),
        };
        match parsed.scheme() {
            "amqps" | "rediss" | "valkeys" => {}
            "amqp" => return Err(LinkUrlError::CaWithoutTls("amqps://")),
            "redis" | "valkey" => return Err(LinkUrlError::CaWithoutTls("rediss://")),
            _ => return Err(LinkUrlError::CaNotHere),
        }
        let path = PathBuf::from(
            percent_encoding::percent_decode_str(path)
                .decode_utf8_lossy()
                .as_ref(),
        );
        let ca_pem = read_pem(path)?;
        parsed.set_query(
            Some(&kept.join("&"))
                .filter(|q| !q.is_empty())
                .map(String::as_str),
        );
        Ok(LinkUrl {
            url: parsed.into(),
            ca_pem: Some(ca_pem),
        })
    }
}

/// The file's text, if it holds one or more certificates rustls reads, and nothing else.
fn read_pem(path: PathBuf) -> Result<String, LinkUrlError> {
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(source) => return Err(LinkUrlError::CaFile { path, source }),
    };
    let certificates: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(text.as_bytes()).collect();
    match certificates {
        Ok(found) if !found.is_empty() => Ok(text),
        _ => Err(LinkUrlError::NotPem(path)),
    }
}

/// How a link travels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exposure {
    /// TLS with the server's certificate and name checked.
    Encrypted,
    /// Plain text, or TLS without checking the server, that stays on this host (loopback,
    /// `localhost`, a Unix socket).
    Local,
    /// TLS to this host beyond loopback that does not check who answers
    /// (`sslmode=require` or `verify-ca`, `rediss://…#insecure`).
    Unverified(String),
    /// Plain text to this host, beyond loopback.
    Plaintext(String),
}

/// How the link of a PostgreSQL, RabbitMQ or Redis URL travels, read as its client reads
/// it (the last of repeated parameters, PostgreSQL's `host=`, `hostaddr=` and `PG*`
/// variables); a URL its client cannot read is taken as plain text to an unknown host.
pub fn exposure(url: &str) -> Exposure {
    let scheme = url
        .split_once("://")
        .map_or("", |(s, _)| s)
        .to_ascii_lowercase();
    let read = match scheme.as_str() {
        "postgres" | "postgresql" => postgres_link(url),
        "amqp" | "amqps" => amqp_link(url),
        _ => redis_link(url),
    };
    let Some((host, tls)) = read else {
        return Exposure::Plaintext("a host its client cannot read".to_owned());
    };
    match (host, tls) {
        (_, Tls::Verified) => Exposure::Encrypted,
        (None, _) => Exposure::Local,
        (Some(host), _) if is_local_host(&host) => Exposure::Local,
        (Some(host), Tls::Unverified) => Exposure::Unverified(host),
        (Some(host), Tls::None) => Exposure::Plaintext(host),
    }
}

/// What a client does about TLS.
enum Tls {
    Verified,
    Unverified,
    None,
}

/// The host (`None` for a Unix socket) and TLS of a PostgreSQL URL, as sqlx reads it.
fn postgres_link(url: &str) -> Option<(Option<String>, Tls)> {
    let options: PgConnectOptions = url.parse().ok()?;
    let tls = match options.get_ssl_mode() {
        PgSslMode::VerifyFull => Tls::Verified,
        PgSslMode::VerifyCa | PgSslMode::Require => Tls::Unverified,
        PgSslMode::Disable | PgSslMode::Allow | PgSslMode::Prefer => Tls::None,
    };
    let host = options
        .get_socket()
        .is_none()
        .then(|| options.get_host().to_owned());
    Some((host.filter(|h| !h.starts_with('/')), tls))
}

/// The host and TLS of an AMQP URL, as lapin reads it (AMQPS always checks the broker).
fn amqp_link(url: &str) -> Option<(Option<String>, Tls)> {
    let uri: AMQPUri = url.parse().ok()?;
    let tls = match uri.scheme {
        AMQPScheme::AMQPS => Tls::Verified,
        AMQPScheme::AMQP => Tls::None,
    };
    Some((Some(uri.authority.host), tls))
}

/// The host and TLS of a Redis URL, as redis-rs reads it.
fn redis_link(url: &str) -> Option<(Option<String>, Tls)> {
    Some(match url.into_connection_info().ok()?.addr {
        ConnectionAddr::Tcp(host, _) => (Some(host), Tls::None),
        ConnectionAddr::TcpTls { host, insecure, .. } => (
            Some(host),
            if insecure {
                Tls::Unverified
            } else {
                Tls::Verified
            },
        ),
        ConnectionAddr::Unix(_) => (None, Tls::None),
    })
}

/// Loopback (IPv4, IPv6 or IPv4-mapped) or `localhost`.
pub fn is_local_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A certificate rustls reads (a self-signed one made by openssl).
    fn pem() -> String {
        let key =
            openssl::pkey::PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
        let mut builder = openssl::x509::X509::builder().unwrap();
        builder.set_pubkey(&key).unwrap();
        let not_before = openssl::asn1::Asn1Time::days_from_now(0).unwrap();
        let not_after = openssl::asn1::Asn1Time::days_from_now(1).unwrap();
        builder.set_not_before(&not_before).unwrap();
        builder.set_not_after(&not_after).unwrap();
        builder
            .sign(&key, openssl::hash::MessageDigest::sha256())
            .unwrap();
        String::from_utf8(builder.build().to_pem().unwrap()).unwrap()
    }

    fn ca_file(dir: &std::path::Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn the_authority_is_read_and_taken_out_of_the_url_the_rest_kept_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let pem = pem();
        let ca = ca_file(dir.path(), "c+a.pem", &pem);
        let encoded = ca.display().to_string().replace('+', "%2B");
        let url =
            format!("amqps://u:p@10.0.0.1:5671/%2f?heartbeat=4&{CA_FILE_PARAM}={encoded}&x=a+b");
        let link = LinkUrl::parse(&url).unwrap();
        assert_eq!(link.url, "amqps://u:p@10.0.0.1:5671/%2f?heartbeat=4&x=a+b");
        assert_eq!(link.ca_pem.as_deref(), Some(pem.as_str()));
        let only = LinkUrl::parse(&format!("rediss://10.0.0.1:6380/?cacertfile={encoded}"));
        assert_eq!(only.unwrap().url, "rediss://10.0.0.1:6380/");
    }

    #[test]
    fn a_url_without_an_authority_is_left_as_given() {
        let url = "amqp://guest:guest@127.0.0.1:5672/%2f";
        let link = LinkUrl::parse(url).unwrap();
        assert_eq!((link.url.as_str(), link.ca_pem), (url, None));
    }

    #[test]
    fn a_bad_authority_file_or_a_url_it_does_not_fit_is_refused_without_quoting_the_url() {
        let dir = tempfile::tempdir().unwrap();
        let missing = "rediss://:secret@10.0.0.1/?cacertfile=/nonexistent/ca.pem";
        let error = LinkUrl::parse(missing).unwrap_err().to_string();
        assert!(
            error.contains("/nonexistent/ca.pem") && !error.contains("secret"),
            "{error}"
        );
        let fake = "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n";
        for junk in ["not a certificate", fake] {
            let path = ca_file(dir.path(), "junk.pem", junk);
            let error = LinkUrl::parse(&format!("amqps://h/?cacertfile={}", path.display()));
            assert!(matches!(error, Err(LinkUrlError::NotPem(_))), "{junk}");
        }
        let good = ca_file(dir.path(), "ca.pem", &pem());
        let with = |url: &str| LinkUrl::parse(&url.replace("CA", &good.display().to_string()));
        assert!(matches!(
            with("amqp://h/?cacertfile=CA"),
            Err(LinkUrlError::CaWithoutTls("amqps://"))
        ));
        assert!(matches!(
            with("redis://h/?cacertfile=CA"),
            Err(LinkUrlError::CaWithoutTls(_))
        ));
        assert!(matches!(
            with("postgres://h/db?cacertfile=CA"),
            Err(LinkUrlError::CaNotHere)
        ));
        assert!(matches!(
            with("amqps://h/?cacertfile=CA&cacertfile=CA"),
            Err(LinkUrlError::CaTwice)
        ));
        let typo = LinkUrl::parse("amqp:guest:hunter2@rabbit/%2f")
            .unwrap_err()
            .to_string();
        assert!(!typo.contains("hunter2"), "{typo}");
        assert!(LinkUrl::parse("redis://:port").is_err());
    }

    #[test]
    fn exposure_reads_each_url_as_its_client_does() {
        let plain = |host: &str| Exposure::Plaintext(host.to_owned());
        let unverified = |host: &str| Exposure::Unverified(host.to_owned());
        let cases = [
            (
                "amqps://10.0.0.1:5671/%2f?cacertfile=/ca.pem",
                Exposure::Encrypted,
            ),
            (
                "rediss://db.example:6380/?cacertfile=/ca.pem",
                Exposure::Encrypted,
            ),
            (
                "postgres://pg@10.0.0.1/db?sslmode=verify-full",
                Exposure::Encrypted,
            ),
            (
                "postgres://pg@10.0.0.1/db?sslmode=require",
                unverified("10.0.0.1"),
            ),
            (
                "postgres://pg@10.0.0.1/db?sslmode=verify-ca",
                unverified("10.0.0.1"),
            ),
            (
                "postgres://pg@10.0.0.1/db?sslmode=prefer",
                plain("10.0.0.1"),
            ),
            (
                "postgres://pg@10.0.0.1/db?sslmode=verify-full&sslmode=disable",
                plain("10.0.0.1"),
            ),
            ("postgres://pg@127.0.0.1:5432/db", Exposure::Local),
            (
                "postgres://pg@127.0.0.1/db?host=10.0.0.5",
                plain("10.0.0.5"),
            ),
            (
                "postgres://pg@localhost/db?host=localhost&host=10.0.0.6",
                plain("10.0.0.6"),
            ),
            ("postgres:///db?host=/var/run/postgresql", Exposure::Local),
            ("amqp://guest:guest@localhost:5672/%2f", Exposure::Local),
            (
                "amqp://u:p@rabbit.remote/%2f?host=/tmp",
                plain("rabbit.remote"),
            ),
            ("redis://[::1]:6379", Exposure::Local),
            ("redis://[::ffff:127.0.0.1]:6379", Exposure::Local),
            ("redis://:pw@10.0.0.3/?host=localhost", plain("10.0.0.3")),
            ("redis+unix:///run/redis.sock", Exposure::Local),
            (
                "redis://127.0.0.1.evil.example:6379",
                plain("127.0.0.1.evil.example"),
            ),
            ("amqp://guest:guest@rabbit:5672/%2f", plain("rabbit")),
            ("redis://10.0.0.9:6379", plain("10.0.0.9")),
            ("http://10.0.0.9/", plain("a host its client cannot read")),
        ];
        for (url, expected) in cases {
            assert_eq!(exposure(url), expected, "{url}");
        }
    }
}
