//! The routes of a role that is still starting: every request is answered 503 naming the
//! service the role waits for, until the role opens the gate with its routes.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower::ServiceExt as _;

use super::edge::ApiError;

/// The routes a role serves once it is ready; until then, a 503 naming the service it
/// waits for (the one error shape, with `Retry-After`).
#[derive(Clone, Default)]
pub struct StartGate {
    state: Arc<GateState>,
}

#[derive(Default)]
struct GateState {
    ready: OnceLock<Router>,
    waiting_for: Mutex<&'static str>,
}

impl StartGate {
    /// The router a role serves from its first moment.
    pub fn router(&self) -> Router {
        let gate = self.clone();
        Router::new().fallback_service(tower::service_fn(move |request: Request| {
            let gate = gate.clone();
            async move { Ok::<_, std::convert::Infallible>(gate.answer(request).await) }
        }))
    }

    /// From now on every request goes to `router`.
    pub fn open(&self, router: Router) {
        if self.state.ready.set(router).is_err() {
            tracing::warn!("the start gate was opened twice; the first routes stay");
        }
    }

    pub fn waiting_for(&self, service: &'static str) {
        *self
            .state
            .waiting_for
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = service;
    }

    async fn answer(&self, request: Request) -> Response {
        if let Some(router) = self.state.ready.get() {
            return match router.clone().oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
        }
        let service = *self
            .state
            .waiting_for
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let what = if service.is_empty() {
            "its services"
        } else {
            service
        };
        ApiError {
            retry_after: Some(Duration::from_secs(1)),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("starting: waiting for {what}"),
            )
        }
        .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_gate_names_what_it_waits_for_then_serves_the_routes() {
        let gate = StartGate::default();
        gate.waiting_for("PostgreSQL");
        let request = || {
            Request::builder()
                .uri("/health")
                .body(axum::body::Body::empty())
                .unwrap()
        };
        let waiting = gate.answer(request()).await;
        assert_eq!(waiting.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(waiting.headers()["retry-after"], "1");
        let body = axum::body::to_bytes(waiting.into_body(), 4096)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"], "starting: waiting for PostgreSQL");
        assert_eq!(body["status"], 503);

        gate.open(Router::new().route("/health", axum::routing::get(|| async { "ok" })));
        let ready = gate.answer(request()).await;
        assert_eq!(ready.status(), StatusCode::OK);
    }
}
