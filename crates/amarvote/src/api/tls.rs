//! TLS on the HTTP edge: rustls (its one compiled-in provider, ring) from a PEM certificate
//! chain and key ([`ServerTls`]); [`super::http_server`] does the handshake per connection.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A TLS acceptor for the HTTP edge.
#[derive(Clone)]
pub struct ServerTls(pub tokio_rustls::TlsAcceptor);

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls(…)")
    }
}

impl ServerTls {
    pub fn from_files(cert: &Path, key: &Path) -> Result<ServerTls> {
        let chain = std::fs::read(cert)
            .with_context(|| format!("cannot read the certificate chain {}", cert.display()))?;
        let key = std::fs::read(key)
            .with_context(|| format!("cannot read the private key {}", key.display()))?;
        ServerTls::from_pem(&chain, &key)
            .with_context(|| format!("the TLS identity of {}", cert.display()))
    }

    pub fn from_pem(chain: &[u8], key: &[u8]) -> Result<ServerTls> {
        let chain = CertificateDer::pem_slice_iter(chain)
            .collect::<Result<Vec<_>, _>>()
            .context("the certificate chain is not PEM")?;
        if chain.is_empty() {
            bail!("no certificate in the chain");
        }
        let key = PrivateKeyDer::from_pem_slice(key).context("the private key is not PEM")?;
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .context("the certificate and key do not make a TLS identity")?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(ServerTls(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
    }
}
