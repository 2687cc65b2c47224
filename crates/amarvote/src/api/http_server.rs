//! Serving a router over HTTP/1.1 with the limits a public endpoint needs: a client
//! must send its request headers within `header_read_timeout` (a slow-loris connection
//! that never finishes them is closed), and at most `max_connections` are open at once
//! (beyond it a new connection is closed at accept, so the process keeps its file
//! descriptors and memory for the clients it serves). Each request carries the peer's
//! address (`ConnectInfo`), for per-client rate limits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};

use super::tls::ServerTls;
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

/// What one process accepts from its clients.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    /// How long open requests (event streams included) may run on after shutdown.
    pub shutdown_grace: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 4096,
            header_read_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// Serves `router` on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: watch::Receiver<bool>,
) {
    serve_with(listener, router, limits, None, shutdown).await;
}

/// As [`serve`], over TLS when `tls` is given: each connection's handshake runs in its own
/// task, within the header read timeout, so a slow or silent client holds up no other.
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    tls: Option<ServerTls>,
    mut shutdown: watch::Receiver<bool>,
) {
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let stop = async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, or a connection reset before accept: try again shortly.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "connection refused: {} open", limits.max_connections);
            continue;
        };
        let service = router
            .clone()
            .map_request(move |mut request: hyper::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            });
        let (tls, watcher) = (tls.clone(), graceful.watcher());
        tokio::spawn(async move {
            let Some(io) = secured(stream, tls.as_ref(), peer, &limits).await else {
                return;
            };
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
            let _ = watcher.watch(connection).await;
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::info!("connections still open after the shutdown grace period; closing them");
    }
}

/// Binds `listen` and serves until shutdown.
/// A connection's byte stream, plain or TLS.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

/// The connection as HTTP reads it: the TCP stream itself, or the TLS session on it once
/// the handshake is done (`None` when it fails or outlasts the header read timeout).
async fn secured(
    stream: TcpStream,
    tls: Option<&ServerTls>,
    peer: SocketAddr,
    limits: &ConnectionLimits,
) -> Option<Box<dyn Stream>> {
    let Some(ServerTls(acceptor)) = tls else {
        return Some(Box::new(stream));
    };
    match tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream)).await {
        Ok(Ok(session)) => Some(Box::new(session)),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}
