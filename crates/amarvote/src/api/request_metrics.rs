//! Every answer timed, by route template, method and status
//! (`amarvote_http_request_duration_seconds`). Applied last to a role's whole router, so
//! that every route it serves is counted; a request that matches no route counts under
//! `unmatched`, and a method outside the standard ones under `other`, so that no client can
//! make series of its own.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;

use crate::metrics::{HttpMetrics, RequestLabel};

/// `router` with every answer timed into `metrics`.
pub fn timed(router: Router, metrics: HttpMetrics) -> Router {
    router.layer(axum::middleware::from_fn_with_state(metrics, time_answer))
}

async fn time_answer(State(metrics): State<HttpMetrics>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let method = method_name(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let label = RequestLabel {
        route,
        method: method.to_owned(),
        status: response.status().as_u16(),
    };
    metrics.observe(&label, started.elapsed());
    response
}

fn method_name(method: &Method) -> &'static str {
    const KNOWN: [(Method, &str); 7] = [
        (Method::GET, "GET"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::DELETE, "DELETE"),
        (Method::PATCH, "PATCH"),
        (Method::HEAD, "HEAD"),
        (Method::OPTIONS, "OPTIONS"),
    ];
    KNOWN
        .iter()
        .find(|(known, _)| known == method)
        .map_or("other", |(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use prometheus_client::registry::Registry;
    use tower::ServiceExt as _;

    async fn answer(router: &Router, method: &str, uri: &str) -> u16 {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .unwrap();
        router
            .clone()
            .oneshot(request)
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    #[tokio::test]
    async fn answers_are_counted_by_template_and_hostile_paths_and_methods_make_no_series() {
        let metrics = HttpMetrics::default();
        let router = timed(
            Router::new().route("/api/elections/{id}", get(|| async { "one" })),
            metrics.clone(),
        );
        assert_eq!(answer(&router, "GET", "/api/elections/abc").await, 200);
        assert_eq!(answer(&router, "GET", "/api/elections/xyz").await, 200);
        assert_eq!(answer(&router, "GET", "/no/such/route/%00").await, 404);
        assert_eq!(answer(&router, "BREW", "/api/elections/abc").await, 405);
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        let count = |labels: &str| {
            text.lines()
                .find(|l| {
                    l.starts_with("amarvote_http_request_duration_seconds_count")
                        && l.contains(labels)
                })
                .map(|l| l.rsplit(' ').next().unwrap().to_owned())
        };
        let one = r#"route="/api/elections/{id}",method="GET",status="200""#;
        assert_eq!(count(one).as_deref(), Some("2"), "{text}");
        assert_eq!(
            count(r#"route="unmatched",method="GET",status="404""#).as_deref(),
            Some("1")
        );
        assert_eq!(count(r#"method="other""#).as_deref(), Some("1"), "{text}");
        assert!(!text.contains("abc") && !text.contains("BREW") && !text.contains("such"));
    }
}
