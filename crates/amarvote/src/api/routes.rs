//! The routes of both APIs as one router per role, and the contract generated from them.

use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::Value;
use utoipa::openapi::OpenApi;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;

use super::edge::{json_errors, ApiError, AppState};
use super::openapi::{add_edge_answers, add_links, Base};
use super::{ballots, ceremony, elections, jobs, rate_limit, record, referendum};
use super::{remote_decryption, web};

#[derive(serde::Serialize, utoipa::ToSchema)]
struct Health {
    /// Always `ok`: the process answers.
    status: String,
}

async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Refreshes the shared-state gauges, then renders every metric.
pub async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    for queue in crate::domain::QueueName::ALL {
        let label = crate::metrics::QueueLabel {
            queue: queue.as_str().into(),
        };
        if let Ok(depth) = app.queue.depth(queue).await {
            app.metrics
                .queue_depth
                .get_or_create(&label)
                .set(depth as i64);
        }
        if let Ok(dead) = app.queue.dead_letters(queue).await {
            app.metrics
                .dead_letters
                .get_or_create(&label)
                .set(dead as i64);
        }
    }
    for state in [
        crate::domain::JobState::Running,
        crate::domain::JobState::Done,
        crate::domain::JobState::Failed,
        crate::domain::JobState::Stopped,
    ] {
        if let Ok(jobs) = app.store.jobs_in_state(state).await {
            app.metrics
                .jobs
                .get_or_create(&crate::metrics::StateLabel {
                    state: state.as_str().into(),
                })
                .set(jobs.len() as i64);
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
}

/// `/health` and `/metrics`, which every role serves.
pub fn operations_routes() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
}

/// The election API's routes with their descriptions (see [`super::openapi`]).
fn election_routes() -> OpenApiRouter<AppState> {
    unlimited_routes().merge(ballots::routes())
}

/// Every election route but the ballots', which are rate limited per client.
fn unlimited_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(elections::routes())
        .merge(ceremony::routes())
        .merge(jobs::routes())
        .merge(remote_decryption::routes())
        .merge(record::routes())
}

/// The whole election API (its contract is added where the process is assembled:
/// [`contract_route`]).
pub fn router(app: AppState) -> Router {
    let limiter = Arc::new(rate_limit::RateLimiter::new(app.settings.ballot_rate_limit));
    let (unlimited, _) = unlimited_routes().split_for_parts();
    let (ballots, _) = ballots::routes().split_for_parts();
    operations_routes()
        .merge(unlimited)
        .merge(ballots.route_layer(axum::middleware::from_fn_with_state(
            (app.clone(), limiter),
            rate_limit::limit_ballots,
        )))
        .merge(web::routes())
        .fallback(|| async {
            ApiError {
                status: StatusCode::NOT_FOUND,
                retry_after: None,
                message: "no such endpoint".into(),
                field: None,
            }
        })
        .layer(axum::middleware::from_fn(json_errors))
        .with_state(app)
}

/// Which APIs a process serves, and so which contract it publishes: the embedded server
/// both, each scaled role its own (`api` the election's, `referendum ingest` the
/// referendum's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Served {
    Both,
    Election,
    Referendum,
}

impl Served {
    fn index(self) -> usize {
        match self {
            Served::Both => 0,
            Served::Election => 1,
            Served::Referendum => 2,
        }
    }
}

/// The contract of what `served` names, as the routers build it.
pub fn contract(served: Served) -> &'static OpenApi {
    static DOCUMENTS: [OnceLock<OpenApi>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    DOCUMENTS[served.index()].get_or_init(|| {
        let limited_routes = [
            ballots::routes().into_openapi(),
            referendum::routes().into_openapi(),
        ];
        let limited: Vec<String> = limited_routes
            .iter()
            .flat_map(|routes| routes.paths.paths.keys().cloned())
            .collect();
        let mut document = Base::openapi();
        if served != Served::Referendum {
            document.merge(election_routes().into_openapi());
        }
        if served != Served::Election {
            document.merge(referendum::routes().into_openapi());
        }
        add_edge_answers(&mut document, &limited);
        document
    })
}

/// The contract as served: the document with its links.
pub fn contract_json(served: Served) -> &'static Value {
    static JSON: [OnceLock<Value>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    JSON[served.index()].get_or_init(|| {
        let mut json = serde_json::to_value(contract(served)).expect("the contract serializes");
        add_links(&mut json);
        json
    })
}

/// `/api/openapi.json`, publishing the contract of what `served` names.
pub fn contract_route<S: Clone + Send + Sync + 'static>(served: Served) -> Router<S> {
    static TEXT: [OnceLock<String>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let text = TEXT[served.index()]
        .get_or_init(|| contract_json(served).to_string())
        .as_str();
    Router::new().route(
        "/api/openapi.json",
        get(move || async move { ([(header::CONTENT_TYPE, "application/json")], text) }),
    )
}
