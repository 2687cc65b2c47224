//! The referendum's HTTP API: vote submission (202), outcome and results
//! lookups, and the administrator's setup endpoints.
//!
//! `POST /api/v1/vote` checks the request's format, reduces NAS and code to
//! the keyed voter hash at once (they are never stored, queued or logged),
//! publishes the vote to the validation stream and answers 202 with a request
//! id once the publish is durable. Publishing one message per request would
//! cost a disk sync or broker confirm per vote, so requests hand their message
//! to a [`Publisher`] task that publishes everything queued up meanwhile as
//! one batch: under load, batches grow by themselves, with no fixed delay.
//!
//! Routes:
//! - `POST /api/v1/vote` `{nas, code, law_id, vote}` → 202 `{request_id}`;
//!   400 `{error, field}` for a malformed request or an unknown law.
//! - `GET /api/v1/vote/{request_id}` → `{request_id, status, attempts?}`,
//!   status `pending`, `accepted`, `duplicate` or `not_eligible`.
//! - `POST /api/v1/votes/status` `{request_ids}` → `{statuses: [...]}`, the
//!   same for up to [`MAX_STATUS_BATCH`] requests.
//! - `GET /api/v1/results/{law_id}` → `{law_id, oui, non, audited}`.
//! - `GET /api/v1/health`.
//! - Administrator (bearer token): `POST /api/v1/admin/laws` `{law_id,
//!   title?}`, `POST /api/v1/admin/voters` `{voters: [{nas, code, law_id}]}`
//!   (hashed here, so the election secret never leaves the server), and
//!   `GET /api/v1/admin/referendum/summary` (queue depths, duplicates).
//!
//! Every route is rate limited per client address; that needs the server to
//! be run with `into_make_service_with_connect_info::<SocketAddr>()`, and
//! without it all clients share one bucket.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use super::laws::Laws;
use super::messages::{encode, VoteMessage};
use super::metrics::ReferendumMetrics;
use super::queue::{Stream, VoteQueue};
use super::rate_limit::RateLimiter;
use super::registry::{MarkOutcome, VoterRegistry};
use super::tables::VoteTables;
use super::validate::status_name;
use super::voter_hash::{validate_law_id, Choice, InputError, VoterHasher};
use crate::domain::{new_id, now_ms};

/// Most request ids in one status request.
pub const MAX_STATUS_BATCH: usize = 1_000;
/// Most voters in one administrator load request (about 1.4 MB, under the
/// server's 2 MB body limit).
pub const MAX_VOTER_BATCH: usize = 20_000;
/// Most messages in one publish.
const PUBLISH_BATCH: usize = 2_000;
/// Requests waiting for the publisher before new ones wait for room.
const PUBLISH_BACKLOG: usize = 20_000;

/// Everything the referendum routes need.
pub struct IngestState {
    pub hasher: VoterHasher,
    pub laws: Laws,
    pub tables: VoteTables,
    pub registry: Arc<dyn VoterRegistry>,
    pub queue: Arc<dyn VoteQueue>,
    pub publisher: Publisher,
    pub metrics: Arc<ReferendumMetrics>,
    pub limiter: RateLimiter,
    pub admin_token: String,
}

type Shared = Arc<IngestState>;

/// The referendum routes, ready to be merged into a server.
pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/api/v1/vote", post(submit))
        .route("/api/v1/vote/{request_id}", get(status))
        .route("/api/v1/votes/status", post(statuses))
        .route("/api/v1/results/{law_id}", get(results))
        .route("/api/v1/laws", get(laws))
        .route("/api/v1/health", get(health))
        .route("/api/v1/admin/laws", post(create_law))
        .route("/api/v1/admin/voters", post(load_voters))
        .route("/api/v1/admin/referendum/summary", get(summary))
        .route_layer(middleware::from_fn_with_state(state.clone(), rate_limit))
        .with_state(state)
}

/// How long a batch may wait for the broker (a restart, a lost link) before its voters
/// are told to try again (503).
const PUBLISH_PATIENCE: Duration = Duration::from_secs(20);

/// Publishes, retrying with backoff while the broker is away. Publishing a batch twice is
/// harmless: validators decide each request id once, and the audit counts each voter once.
async fn publish_patiently(queue: &dyn VoteQueue, stream: Stream, bodies: &[Vec<u8>]) -> bool {
    let deadline = Instant::now() + PUBLISH_PATIENCE;
    let mut delay = Duration::from_millis(50);
    loop {
        match queue.publish(stream, bodies).await {
            Ok(()) => return true,
            Err(err) if Instant::now() + delay < deadline => {
                tracing::warn!(%err, votes = bodies.len(), "publishing votes failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(err) => {
                tracing::error!(%err, votes = bodies.len(), "publishing votes failed");
                return false;
            }
        }
    }
}

/// Hands messages to the publisher task and waits for their batch's publish.
#[derive(Clone)]
pub struct Publisher {
    sender: mpsc::Sender<(Vec<u8>, oneshot::Sender<bool>)>,
}

impl Publisher {
    /// Starts the publisher task on `stream`; it ends when every `Publisher`
    /// clone is dropped, after publishing what it was handed.
    pub fn spawn(queue: Arc<dyn VoteQueue>, stream: Stream) -> Self {
        let (sender, receiver) = mpsc::channel(PUBLISH_BACKLOG);
        tokio::spawn(publish_batches(queue, stream, receiver));
        Publisher { sender }
    }

    /// True once the message is durably published.
    pub async fn publish(&self, body: Vec<u8>) -> bool {
        let (done, published) = oneshot::channel();
        if self.sender.send((body, done)).await.is_err() {
            return false;
        }
        published.await.unwrap_or(false)
    }
}

async fn publish_batches(
    queue: Arc<dyn VoteQueue>,
    stream: Stream,
    mut receiver: mpsc::Receiver<(Vec<u8>, oneshot::Sender<bool>)>,
) {
    let mut waiting = Vec::with_capacity(PUBLISH_BATCH);
    while receiver.recv_many(&mut waiting, PUBLISH_BATCH).await > 0 {
        let (bodies, replies): (Vec<_>, Vec<_>) = waiting.drain(..).unzip();
        let published = publish_patiently(&*queue, stream, &bodies).await;
        for reply in replies {
            let _ = reply.send(published);
        }
    }
}

/// An error answer: `{"error": …, "field": …}`.
struct ApiFailure {
    status: StatusCode,
    error: String,
    field: Option<&'static str>,
}

impl ApiFailure {
    fn bad_field(field: &'static str, error: impl Into<String>) -> Self {
        ApiFailure {
            status: StatusCode::BAD_REQUEST,
            error: error.into(),
            field: Some(field),
        }
    }

    fn new(status: StatusCode, error: impl Into<String>) -> Self {
        ApiFailure {
            status,
            error: error.into(),
            field: None,
        }
    }

    fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!(%err, "referendum request failed");
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "temporarily unavailable")
    }
}

impl From<InputError> for ApiFailure {
    fn from(err: InputError) -> Self {
        Self::bad_field(err.field(), err.to_string())
    }
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        let body = match self.field {
            Some(field) => json!({ "error": self.error, "field": field }),
            None => json!({ "error": self.error }),
        };
        (self.status, Json(body)).into_response()
    }
}

type ApiResult = Result<Response, ApiFailure>;

async fn rate_limit(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    if state.limiter.allow(client, Instant::now()) {
        next.run(request).await
    } else {
        ApiFailure::new(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded").into_response()
    }
}

/// A vote request; every field optional so a missing one gets its own message.
#[derive(Deserialize)]
struct VoteRequest {
    nas: Option<String>,
    code: Option<String>,
    law_id: Option<String>,
    vote: Option<String>,
}

fn required<'a>(value: &'a Option<String>, field: &'static str) -> Result<&'a str, ApiFailure> {
    value
        .as_deref()
        .ok_or_else(|| ApiFailure::bad_field(field, format!("{field} is required")))
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiFailure> {
    serde_json::from_slice(body).map_err(|_| {
        ApiFailure::new(
            StatusCode::BAD_REQUEST,
            "the body must be a JSON object with the documented fields",
        )
    })
}

/// Validates a vote request into its message (NAS and code already hashed).
async fn vote_message(state: &IngestState, body: &[u8]) -> Result<VoteMessage, ApiFailure> {
    let request: VoteRequest = parse_json(body)?;
    let nas = required(&request.nas, "nas")?;
    let code = required(&request.code, "code")?;
    let law_id = validate_law_id(required(&request.law_id, "law_id")?)?;
    let vote: Choice = required(&request.vote, "vote")?.parse()?;
    let voter_hash = state.hasher.hash(nas, code, law_id)?;
    if !state
        .laws
        .exists(law_id)
        .await
        .map_err(ApiFailure::internal)?
    {
        return Err(ApiFailure::bad_field("law_id", "unknown law_id"));
    }
    Ok(VoteMessage {
        request_id: new_id("vote"),
        voter_hash,
        law_id: law_id.to_owned(),
        vote,
        received_at: now_ms(),
    })
}

async fn submit(State(state): State<Shared>, body: Bytes) -> ApiResult {
    let started = Instant::now();
    let message = vote_message(&state, &body).await?;
    if !state.publisher.publish(encode(&message)).await {
        return Err(ApiFailure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the vote could not be queued; try again",
        ));
    }
    state.metrics.votes_submitted.inc();
    state
        .metrics
        .submission_seconds
        .observe(started.elapsed().as_secs_f64());
    let answer = json!({ "request_id": message.request_id });
    Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
}

/// Request ids are `vote-` and 24 lowercase hex digits.
fn valid_request_id(request_id: &str) -> bool {
    request_id.strip_prefix("vote-").is_some_and(|hex| {
        hex.len() == 24 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

fn status_json(request_id: &str, outcome: Option<MarkOutcome>) -> Value {
    match outcome {
        None => json!({ "request_id": request_id, "status": "pending" }),
        Some(MarkOutcome::Duplicate { attempts }) => {
            json!({ "request_id": request_id, "status": "duplicate", "attempts": attempts })
        }
        Some(outcome) => json!({ "request_id": request_id, "status": status_name(outcome) }),
    }
}

async fn status(State(state): State<Shared>, Path(request_id): Path<String>) -> ApiResult {
    if !valid_request_id(&request_id) {
        return Err(ApiFailure::bad_field(
            "request_id",
            "unknown request id format",
        ));
    }
    let outcome = state
        .registry
        .outcome(request_id.clone())
        .await
        .map_err(ApiFailure::internal)?;
    Ok(Json(status_json(&request_id, outcome)).into_response())
}

#[derive(Deserialize)]
struct StatusRequest {
    request_ids: Vec<String>,
}

async fn statuses(State(state): State<Shared>, body: Bytes) -> ApiResult {
    let request: StatusRequest = parse_json(&body)?;
    if request.request_ids.len() > MAX_STATUS_BATCH
        || !request.request_ids.iter().all(|id| valid_request_id(id))
    {
        return Err(ApiFailure::bad_field(
            "request_ids",
            format!("at most {MAX_STATUS_BATCH} request ids of the form vote-<24 hex>"),
        ));
    }
    let outcomes = state
        .registry
        .outcomes(request.request_ids.clone())
        .await
        .map_err(ApiFailure::internal)?;
    let statuses: Vec<Value> = request
        .request_ids
        .iter()
        .zip(outcomes)
        .map(|(id, outcome)| status_json(id, outcome))
        .collect();
    Ok(Json(json!({ "statuses": statuses })).into_response())
}

async fn results(State(state): State<Shared>, Path(law_id): Path<String>) -> ApiResult {
    let law_id = validate_law_id(&law_id)?;
    if !state
        .laws
        .exists(law_id)
        .await
        .map_err(ApiFailure::internal)?
    {
        return Err(ApiFailure::new(StatusCode::NOT_FOUND, "unknown law_id"));
    }
    let counts = state
        .tables
        .results(law_id)
        .await
        .map_err(ApiFailure::internal)?;
    let audited = state
        .tables
        .audited(law_id)
        .await
        .map_err(ApiFailure::internal)?;
    let body =
        json!({ "law_id": law_id, "oui": counts.oui, "non": counts.non, "audited": audited });
    Ok(Json(body).into_response())
}

/// Every law with its live totals.
async fn laws(State(state): State<Shared>) -> ApiResult {
    let laws = state.tables.laws().await.map_err(ApiFailure::internal)?;
    let list: Vec<Value> = laws
        .iter()
        .map(|law| json!({ "law_id": law.law_id, "title": law.title, "oui": law.counts.oui, "non": law.counts.non }))
        .collect();
    Ok(Json(json!({ "laws": list })).into_response())
}

async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

fn require_admin(state: &IngestState, headers: &HeaderMap) -> Result<(), ApiFailure> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or("");
    let expected = state.admin_token.as_bytes();
    // Fails closed: an empty configured token admits nobody.
    let matches = !expected.is_empty()
        && presented.len() == expected.len()
        && openssl::memcmp::eq(presented.as_bytes(), expected);
    if matches {
        Ok(())
    } else {
        Err(ApiFailure::new(
            StatusCode::UNAUTHORIZED,
            "administrator token required",
        ))
    }
}

#[derive(Deserialize)]
struct LawRequest {
    law_id: String,
    #[serde(default)]
    title: String,
}

async fn create_law(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> ApiResult {
    require_admin(&state, &headers)?;
    let request: LawRequest = parse_json(&body)?;
    let law_id = validate_law_id(&request.law_id)?;
    let created = state
        .laws
        .create(law_id, &request.title)
        .await
        .map_err(ApiFailure::internal)?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({ "law_id": law_id, "created": created })),
    )
        .into_response())
}

#[derive(Deserialize)]
struct VoterRow {
    nas: String,
    code: String,
    law_id: String,
}

#[derive(Deserialize)]
struct VotersRequest {
    voters: Vec<VoterRow>,
}

async fn load_voters(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> ApiResult {
    require_admin(&state, &headers)?;
    let request: VotersRequest = parse_json(&body)?;
    if request.voters.len() > MAX_VOTER_BATCH {
        return Err(ApiFailure::bad_field(
            "voters",
            format!("at most {MAX_VOTER_BATCH} voters per request"),
        ));
    }
    let mut hashes = Vec::with_capacity(request.voters.len());
    let mut rejected = Vec::new();
    for (index, voter) in request.voters.iter().enumerate() {
        match state.hasher.hash(&voter.nas, &voter.code, &voter.law_id) {
            Ok(hash) => hashes.push(hash),
            Err(err) => rejected.push(json!({ "index": index, "field": err.field() })),
        }
    }
    let added = state
        .registry
        .load(hashes)
        .await
        .map_err(ApiFailure::internal)?;
    Ok(Json(json!({ "added": added, "rejected": rejected })).into_response())
}

async fn summary(State(state): State<Shared>, headers: HeaderMap) -> ApiResult {
    require_admin(&state, &headers)?;
    let mut depth = BTreeMap::new();
    let mut dead = BTreeMap::new();
    for stream in Stream::ALL {
        let name = stream.queue_name();
        depth.insert(
            name,
            state
                .queue
                .depth(stream)
                .await
                .map_err(ApiFailure::internal)?,
        );
        dead.insert(
            name,
            state
                .queue
                .dead_letters(stream)
                .await
                .map_err(ApiFailure::internal)?,
        );
    }
    let (duplicate_voters, duplicate_attempts) = state
        .tables
        .duplicate_totals()
        .await
        .map_err(ApiFailure::internal)?;
    let body = json!({
        "queue_depth": depth,
        "dead_letters": dead,
        "duplicate_voters": duplicate_voters,
        "duplicate_attempts": duplicate_attempts,
    });
    Ok(Json(body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_checked_before_any_lookup() {
        assert!(valid_request_id(&new_id("vote")));
        for bad in [
            "vote-",
            "vote-XYZ",
            "job-000000000000000000000000",
            "vote-0000",
        ] {
            assert!(!valid_request_id(bad), "{bad}");
        }
    }

    #[test]
    fn statuses_name_the_outcome_and_duplicates_their_attempts() {
        assert_eq!(status_json("r", None)["status"], "pending");
        let duplicate = status_json("r", Some(MarkOutcome::Duplicate { attempts: 2 }));
        assert_eq!(
            (duplicate["status"].as_str(), duplicate["attempts"].as_u64()),
            (Some("duplicate"), Some(2))
        );
        assert_eq!(
            status_json("r", Some(MarkOutcome::NotEligible))["status"],
            "not_eligible"
        );
    }
}
