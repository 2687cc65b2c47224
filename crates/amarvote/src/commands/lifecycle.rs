//! A role's life as a process: serving HTTP until told to stop, and being told to stop.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use tokio::sync::watch;

/// SIGTERM or Ctrl-C flips the returned flag; roles finish their current work and exit.
pub fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("signal handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("shutting down: finishing current work");
        let _ = tx.send(true);
    });
    rx
}

/// Serves `router` on `listen` (with client addresses, for rate limits) until shutdown.
pub async fn serve_http(
    listen: SocketAddr,
    router: axum::Router,
    tls: Option<crate::api::tls::ServerTls>,
    shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    crate::api::http_server::serve_with(listener, router, Default::default(), tls, shutdown).await;
    Ok(())
}
