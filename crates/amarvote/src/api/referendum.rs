//! The referendum's HTTP API: vote submission (202), outcome and results
//! lookups, and the administrator's setup endpoints.
//!
//! `POST /api/v1/vote` checks the request's format, reduces NAS and code to
//! the keyed voter hash at once (they are never stored, queued or logged),
//! publishes the vote to the validation stream and answers 202 with a request
//! id once the publish is durable. Publishing one message per request would
//! cost a disk sync or broker confirm per vote, so requests hand their message
//! to a [`Publisher`] task that publishes everything queued up meanwhile as
//! one batch: under load, batches grow by themselves, with no fixed delay. The
//! publisher gives each batch its ingestion sequence numbers just before
//! publishing it, so a vote sent after another's 202 always has the larger one
//! (which decides which of a voter's attempts counts: see
//! [`crate::ports::voter_registry`]).
//!
//! Routes:
//! - `POST /api/v1/vote` `{nas, code, law_id, vote}` (an object with exactly
//!   these fields) → 202 `{request_id}`; 400 naming the field at fault.
//! - `GET /api/v1/vote/{request_id}` → `{request_id, status, attempts?}`,
//!   status `pending`, `accepted`, `duplicate`, `not_eligible` or `locked`;
//!   404 for an id this referendum never issued (ids carry a keyed tag).
//! - `POST /api/v1/votes/status` `{request_ids}` → `{statuses: [...]}`, the
//!   same for up to [`MAX_STATUS_BATCH`] requests (`not_found` for ids never issued).
//! - `GET /api/v1/results/{law_id}` → `{law_id, oui, non, audited}`.
//! - `GET /api/v1/health` → `{status, registry}`: `degraded` while the voter
//!   registry is missing or not rebuilt (votes are then kept queued).
//! - Administrator (bearer token; 401 without, 403 wrong): `POST /api/v1/admin/laws`
//!   `{law_id, title?}`, `POST /api/v1/admin/voters` `{voters: [{nas, code, law_id}]}`
//!   (hashed here, so the election secret never leaves the server),
//!   `GET /api/v1/admin/referendum/summary` (queue depths, duplicates, locks),
//!   `GET /api/v1/admin/locks` and `POST /api/v1/admin/locks/lift` `{nas, law_id}`
//!   or `{lock_id}`.
//!
//! Errors are the election API's one shape ([`ApiError`]). Every route
//! is rate limited per client address (GCRA, 429 with `Retry-After`); that needs
//! the server to be run with `into_make_service_with_connect_info::<SocketAddr>()`,
//! and without it all clients share one budget.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::edge::{check_admin_token, parse_body, Admin, ApiError};
use super::openapi::ErrorBody;
use super::rate_limit::{client_address, too_many_requests, RateLimiter};
use crate::domain::vote_messages::{encode, VoteMessage};
use crate::domain::voter_hash::{
    validate_law_id, Choice, InputError, LockKey, VoterHash, VoterHasher,
};
use crate::domain::{hex, now_ms};
use crate::metrics::referendum::ReferendumMetrics;
use crate::ports::vote_queue::{Stream, VoteQueue};
use crate::ports::vote_store::{VoteStore, VoteStoreError};
use crate::ports::voter_registry::{
    CodeLock, MarkOutcome, Readiness, RegistryState, VoterRegistry,
};
use crate::referendum::laws::Laws;
use crate::referendum::validate::status_name;
use crate::referendum::VoteLimits;

/// Most request ids in one status request.
pub const MAX_STATUS_BATCH: usize = 1_000;
/// Most voters in one administrator load request (about 1.4 MB, under the
/// server's 2 MB body limit).
pub const MAX_VOTER_BATCH: usize = 20_000;
/// Longest law title, in characters.
const MAX_LAW_TITLE_CHARS: usize = 256;
/// Most messages in one publish.
const PUBLISH_BATCH: usize = 2_000;
/// Requests waiting for the publisher before new ones wait for room.
const PUBLISH_BACKLOG: usize = 20_000;
/// Sequence numbers the embedded mode's one process reserves at a time.
const SEQUENCE_BLOCK: u64 = 100_000;

/// Everything the referendum routes need.
pub struct IngestState {
    pub hasher: VoterHasher,
    pub laws: Laws,
    pub tables: Arc<dyn VoteStore>,
    pub registry: Arc<dyn VoterRegistry>,
    pub queue: Arc<dyn VoteQueue>,
    pub publisher: Publisher,
    pub metrics: Arc<ReferendumMetrics>,
    pub limiter: RateLimiter,
    pub trusted_proxies: Vec<IpAddr>,
    pub admin_token: String,
}

impl IngestState {
    /// The state of one ingestion process; `exclusive` when it is the only
    /// process publishing votes to this database (the embedded mode).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        hasher: VoterHasher,
        tables: Arc<dyn VoteStore>,
        registry: Arc<dyn VoterRegistry>,
        queue: Arc<dyn VoteQueue>,
        metrics: Arc<ReferendumMetrics>,
        limits: &VoteLimits,
        admin_token: String,
        exclusive: bool,
    ) -> Self {
        let block = if exclusive { SEQUENCE_BLOCK } else { 0 };
        let sequencer = Sequencer::new(tables.clone(), block);
        IngestState {
            hasher,
            laws: Laws::new(tables.clone()),
            tables,
            registry,
            publisher: Publisher::spawn(queue.clone(), Stream::Validation, sequencer),
            queue,
            metrics,
            limiter: RateLimiter::new(limits.per_client),
            trusted_proxies: limits.trusted_proxies.clone(),
            admin_token,
        }
    }
}

pub(super) type Shared = Arc<IngestState>;

/// The one administrator rule, against the referendum's token.
impl FromRequestParts<Shared> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Admin, ApiError> {
        check_admin_token(&state.admin_token, &parts.headers).map(|()| Admin)
    }
}
type ApiResult<T> = Result<T, ApiError>;

/// The referendum's routes with their descriptions (see [`super::openapi`]).
pub(super) fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .routes(routes!(submit_vote))
        .routes(routes!(vote_outcome))
        .routes(routes!(statuses))
        .routes(routes!(law_results))
        .routes(routes!(laws))
        .routes(routes!(health))
        .routes(routes!(create_law))
        .routes(routes!(load_voters))
        .routes(routes!(referendum_summary))
        .routes(routes!(locks))
        .routes(routes!(lift_lock))
}

/// The referendum routes, ready to be merged into a server.
pub fn router(state: Shared) -> Router {
    let (routes, _) = routes().split_for_parts();
    routes
        .route_layer(middleware::from_fn_with_state(state.clone(), rate_limit))
        .with_state(state)
}

/// Hands out ingestion sequence numbers, reserved in the database: per batch
/// when several processes publish (each reservation follows every earlier one),
/// or in blocks when one process does (it alone hands them out, in order, and a
/// restart reserves a new block above the last).
pub struct Sequencer {
    tables: Arc<dyn VoteStore>,
    block: u64,
    next: u64,
    end: u64,
}

impl Sequencer {
    pub fn new(tables: Arc<dyn VoteStore>, block: u64) -> Self {
        Sequencer {
            tables,
            block,
            next: 0,
            end: 0,
        }
    }

    /// The first of `n` consecutive numbers, larger than any handed out before.
    pub async fn reserve(&mut self, n: u64) -> Result<u64, VoteStoreError> {
        if self.block == 0 {
            return self.tables.reserve_sequences(n).await;
        }
        if self.end - self.next < n {
            let size = self.block.max(n);
            self.next = self.tables.reserve_sequences(size).await?;
            self.end = self.next + size;
        }
        let first = self.next;
        self.next += n;
        Ok(first)
    }
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

type Waiting = (VoteMessage, oneshot::Sender<bool>);

/// Hands votes to the publisher task and waits for their batch's publish.
#[derive(Clone)]
pub struct Publisher {
    sender: mpsc::Sender<Waiting>,
}

impl Publisher {
    /// Starts the publisher task on `stream`; it ends when every `Publisher`
    /// clone is dropped, after publishing what it was handed.
    pub fn spawn(queue: Arc<dyn VoteQueue>, stream: Stream, sequencer: Sequencer) -> Self {
        let (sender, receiver) = mpsc::channel(PUBLISH_BACKLOG);
        tokio::spawn(publish_batches(queue, stream, sequencer, receiver));
        Publisher { sender }
    }

    /// True once the vote is durably published (its sequence number assigned).
    pub async fn publish(&self, vote: VoteMessage) -> bool {
        let (done, published) = oneshot::channel();
        if self.sender.send((vote, done)).await.is_err() {
            return false;
        }
        published.await.unwrap_or(false)
    }
}

async fn publish_batches(
    queue: Arc<dyn VoteQueue>,
    stream: Stream,
    mut sequencer: Sequencer,
    mut receiver: mpsc::Receiver<Waiting>,
) {
    let mut waiting = Vec::with_capacity(PUBLISH_BATCH);
    while receiver.recv_many(&mut waiting, PUBLISH_BATCH).await > 0 {
        let (mut votes, replies): (Vec<_>, Vec<_>) = waiting.drain(..).unzip();
        let published = match sequencer.reserve(votes.len() as u64).await {
            Ok(first) => {
                let bodies: Vec<Vec<u8>> = votes
                    .iter_mut()
                    .zip(first..)
                    .map(|(vote, sequence)| {
                        vote.sequence = sequence;
                        encode(vote)
                    })
                    .collect();
                publish_patiently(&*queue, stream, &bodies).await
            }
            Err(err) => {
                tracing::error!(%err, votes = votes.len(), "no sequence numbers for the votes");
                false
            }
        };
        for reply in replies {
            let _ = reply.send(published);
        }
    }
}

fn internal(err: impl std::fmt::Display) -> ApiError {
    tracing::error!(%err, "referendum request failed");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily unavailable; try again",
    )
}

fn bad_input(err: InputError) -> ApiError {
    ApiError::bad_field(err.field(), err.to_string())
}

async fn rate_limit(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    let client = client_address(peer, request.headers(), &state.trusted_proxies);
    match state.limiter.check(client) {
        Ok(()) => next.run(request).await,
        Err(wait) => {
            state.metrics.rate_limited.inc();
            too_many_requests(wait, "too many requests from this client; slow down")
        }
    }
}

/// A vote request; every field optional to the parser, so that a missing one gets its
/// own message, and required by the contract.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct VoteRequest {
    /// The voter's NAS: 9 digits, spaces and dashes allowed.
    #[schema(required = true, max_length = 32)]
    nas: Option<String>,
    /// The one-time code mailed for this law.
    #[schema(required = true, max_length = 64)]
    code: Option<String>,
    #[schema(required = true, max_length = 64)]
    law_id: Option<String>,
    /// `oui` or `non`.
    #[schema(required = true, pattern = "^(oui|non)$")]
    vote: Option<String>,
}

fn required<'a>(value: &'a Option<String>, field: &'static str) -> Result<&'a str, ApiError> {
    value
        .as_deref()
        .ok_or_else(|| ApiError::bad_field(field, format!("{field} is required")))
}

/// Parses a body that must be a JSON object with the documented fields: serde
/// would otherwise read a JSON array positionally as the same struct.
fn parse_object<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(ApiError::bad_request(
            "the body must be a JSON object with the documented fields",
        ));
    }
    parse_body(body)
}

/// Validates a vote request into its message (NAS and code already hashed;
/// the sequence is given when it is published).
async fn vote_message(state: &IngestState, body: &[u8]) -> Result<VoteMessage, ApiError> {
    let request: VoteRequest = parse_object(body)?;
    let nas = required(&request.nas, "nas")?;
    let code = required(&request.code, "code")?;
    let law_id = validate_law_id(required(&request.law_id, "law_id")?).map_err(bad_input)?;
    let vote: Choice = required(&request.vote, "vote")?
        .parse()
        .map_err(bad_input)?;
    let voter_hash = state.hasher.hash(nas, code, law_id).map_err(bad_input)?;
    let lock_key = state.hasher.lock_key(nas, law_id).map_err(bad_input)?;
    if !state.laws.exists(law_id).await.map_err(internal)? {
        return Err(ApiError::bad_field("law_id", "unknown law_id"));
    }
    Ok(VoteMessage {
        request_id: issue_request_id(&state.hasher),
        voter_hash,
        lock_key,
        law_id: law_id.to_owned(),
        vote,
        sequence: 0,
        received_at: now_ms(),
    })
}

#[derive(Serialize, ToSchema)]
struct VoteAccepted {
    /// Where to ask for the vote's outcome: `vote-` and 40 hex digits.
    request_id: String,
}

/// Submits a vote: checked, hashed and queued durably, then answered 202; the outcome
/// comes later (`GET /api/v1/vote/{request_id}`).
#[utoipa::path(post, path = "/api/v1/vote", tag = "referendum", request_body = VoteRequest,
    responses((status = 202, description = "Queued", body = VoteAccepted),
        (status = 503, description = "The vote could not be queued; try again", body = ErrorBody)))]
async fn submit_vote(
    State(state): State<Shared>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<VoteAccepted>)> {
    let started = Instant::now();
    let message = vote_message(&state, &body).await?;
    let request_id = message.request_id.clone();
    if !state.publisher.publish(message).await {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the vote could not be queued; try again",
        ));
    }
    state.metrics.votes_submitted.inc();
    state
        .metrics
        .submission_seconds
        .observe(started.elapsed().as_secs_f64());
    Ok((StatusCode::ACCEPTED, Json(VoteAccepted { request_id })))
}

/// Random hex digits of a request id, then those of its tag.
const REQUEST_RANDOM_HEX: usize = 24;
const REQUEST_TAG_HEX: usize = 16;

/// A fresh request id: `vote-`, 24 random hex digits, and 16 of their keyed tag.
fn issue_request_id(hasher: &VoterHasher) -> String {
    let mut random = [0u8; REQUEST_RANDOM_HEX / 2];
    openssl::rand::rand_bytes(&mut random).expect("the system random generator works");
    let random = hex(&random);
    let tag = hex(&hasher.request_tag(&random));
    format!("vote-{random}{tag}")
}

/// Request ids are `vote-` and 40 lowercase hex digits.
fn valid_request_id(request_id: &str) -> bool {
    request_id.strip_prefix("vote-").is_some_and(|hex| {
        hex.len() == REQUEST_RANDOM_HEX + REQUEST_TAG_HEX
            && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// True if this referendum's secret issued the (well-formed) id.
fn issued(hasher: &VoterHasher, request_id: &str) -> bool {
    let digits = &request_id["vote-".len()..];
    let (random, tag) = digits.split_at(REQUEST_RANDOM_HEX);
    let expected = hex(&hasher.request_tag(random));
    openssl::memcmp::eq(expected.as_bytes(), tag.as_bytes())
}

/// A vote's outcome as far as it is known.
#[derive(Clone, Serialize, ToSchema)]
struct VoteStatus {
    request_id: String,
    /// `pending`, `accepted`, `duplicate`, `not_eligible` or `locked` (`not_found` in a
    /// batch answer, for an id this referendum never issued).
    status: String,
    /// For a duplicate: how many attempts this voter has made.
    #[serde(skip_serializing_if = "Option::is_none")]
    attempts: Option<u64>,
}

fn vote_status(request_id: &str, outcome: Option<MarkOutcome>) -> VoteStatus {
    let (status, attempts) = match outcome {
        None => ("pending", None),
        Some(MarkOutcome::Duplicate { attempts }) => ("duplicate", Some(attempts)),
        Some(outcome) => (status_name(outcome), None),
    };
    VoteStatus {
        request_id: request_id.to_owned(),
        status: status.to_owned(),
        attempts,
    }
}

/// A vote's request id.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct RequestId {
    /// As the submission answered it: `vote-` and 40 hex digits.
    #[param(pattern = "^vote-[0-9a-f]{40}$")]
    request_id: String,
}

/// A vote's outcome. 404 for a well-formed id this referendum never issued.
#[utoipa::path(get, path = "/api/v1/vote/{request_id}", tag = "referendum", params(RequestId),
    responses((status = 200, description = "The outcome so far", body = VoteStatus),
        (status = 503, description = "Temporarily unavailable", body = ErrorBody)))]
async fn vote_outcome(
    State(state): State<Shared>,
    Path(RequestId { request_id }): Path<RequestId>,
) -> ApiResult<Json<VoteStatus>> {
    if !valid_request_id(&request_id) {
        return Err(ApiError::bad_field(
            "request_id",
            "a request id is vote- and 40 hexadecimal digits",
        ));
    }
    if !issued(&state.hasher, &request_id) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no vote has this request id",
        ));
    }
    let outcome = state
        .registry
        .outcome(request_id.clone())
        .await
        .map_err(internal)?;
    Ok(Json(vote_status(&request_id, outcome)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct StatusRequest {
    #[schema(max_items = 1000, inline)]
    request_ids: Vec<RequestIdText>,
}

/// A request id as the submission answered it.
#[derive(Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(pattern = "^vote-[0-9a-f]{40}$")]
struct RequestIdText(String);

#[derive(Serialize, ToSchema)]
struct VoteStatuses {
    /// One per request id asked, in the order asked.
    statuses: Vec<VoteStatus>,
}

/// The outcomes of up to 1,000 votes at once.
#[utoipa::path(post, path = "/api/v1/votes/status", tag = "referendum", request_body = StatusRequest,
    responses((status = 200, description = "The outcomes", body = VoteStatuses),
        (status = 503, description = "Temporarily unavailable", body = ErrorBody)))]
async fn statuses(State(state): State<Shared>, body: Bytes) -> ApiResult<Json<VoteStatuses>> {
    let request: StatusRequest = parse_object(&body)?;
    let request_ids: Vec<String> = request.request_ids.into_iter().map(|id| id.0).collect();
    if request_ids.len() > MAX_STATUS_BATCH || !request_ids.iter().all(|id| valid_request_id(id)) {
        return Err(ApiError::bad_field(
            "request_ids",
            format!("at most {MAX_STATUS_BATCH} request ids of the form vote-<40 hex>"),
        ));
    }
    let (known, unknown): (Vec<&String>, Vec<&String>) =
        request_ids.iter().partition(|id| issued(&state.hasher, id));
    let outcomes = state
        .registry
        .outcomes(known.iter().map(|id| (*id).clone()).collect())
        .await
        .map_err(internal)?;
    let mut found: BTreeMap<&str, VoteStatus> = known
        .iter()
        .zip(outcomes)
        .map(|(id, outcome)| (id.as_str(), vote_status(id, outcome)))
        .collect();
    for id in unknown {
        let not_found = VoteStatus {
            request_id: id.clone(),
            status: "not_found".into(),
            attempts: None,
        };
        found.insert(id, not_found);
    }
    let statuses = request_ids
        .iter()
        .map(|id| found[id.as_str()].clone())
        .collect();
    Ok(Json(VoteStatuses { statuses }))
}

/// A law.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct LawId {
    /// The law's id: 1 to 64 of a-z, 0-9, `_` and `-`.
    #[param(pattern = "^[a-z0-9_-]{1,64}$")]
    law_id: String,
}

#[derive(Serialize, ToSchema)]
struct LawResults {
    law_id: String,
    oui: u64,
    non: u64,
    /// Voters in the audit log for this law (equal to oui + non once the pipeline is idle).
    audited: u64,
}

/// A law's live count.
#[utoipa::path(get, path = "/api/v1/results/{law_id}", tag = "referendum", params(LawId),
    responses((status = 200, description = "The count so far", body = LawResults),
        (status = 503, description = "Temporarily unavailable", body = ErrorBody)))]
async fn law_results(
    State(state): State<Shared>,
    Path(LawId { law_id }): Path<LawId>,
) -> ApiResult<Json<LawResults>> {
    let law_id = validate_law_id(&law_id).map_err(bad_input)?;
    if !state.laws.exists(law_id).await.map_err(internal)? {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "unknown law_id"));
    }
    let tally = state.tables.results(law_id).await.map_err(internal)?;
    Ok(Json(LawResults {
        law_id: law_id.to_owned(),
        oui: tally.counts.oui,
        non: tally.counts.non,
        audited: tally.audited,
    }))
}

#[derive(Serialize, ToSchema)]
struct LawList {
    laws: Vec<LawTotal>,
}

#[derive(Serialize, ToSchema)]
struct LawTotal {
    law_id: String,
    title: String,
    oui: u64,
    non: u64,
}

/// Every law with its live totals, in the order they were created.
#[utoipa::path(get, path = "/api/v1/laws", tag = "referendum",
    responses((status = 200, description = "The laws", body = LawList),
        (status = 503, description = "Temporarily unavailable", body = ErrorBody)))]
async fn laws(State(state): State<Shared>) -> ApiResult<Json<LawList>> {
    let laws = state.tables.laws().await.map_err(internal)?;
    let laws = laws
        .into_iter()
        .map(|law| LawTotal {
            law_id: law.law_id,
            title: law.title,
            oui: law.counts.oui,
            non: law.counts.non,
        })
        .collect();
    Ok(Json(LawList { laws }))
}

#[derive(Serialize, ToSchema)]
struct ReferendumHealth {
    /// `ok`, or `degraded` while the voter registry cannot decide votes (they are kept).
    status: String,
    /// The registry's marker; null when the registry cannot be reached.
    registry: Option<RegistryState>,
}

/// Healthy enough to take votes; `degraded` (still 200: votes are kept) while the registry
/// cannot decide them.
#[utoipa::path(get, path = "/api/v1/health", tag = "referendum",
    responses((status = 200, description = "The pipeline's health", body = ReferendumHealth)))]
async fn health(State(state): State<Shared>) -> Json<ReferendumHealth> {
    let registry = match state.registry.state().await {
        Ok(registry) => Some(registry),
        Err(err) => {
            tracing::warn!(%err, "cannot read the voter registry's state");
            None
        }
    };
    let ready = registry.is_some_and(|r| r.readiness == Readiness::Ready);
    Json(ReferendumHealth {
        status: if ready { "ok" } else { "degraded" }.into(),
        registry,
    })
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct LawRequest {
    /// 1 to 64 of a-z, 0-9, `_` and `-`.
    #[schema(pattern = "^[a-z0-9_-]{1,64}$")]
    law_id: String,
    #[serde(default)]
    #[schema(max_length = 256)]
    title: String,
}

#[derive(Serialize, ToSchema)]
struct LawCreated {
    law_id: String,
    /// False when the law existed already.
    created: bool,
}

/// Adds a law (201), or finds it there already (200). Administrator only.
#[utoipa::path(post, path = "/api/v1/admin/laws", tag = "referendum administration",
    request_body = LawRequest, security(("bearer" = [])),
    responses((status = 201, description = "Added", body = LawCreated),
        (status = 200, description = "Already there", body = LawCreated),
        (status = 503, description = "Temporarily unavailable", body = ErrorBody)))]
async fn create_law(
    State(state): State<Shared>,
    _admin: Admin,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<LawCreated>)> {
    let request: LawRequest = parse_object(&body)?;
    let law_id = validate_law_id(&request.law_id).map_err(bad_input)?;
    if request.title.chars().count() > MAX_LAW_TITLE_CHARS {
        return Err(ApiError::bad_field(
            "title",
            format!("a title is at most {MAX_LAW_TITLE_CHARS} characters"),
        ));
    }
    let created = state
        .laws
        .create(law_id, &request.title)
        .await
        .map_err(internal)?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(LawCreated {
            law_id: law_id.to_owned(),
            created,
        }),
    ))
}

/// One eligible voter for one law, hashed as it arrives.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VoterRow {
    nas: String,
    code: String,
    law_id: String,
}

/// Rows are objects: a row given positionally, as an array, fails the request.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct VotersRequest {
    /// Rows `{nas, code, law_id}`, checked one by one: a row that is not one (a missing or
    /// unknown field, a NAS or law id out of form) is listed in the answer's `rejected`,
    /// and the others are loaded.
    #[schema(value_type = Vec<Object>, max_items = 20000)]
    voters: Vec<serde_json::Map<String, Value>>,
    /// False on every request of a list sent in several but the last: the
    /// registry is marked loaded (and votes are decided) once the list is complete.
    #[serde(default = "complete_by_default")]
    complete: bool,
}

fn complete_by_default() -> bool {
    true
}

fn voter_row(row: serde_json::Map<String, Value>) -> Result<VoterRow, String> {
    serde_json::from_value(Value::Object(row)).map_err(|err| err.to_string())
}

#[derive(Serialize, ToSchema)]
struct VotersLoaded {
    /// Hashes newly added to the registry.
    added: u64,
    /// The rows refused, by index in the request.
    rejected: Vec<RejectedRow>,
    complete: bool,
}

#[derive(Serialize, ToSchema)]
struct RejectedRow {
    index: usize,
    /// The field at fault, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
    error: String,
}

/// Loads a batch of voters and, unless `complete` is false, writes the registry's marker
/// (a list sent in several requests is marked by its last). Administrator only.
#[utoipa::path(post, path = "/api/v1/admin/voters", tag = "referendum administration",
    request_body = VotersRequest, security(("bearer" = [])),
    responses((status = 200, description = "Loaded", body = VotersLoaded),
        (status = 503, description = "Temporarily unavailable", body = ErrorBody)))]
async fn load_voters(
    State(state): State<Shared>,
    _admin: Admin,
    body: Bytes,
) -> ApiResult<Json<VotersLoaded>> {
    let request: VotersRequest = parse_object(&body)?;
    if request.voters.len() > MAX_VOTER_BATCH {
        return Err(ApiError::bad_field(
            "voters",
            format!("at most {MAX_VOTER_BATCH} voters per request"),
        ));
    }
    let mut hashes = Vec::with_capacity(request.voters.len());
    let mut rejected = Vec::new();
    for (index, row) in request.voters.into_iter().enumerate() {
        let voter = match voter_row(row) {
            Ok(voter) => voter,
            Err(error) => {
                rejected.push(RejectedRow {
                    index,
                    field: None,
                    error,
                });
                continue;
            }
        };
        match state.hasher.hash(&voter.nas, &voter.code, &voter.law_id) {
            Ok(hash) => hashes.push(hash),
            Err(err) => rejected.push(RejectedRow {
                index,
                field: Some(err.field().to_owned()),
                error: err.to_string(),
            }),
        }
    }
    let added = state.registry.load(hashes).await.map_err(internal)?;
    if request.complete {
        let loaded = state.registry.eligible_count().await.map_err(internal)?;
        state.registry.finish_load(loaded).await.map_err(internal)?;
    }
    Ok(Json(VotersLoaded {
        added,
        rejected,
        complete: request.complete,
    }))
}

#[derive(Serialize, ToSchema)]
struct ReferendumSummary {
    /// Messages waiting, per queue.
    queue_depth: BTreeMap<&'static str, u64>,
    /// Messages given up on, per queue.
    dead_letters: BTreeMap<&'static str, u64>,
    /// Voters who tried more than once.
    duplicate_voters: u64,
    duplicate_attempts: u64,
    /// NAS and law pairs locked for wrong codes.
    locked: u64,
    registry: RegistryState,
}

/// The pipeline at a glance: queues, dead letters, duplicates, locks, the registry.
/// Administrator only.
#[utoipa::path(get, path = "/api/v1/admin/referendum/summary", tag = "referendum administration",
    security(("bearer" = [])),
    responses((status = 200, description = "The summary", body = ReferendumSummary),
        (status = 503, description = "Temporarily unavailable", body = ErrorBody)))]
async fn referendum_summary(
    State(state): State<Shared>,
    _admin: Admin,
) -> ApiResult<Json<ReferendumSummary>> {
    let mut depth = BTreeMap::new();
    let mut dead = BTreeMap::new();
    for stream in Stream::ALL {
        let name = stream.queue_name();
        depth.insert(name, state.queue.depth(stream).await.map_err(internal)?);
        dead.insert(
            name,
            state.queue.dead_letters(stream).await.map_err(internal)?,
        );
    }
    let (duplicate_voters, duplicate_attempts) =
        state.tables.duplicate_totals().await.map_err(internal)?;
    let (_, locked) = state.registry.locks().await.map_err(internal)?;
    let registry = state.registry.state().await.map_err(internal)?;
    Ok(Json(ReferendumSummary {
        queue_depth: depth,
        dead_letters: dead,
        duplicate_voters,
        duplicate_attempts,
        locked,
        registry,
    }))
}

#[derive(Serialize, ToSchema)]
struct LockList {
    /// Up to 1,000 locks.
    locks: Vec<CodeLock>,
    total: u64,
}

/// The NAS and law pairs locked out for wrong codes. Administrator only.
#[utoipa::path(get, path = "/api/v1/admin/locks", tag = "referendum administration",
    security(("bearer" = [])),
    responses((status = 200, description = "The locks", body = LockList),
        (status = 503, description = "Temporarily unavailable", body = ErrorBody)))]
async fn locks(State(state): State<Shared>, _admin: Admin) -> ApiResult<Json<LockList>> {
    let (locks, total) = state.registry.locks().await.map_err(internal)?;
    Ok(Json(LockList { locks, total }))
}

/// Which lock to lift: the voter's NAS and law (the voter calls the help line),
/// or a lock id from the listing.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct LiftRequest {
    #[schema(max_length = 32)]
    nas: Option<String>,
    #[schema(pattern = "^[a-z0-9_-]{1,64}$")]
    law_id: Option<String>,
    /// 64 hex digits, as the listing shows it.
    #[schema(pattern = "^[0-9a-fA-F]{64}$")]
    lock_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct LockLifted {
    lifted: bool,
    lock_id: String,
}

fn lock_to_lift(hasher: &VoterHasher, request: &LiftRequest) -> Result<LockKey, ApiError> {
    match (&request.lock_id, &request.nas, &request.law_id) {
        (Some(id), None, None) => VoterHash::from_hex(id)
            .map(LockKey)
            .map_err(|_| ApiError::bad_field("lock_id", "a lock id is 64 hexadecimal digits")),
        (None, Some(nas), Some(law_id)) => hasher.lock_key(nas, law_id).map_err(bad_input),
        _ => Err(ApiError::bad_request(
            "give either lock_id, or nas and law_id",
        )),
    }
}

/// Lifts a code lock. Administrator only.
#[utoipa::path(post, path = "/api/v1/admin/locks/lift", tag = "referendum administration",
    request_body = LiftRequest, security(("bearer" = [])),
    responses((status = 200, description = "Lifted", body = LockLifted),
        (status = 404, description = "No such lock", body = ErrorBody),
        (status = 503, description = "Temporarily unavailable", body = ErrorBody)))]
async fn lift_lock(
    State(state): State<Shared>,
    _admin: Admin,
    body: Bytes,
) -> ApiResult<Json<LockLifted>> {
    let request: LiftRequest = parse_object(&body)?;
    let lock = lock_to_lift(&state.hasher, &request)?;
    if !state.registry.lift_lock(lock).await.map_err(internal)? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no lock for this NAS and law",
        ));
    }
    tracing::info!(lock_id = %lock, "code lock lifted by an administrator");
    Ok(Json(LockLifted {
        lifted: true,
        lock_id: lock.to_hex(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::domain::voter_hash::ElectionSecret;

    #[test]
    fn request_ids_are_checked_before_any_lookup_and_carry_their_issuers_tag() {
        let hasher = VoterHasher::new(&ElectionSecret::from_hex(&"7".repeat(64)).unwrap());
        let other = VoterHasher::new(&ElectionSecret::from_hex(&"8".repeat(64)).unwrap());
        let id = issue_request_id(&hasher);
        assert!(valid_request_id(&id) && issued(&hasher, &id));
        assert!(!issued(&other, &id), "another referendum's id is not ours");
        let forged = format!(
            "{}{}",
            &id[..id.len() - 1],
            if id.ends_with('0') { '1' } else { '0' }
        );
        assert!(valid_request_id(&forged) && !issued(&hasher, &forged));
        for bad in [
            "vote-",
            "vote-XYZ",
            "job-000000000000000000000000",
            "vote-000000000000000000000000",
            &id.to_uppercase(),
        ] {
            assert!(!valid_request_id(bad), "{bad}");
        }
    }

    #[test]
    fn a_vote_body_must_be_an_object_with_only_the_documented_fields() {
        let array = br#"["123456789","ABCD2345","law","oui"]"#;
        assert!(parse_object::<VoteRequest>(array).is_err());
        let extra = br#"{"nas":"123456789","code":"ABCD2345","law_id":"l","vote":"oui","x":1}"#;
        let err = parse_object::<VoteRequest>(extra).err().unwrap();
        assert!(err.message.contains("unknown field"), "{}", err.message);
        let good = br#" {"nas":"123456789","code":"ABCD2345","law_id":"l","vote":"oui"}"#;
        assert!(parse_object::<VoteRequest>(good).is_ok());
    }

    #[test]
    fn statuses_name_the_outcome_and_duplicates_their_attempts() {
        assert_eq!(vote_status("r", None).status, "pending");
        let duplicate = vote_status("r", Some(MarkOutcome::Duplicate { attempts: 2 }));
        assert_eq!(
            (duplicate.status.as_str(), duplicate.attempts),
            ("duplicate", Some(2))
        );
        let not_eligible = vote_status("r", Some(MarkOutcome::NotEligible));
        assert_eq!(not_eligible.status, "not_eligible");
        assert_eq!(vote_status("r", Some(MarkOutcome::Locked)).status, "locked");
        let answer = serde_json::to_value(vote_status("r", None)).unwrap();
        assert_eq!(
            answer,
            serde_json::json!({ "request_id": "r", "status": "pending" })
        );
    }
}
