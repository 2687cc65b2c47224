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
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use super::rate_limit::{client_address, too_many_requests, RateLimiter};
use super::{check_admin_token, parse_body, ApiError};
use crate::domain::vote_messages::{encode, VoteMessage};
use crate::domain::voter_hash::{
    validate_law_id, Choice, InputError, LockKey, VoterHash, VoterHasher,
};
use crate::domain::{hex, now_ms};
use crate::metrics::referendum::ReferendumMetrics;
use crate::ports::vote_queue::{Stream, VoteQueue};
use crate::ports::vote_store::{VoteStore, VoteStoreError};
use crate::ports::voter_registry::{MarkOutcome, Readiness, VoterRegistry};
use crate::referendum::laws::Laws;
use crate::referendum::validate::status_name;
use crate::referendum::VoteLimits;

/// Most request ids in one status request.
pub const MAX_STATUS_BATCH: usize = 1_000;
/// Most voters in one administrator load request (about 1.4 MB, under the
/// server's 2 MB body limit).
pub const MAX_VOTER_BATCH: usize = 20_000;
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

type Shared = Arc<IngestState>;
type ApiResult = Result<Response, ApiError>;

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
        .route("/api/v1/admin/locks", get(locks))
        .route("/api/v1/admin/locks/lift", post(lift_lock))
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

/// A vote request; every field optional so a missing one gets its own message.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VoteRequest {
    nas: Option<String>,
    code: Option<String>,
    law_id: Option<String>,
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

async fn submit(State(state): State<Shared>, body: Bytes) -> ApiResult {
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
    let answer = json!({ "request_id": request_id });
    Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
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
    Ok(Json(status_json(&request_id, outcome)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusRequest {
    request_ids: Vec<String>,
}

async fn statuses(State(state): State<Shared>, body: Bytes) -> ApiResult {
    let request: StatusRequest = parse_object(&body)?;
    if request.request_ids.len() > MAX_STATUS_BATCH
        || !request.request_ids.iter().all(|id| valid_request_id(id))
    {
        return Err(ApiError::bad_field(
            "request_ids",
            format!("at most {MAX_STATUS_BATCH} request ids of the form vote-<40 hex>"),
        ));
    }
    let (known, unknown): (Vec<&String>, Vec<&String>) = request
        .request_ids
        .iter()
        .partition(|id| issued(&state.hasher, id));
    let outcomes = state
        .registry
        .outcomes(known.iter().map(|id| (*id).clone()).collect())
        .await
        .map_err(internal)?;
    let mut found: BTreeMap<&str, Value> = known
        .iter()
        .zip(outcomes)
        .map(|(id, outcome)| (id.as_str(), status_json(id, outcome)))
        .collect();
    for id in unknown {
        found.insert(id, json!({ "request_id": id, "status": "not_found" }));
    }
    let statuses: Vec<Value> = request
        .request_ids
        .iter()
        .map(|id| found[id.as_str()].clone())
        .collect();
    Ok(Json(json!({ "statuses": statuses })).into_response())
}

async fn results(State(state): State<Shared>, Path(law_id): Path<String>) -> ApiResult {
    let law_id = validate_law_id(&law_id).map_err(bad_input)?;
    if !state.laws.exists(law_id).await.map_err(internal)? {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "unknown law_id"));
    }
    let counts = state.tables.results(law_id).await.map_err(internal)?;
    let audited = state.tables.audited(law_id).await.map_err(internal)?;
    let body =
        json!({ "law_id": law_id, "oui": counts.oui, "non": counts.non, "audited": audited });
    Ok(Json(body).into_response())
}

/// Every law with its live totals.
async fn laws(State(state): State<Shared>) -> ApiResult {
    let laws = state.tables.laws().await.map_err(internal)?;
    let list: Vec<Value> = laws
        .iter()
        .map(|law| json!({ "law_id": law.law_id, "title": law.title, "oui": law.counts.oui, "non": law.counts.non }))
        .collect();
    Ok(Json(json!({ "laws": list })).into_response())
}

/// Healthy enough to take votes; `degraded` (still 200: votes are kept) while
/// the registry cannot decide them.
async fn health(State(state): State<Shared>) -> Json<Value> {
    match state.registry.state().await {
        Ok(registry) => {
            let status = if registry.readiness == Readiness::Ready {
                "ok"
            } else {
                "degraded"
            };
            Json(json!({ "status": status, "registry": registry }))
        }
        Err(err) => {
            tracing::warn!(%err, "cannot read the voter registry's state");
            Json(json!({ "status": "degraded", "registry": "unreachable" }))
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LawRequest {
    law_id: String,
    #[serde(default)]
    title: String,
}

async fn create_law(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> ApiResult {
    check_admin_token(&state.admin_token, &headers)?;
    let request: LawRequest = parse_object(&body)?;
    let law_id = validate_law_id(&request.law_id).map_err(bad_input)?;
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
        Json(json!({ "law_id": law_id, "created": created })),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VoterRow {
    nas: String,
    code: String,
    law_id: String,
}

/// Rows are objects: a row given positionally, as an array, fails the request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VotersRequest {
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

/// Loads a batch of voters and, unless `complete` is false, writes the
/// registry's marker (a list sent in several requests is marked by its last).
async fn load_voters(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> ApiResult {
    check_admin_token(&state.admin_token, &headers)?;
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
                rejected.push(json!({ "index": index, "error": error }));
                continue;
            }
        };
        match state.hasher.hash(&voter.nas, &voter.code, &voter.law_id) {
            Ok(hash) => hashes.push(hash),
            Err(err) => rejected
                .push(json!({ "index": index, "field": err.field(), "error": err.to_string() })),
        }
    }
    let added = state.registry.load(hashes).await.map_err(internal)?;
    if request.complete {
        let loaded = state.registry.eligible_count().await.map_err(internal)?;
        state.registry.finish_load(loaded).await.map_err(internal)?;
    }
    Ok(
        Json(json!({ "added": added, "rejected": rejected, "complete": request.complete }))
            .into_response(),
    )
}

async fn summary(State(state): State<Shared>, headers: HeaderMap) -> ApiResult {
    check_admin_token(&state.admin_token, &headers)?;
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
    let body = json!({
        "queue_depth": depth,
        "dead_letters": dead,
        "duplicate_voters": duplicate_voters,
        "duplicate_attempts": duplicate_attempts,
        "locked": locked,
        "registry": registry,
    });
    Ok(Json(body).into_response())
}

async fn locks(State(state): State<Shared>, headers: HeaderMap) -> ApiResult {
    check_admin_token(&state.admin_token, &headers)?;
    let (locks, total) = state.registry.locks().await.map_err(internal)?;
    Ok(Json(json!({ "locks": locks, "total": total })).into_response())
}

/// Which lock to lift: the voter's NAS and law (the voter calls the help line),
/// or a lock id from the listing.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LiftRequest {
    nas: Option<String>,
    law_id: Option<String>,
    lock_id: Option<String>,
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

async fn lift_lock(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> ApiResult {
    check_admin_token(&state.admin_token, &headers)?;
    let request: LiftRequest = parse_object(&body)?;
    let lock = lock_to_lift(&state.hasher, &request)?;
    if !state.registry.lift_lock(lock).await.map_err(internal)? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no lock for this NAS and law",
        ));
    }
    tracing::info!(lock_id = %lock, "code lock lifted by an administrator");
    Ok(Json(json!({ "lifted": true, "lock_id": lock.to_hex() })).into_response())
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
        assert_eq!(
            status_json("r", Some(MarkOutcome::Locked))["status"],
            "locked"
        );
    }
}
