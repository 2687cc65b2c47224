//! The voter registry: who may vote on a law, and who already has.
//!
//! The registry holds two sets of [`VoterHash`]es: the eligible set, loaded
//! from the shard files before polls open, and the voted set, filled as
//! ballots are accepted. Accepting a ballot must test eligibility and record
//! the vote in one indivisible step; two racing requests for the same voter
//! (a double click, a retry, a replayed code) must yield exactly one
//! acceptance. Both adapters therefore expose that step as
//! [`VoterRegistry::check_and_mark`] and implement it atomically: under a
//! mutex in memory, and as a single Lua script in Redis.
//!
//! Repeated attempts are counted per voter so fraud monitoring can spot codes
//! being replayed. The voted set is a cache of the audit log: if Redis loses
//! it, [`VoterRegistry::clear_voted`] then [`VoterRegistry::mark_voted`]
//! rebuild it from the log.
//!
//! The pipeline's validators present votes through [`VoterRegistry::decide`],
//! which also remembers each request's outcome: a validator that crashes after
//! deciding but before passing the vote on gets the same answer when the vote
//! is redelivered, instead of a "duplicate" that would lose the vote. The
//! remembered outcomes also answer the voter's status requests.
//!
//! The trait returns boxed futures rather than using `async fn` so that it
//! stays object-safe (`Arc<dyn VoterRegistry>`) without extra crates.

use std::collections::{HashMap, HashSet};
use std::future::{ready, Future};
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard, PoisonError};

use redis::aio::ConnectionManager;
use redis::{RedisWrite, Script, ToRedisArgs};

use super::voter_hash::VoterHash;

/// A boxed, sendable future borrowing the registry.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The result of presenting a voter hash at the ballot box.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkOutcome {
    /// Eligible and not yet voted; now recorded as voted.
    Accepted,
    /// Already voted; `attempts` counts repeated attempts so far, this one included.
    Duplicate { attempts: u64 },
    /// Not in the eligible set.
    NotEligible,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("registry script returned unexpected value {0}")]
    UnexpectedReply(i64),
    #[error("registry database: {0}")]
    Sql(#[from] sqlx::Error),
}

/// Storage for the eligible and voted sets.
pub trait VoterRegistry: Send + Sync + 'static {
    /// Adds hashes to the eligible set; returns how many were not already in it.
    fn load(&self, hashes: Vec<VoterHash>) -> BoxFuture<'_, Result<u64, RegistryError>>;

    /// Atomically: rejects a hash not in the eligible set, otherwise marks it
    /// voted, or counts a repeated attempt if it already was.
    fn check_and_mark(&self, hash: VoterHash) -> BoxFuture<'_, Result<MarkOutcome, RegistryError>>;

    /// Records hashes as voted without checks, to rebuild from the audit log.
    fn mark_voted(&self, hashes: Vec<VoterHash>) -> BoxFuture<'_, Result<(), RegistryError>>;

    /// [`VoterRegistry::check_and_mark`] for each `(request_id, hash)` in
    /// order, remembering each outcome under its request id. A request id
    /// decided before gets its first outcome back and changes nothing.
    fn decide(
        &self,
        votes: Vec<(String, VoterHash)>,
    ) -> BoxFuture<'_, Result<Vec<MarkOutcome>, RegistryError>>;

    /// The outcome [`VoterRegistry::decide`] remembered for a request, if any.
    fn outcome(
        &self,
        request_id: String,
    ) -> BoxFuture<'_, Result<Option<MarkOutcome>, RegistryError>>;

    /// [`VoterRegistry::outcome`] for many requests at once, in order.
    fn outcomes(
        &self,
        request_ids: Vec<String>,
    ) -> BoxFuture<'_, Result<Vec<Option<MarkOutcome>>, RegistryError>> {
        Box::pin(async move {
            let mut outcomes = Vec::with_capacity(request_ids.len());
            for request_id in request_ids {
                outcomes.push(self.outcome(request_id).await?);
            }
            Ok(outcomes)
        })
    }

    /// The size of the eligible set.
    fn eligible_count(&self) -> BoxFuture<'_, Result<u64, RegistryError>>;

    /// Forgets every vote and repeated-attempt count; the eligible set stays.
    fn clear_voted(&self) -> BoxFuture<'_, Result<(), RegistryError>>;
}

/// An in-process registry, for tests, demos and single-node runs.
#[derive(Debug, Default)]
pub struct MemoryRegistry {
    state: Mutex<MemoryState>,
}

#[derive(Debug, Default)]
struct MemoryState {
    eligible: HashSet<VoterHash>,
    /// Voted hashes and their repeated-attempt counts.
    voted: HashMap<VoterHash, u64>,
    /// Decided requests and their outcomes.
    outcomes: HashMap<String, MarkOutcome>,
}

impl MemoryState {
    fn check_and_mark(&mut self, hash: VoterHash) -> MarkOutcome {
        if !self.eligible.contains(&hash) {
            return MarkOutcome::NotEligible;
        }
        match self.voted.get_mut(&hash) {
            Some(attempts) => {
                *attempts += 1;
                MarkOutcome::Duplicate {
                    attempts: *attempts,
                }
            }
            None => {
                self.voted.insert(hash, 0);
                MarkOutcome::Accepted
            }
        }
    }

    fn decide(&mut self, request_id: String, hash: VoterHash) -> MarkOutcome {
        if let Some(known) = self.outcomes.get(&request_id) {
            return *known;
        }
        let outcome = self.check_and_mark(hash);
        self.outcomes.insert(request_id, outcome);
        outcome
    }
}

impl MemoryRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every operation is a single short critical section that leaves the
    /// state consistent, so a panic elsewhere cannot leave it half-updated
    /// and a poisoned lock is safe to reuse.
    fn state(&self) -> MutexGuard<'_, MemoryState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl VoterRegistry for MemoryRegistry {
    fn load(&self, hashes: Vec<VoterHash>) -> BoxFuture<'_, Result<u64, RegistryError>> {
        let mut state = self.state();
        let added = hashes
            .into_iter()
            .filter(|hash| state.eligible.insert(*hash))
            .count();
        Box::pin(ready(Ok(added as u64)))
    }

    fn check_and_mark(&self, hash: VoterHash) -> BoxFuture<'_, Result<MarkOutcome, RegistryError>> {
        Box::pin(ready(Ok(self.state().check_and_mark(hash))))
    }

    fn mark_voted(&self, hashes: Vec<VoterHash>) -> BoxFuture<'_, Result<(), RegistryError>> {
        let mut state = self.state();
        for hash in hashes {
            state.voted.entry(hash).or_insert(0);
        }
        Box::pin(ready(Ok(())))
    }

    fn decide(
        &self,
        votes: Vec<(String, VoterHash)>,
    ) -> BoxFuture<'_, Result<Vec<MarkOutcome>, RegistryError>> {
        let mut state = self.state();
        let outcomes = votes
            .into_iter()
            .map(|(request_id, hash)| state.decide(request_id, hash))
            .collect();
        Box::pin(ready(Ok(outcomes)))
    }

    fn outcome(
        &self,
        request_id: String,
    ) -> BoxFuture<'_, Result<Option<MarkOutcome>, RegistryError>> {
        Box::pin(ready(Ok(self.state().outcomes.get(&request_id).copied())))
    }

    fn eligible_count(&self) -> BoxFuture<'_, Result<u64, RegistryError>> {
        Box::pin(ready(Ok(self.state().eligible.len() as u64)))
    }

    fn clear_voted(&self) -> BoxFuture<'_, Result<(), RegistryError>> {
        self.state().voted.clear();
        Box::pin(ready(Ok(())))
    }
}

/// Hashes per `SADD` command when loading.
const SADD_BATCH: usize = 10_000;
/// `SADD` commands sent per pipelined round trip (bounds request size to a few MiB).
const SADD_PER_PIPELINE: usize = 4;
/// Keys examined per `SCAN` step when clearing duplicate counters.
const SCAN_COUNT: usize = 1_000;

/// Returns -1 if not eligible, 0 if newly marked, else the repeated-attempt count.
/// KEYS: valid set, voted set, this hash's duplicate counter. ARGV: the hash.
const CHECK_AND_MARK_LUA: &str = r"
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then
  return -1
end
if redis.call('SADD', KEYS[2], ARGV[1]) == 1 then
  return 0
end
return redis.call('INCR', KEYS[3])
";

/// [`CHECK_AND_MARK_LUA`] that first returns, and afterwards remembers for
/// ARGV[2] seconds, the request's outcome. KEYS: as above, then the request's
/// outcome key. ARGV: the hash, the outcome's time to live.
const DECIDE_LUA: &str = r"
local known = redis.call('GET', KEYS[4])
if known then
  return tonumber(known)
end
local outcome
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then
  outcome = -1
elseif redis.call('SADD', KEYS[2], ARGV[1]) == 1 then
  outcome = 0
else
  outcome = redis.call('INCR', KEYS[3])
end
redis.call('SET', KEYS[4], outcome, 'EX', ARGV[2])
return outcome
";

/// How long a request's outcome stays answerable: the referendum's day, and more.
pub const OUTCOME_TTL_SECS: u64 = 7 * 24 * 3600;

/// A registry shared by every service replica, kept in Redis.
///
/// Keys, all under a configurable prefix so several elections or test runs
/// can share a server: `{prefix}valid_hashes` and `{prefix}voted_hashes`
/// (sets of lowercase hex hashes) and `{prefix}duplicate_count:{hash}`.
#[derive(Clone)]
pub struct RedisRegistry {
    connection: ConnectionManager,
    keys: Keys,
    check_and_mark: Script,
    decide: Script,
}

#[derive(Debug, Clone)]
struct Keys {
    prefix: String,
    valid: String,
    voted: String,
}

impl Keys {
    fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_owned(),
            valid: format!("{prefix}valid_hashes"),
            voted: format!("{prefix}voted_hashes"),
        }
    }

    fn outcome(&self, request_id: &str) -> String {
        format!("{}outcome:{request_id}", self.prefix)
    }

    fn duplicate_count(&self, hash: &VoterHash) -> String {
        format!("{}duplicate_count:{hash}", self.prefix)
    }

    /// A `SCAN MATCH` pattern for every duplicate counter.
    fn duplicate_count_pattern(&self) -> String {
        format!("{}duplicate_count:*", glob_escape(&self.prefix))
    }
}

impl RedisRegistry {
    /// Connects to `url` (e.g. `redis://127.0.0.1:6379`); the connection
    /// reconnects by itself after transient failures.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, RegistryError> {
        let client = redis::Client::open(url)?;
        let connection = ConnectionManager::new(client).await?;
        Ok(Self::new(connection, prefix))
    }

    pub fn new(connection: ConnectionManager, prefix: &str) -> Self {
        RedisRegistry {
            connection,
            keys: Keys::new(prefix),
            check_and_mark: Script::new(CHECK_AND_MARK_LUA),
            decide: Script::new(DECIDE_LUA),
        }
    }

    /// `SADD`s `hashes` to `key` in pipelined batches; returns how many were new.
    async fn add_in_batches(&self, key: &str, hashes: &[VoterHash]) -> Result<u64, RegistryError> {
        let mut connection = self.connection.clone();
        let mut added = 0;
        for round_trip in hashes.chunks(SADD_BATCH * SADD_PER_PIPELINE) {
            let mut pipe = redis::pipe();
            for batch in round_trip.chunks(SADD_BATCH) {
                pipe.cmd("SADD").arg(key).arg(batch);
            }
            let counts: Vec<u64> = pipe.query_async(&mut connection).await?;
            added += counts.iter().sum::<u64>();
        }
        Ok(added)
    }

    /// Every vote's script call in one pipelined round trip; each call is
    /// atomic on its own, which is all a vote needs.
    async fn decide_pipelined(
        &self,
        votes: &[(String, VoterHash)],
    ) -> Result<Vec<MarkOutcome>, RegistryError> {
        let mut pipe = redis::pipe();
        pipe.load_script(&self.decide).ignore();
        for (request_id, hash) in votes {
            pipe.invoke_script(
                self.decide
                    .key(&self.keys.valid)
                    .key(&self.keys.voted)
                    .key(self.keys.duplicate_count(hash))
                    .key(self.keys.outcome(request_id))
                    .arg(hash)
                    .arg(OUTCOME_TTL_SECS),
            );
        }
        let mut connection = self.connection.clone();
        let replies: Vec<i64> = pipe.query_async(&mut connection).await?;
        replies.into_iter().map(outcome_from_reply).collect()
    }

    async fn delete_duplicate_counters(&self) -> Result<(), RegistryError> {
        let mut connection = self.connection.clone();
        let pattern = self.keys.duplicate_count_pattern();
        let mut cursor = 0_u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .cursor_arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .query_async(&mut connection)
                .await?;
            if !keys.is_empty() {
                redis::cmd("UNLINK")
                    .arg(keys)
                    .exec_async(&mut connection)
                    .await?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}

impl VoterRegistry for RedisRegistry {
    fn load(&self, hashes: Vec<VoterHash>) -> BoxFuture<'_, Result<u64, RegistryError>> {
        Box::pin(async move { self.add_in_batches(&self.keys.valid, &hashes).await })
    }

    fn check_and_mark(&self, hash: VoterHash) -> BoxFuture<'_, Result<MarkOutcome, RegistryError>> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let reply: i64 = self
                .check_and_mark
                .key(&self.keys.valid)
                .key(&self.keys.voted)
                .key(self.keys.duplicate_count(&hash))
                .arg(hash)
                .invoke_async(&mut connection)
                .await?;
            outcome_from_reply(reply)
        })
    }

    fn mark_voted(&self, hashes: Vec<VoterHash>) -> BoxFuture<'_, Result<(), RegistryError>> {
        Box::pin(async move {
            self.add_in_batches(&self.keys.voted, &hashes).await?;
            Ok(())
        })
    }

    fn decide(
        &self,
        votes: Vec<(String, VoterHash)>,
    ) -> BoxFuture<'_, Result<Vec<MarkOutcome>, RegistryError>> {
        Box::pin(async move {
            if votes.is_empty() {
                return Ok(Vec::new());
            }
            self.decide_pipelined(&votes).await
        })
    }

    fn outcome(
        &self,
        request_id: String,
    ) -> BoxFuture<'_, Result<Option<MarkOutcome>, RegistryError>> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let reply: Option<i64> = redis::cmd("GET")
                .arg(self.keys.outcome(&request_id))
                .query_async(&mut connection)
                .await?;
            reply.map(outcome_from_reply).transpose()
        })
    }

    fn outcomes(
        &self,
        request_ids: Vec<String>,
    ) -> BoxFuture<'_, Result<Vec<Option<MarkOutcome>>, RegistryError>> {
        Box::pin(async move {
            if request_ids.is_empty() {
                return Ok(Vec::new());
            }
            let keys: Vec<String> = request_ids.iter().map(|id| self.keys.outcome(id)).collect();
            let mut connection = self.connection.clone();
            let replies: Vec<Option<i64>> = redis::cmd("MGET")
                .arg(keys)
                .query_async(&mut connection)
                .await?;
            replies
                .into_iter()
                .map(|reply| reply.map(outcome_from_reply).transpose())
                .collect()
        })
    }

    fn eligible_count(&self) -> BoxFuture<'_, Result<u64, RegistryError>> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let count = redis::cmd("SCARD")
                .arg(&self.keys.valid)
                .query_async(&mut connection)
                .await?;
            Ok(count)
        })
    }

    fn clear_voted(&self) -> BoxFuture<'_, Result<(), RegistryError>> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            redis::cmd("UNLINK")
                .arg(&self.keys.voted)
                .exec_async(&mut connection)
                .await?;
            self.delete_duplicate_counters().await
        })
    }
}

fn outcome_from_reply(reply: i64) -> Result<MarkOutcome, RegistryError> {
    match reply {
        -1 => Ok(MarkOutcome::NotEligible),
        0 => Ok(MarkOutcome::Accepted),
        attempts if attempts > 0 => Ok(MarkOutcome::Duplicate {
            attempts: attempts.unsigned_abs(),
        }),
        other => Err(RegistryError::UnexpectedReply(other)),
    }
}

/// Escapes Redis glob metacharacters so a prefix matches only itself.
fn glob_escape(literal: &str) -> String {
    let mut escaped = String::with_capacity(literal.len());
    for c in literal.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Hashes are stored in Redis in their canonical lowercase hex form, which
/// keeps keys and set members readable with `redis-cli`.
impl ToRedisArgs for VoterHash {
    fn write_redis_args<W: ?Sized + RedisWrite>(&self, out: &mut W) {
        out.write_arg(&self.to_hex_bytes());
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::sync::Barrier;

    use super::*;

    fn hash(n: u32) -> VoterHash {
        let mut bytes = [0; 32];
        bytes[..4].copy_from_slice(&n.to_be_bytes());
        VoterHash::from_bytes(bytes)
    }

    fn hashes(range: std::ops::Range<u32>) -> Vec<VoterHash> {
        range.map(hash).collect()
    }

    /// How every adapter must decide requests, on an empty registry.
    pub(crate) async fn check_decide_contract(registry: &dyn VoterRegistry) {
        registry.load(hashes(0..2)).await.unwrap();
        let request = |n: u32| format!("vote-{n}");
        let votes = vec![
            (request(1), hash(0)),
            (request(2), hash(0)),
            (request(3), hash(9)),
            (request(4), hash(0)),
        ];
        let expected = vec![
            MarkOutcome::Accepted,
            MarkOutcome::Duplicate { attempts: 1 },
            MarkOutcome::NotEligible,
            MarkOutcome::Duplicate { attempts: 2 },
        ];
        assert_eq!(registry.decide(votes.clone()).await.unwrap(), expected);
        assert_eq!(
            registry.decide(votes).await.unwrap(),
            expected,
            "a replay changes nothing"
        );
        assert_eq!(registry.decide(vec![]).await.unwrap(), vec![]);
        assert_eq!(
            registry.outcome(request(2)).await.unwrap(),
            Some(MarkOutcome::Duplicate { attempts: 1 })
        );
        assert_eq!(registry.outcome(request(5)).await.unwrap(), None);
        assert_eq!(
            registry
                .outcomes(vec![request(3), request(5)])
                .await
                .unwrap(),
            vec![Some(MarkOutcome::NotEligible), None]
        );
        let next = registry.decide(vec![(request(5), hash(0))]).await.unwrap();
        assert_eq!(next, vec![MarkOutcome::Duplicate { attempts: 3 }]);
    }

    /// The behaviour every adapter must have, on an empty registry.
    pub(crate) async fn check_contract(registry: &dyn VoterRegistry) {
        assert_eq!(registry.load(vec![]).await.unwrap(), 0);
        assert_eq!(registry.load(hashes(0..3)).await.unwrap(), 3);
        assert_eq!(registry.load(hashes(2..5)).await.unwrap(), 2);
        assert_eq!(registry.eligible_count().await.unwrap(), 5);

        let mark = |n| registry.check_and_mark(hash(n));
        assert_eq!(mark(99).await.unwrap(), MarkOutcome::NotEligible);
        assert_eq!(mark(0).await.unwrap(), MarkOutcome::Accepted);
        assert_eq!(
            mark(0).await.unwrap(),
            MarkOutcome::Duplicate { attempts: 1 }
        );
        assert_eq!(
            mark(0).await.unwrap(),
            MarkOutcome::Duplicate { attempts: 2 }
        );
        assert_eq!(mark(1).await.unwrap(), MarkOutcome::Accepted);
        assert_eq!(mark(99).await.unwrap(), MarkOutcome::NotEligible);

        registry.clear_voted().await.unwrap();
        assert_eq!(registry.eligible_count().await.unwrap(), 5);
        assert_eq!(mark(1).await.unwrap(), MarkOutcome::Accepted);
        assert_eq!(
            mark(1).await.unwrap(),
            MarkOutcome::Duplicate { attempts: 1 }
        );

        registry.clear_voted().await.unwrap();
        registry.mark_voted(vec![hash(0), hash(2)]).await.unwrap();
        registry.mark_voted(vec![]).await.unwrap();
        assert_eq!(
            mark(0).await.unwrap(),
            MarkOutcome::Duplicate { attempts: 1 }
        );
        assert_eq!(
            mark(2).await.unwrap(),
            MarkOutcome::Duplicate { attempts: 1 }
        );
        assert_eq!(mark(1).await.unwrap(), MarkOutcome::Accepted);
    }

    /// Every task presents the same eligible hash at once, each through its own
    /// registry handle (`handles` share one underlying store).
    pub(crate) async fn check_race_accepts_once(handles: Vec<Arc<dyn VoterRegistry>>) {
        let target = hash(7);
        handles[0].load(vec![target]).await.unwrap();
        let barrier = Arc::new(Barrier::new(handles.len()));
        let tasks: Vec<_> = handles
            .into_iter()
            .map(|registry| {
                let barrier = Arc::clone(&barrier);
                tokio::spawn(async move {
                    barrier.wait().await;
                    registry.check_and_mark(target).await.unwrap()
                })
            })
            .collect();
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap());
        }
        let accepted = outcomes
            .iter()
            .filter(|o| **o == MarkOutcome::Accepted)
            .count();
        assert_eq!(accepted, 1, "{outcomes:?}");
        let mut attempts: Vec<u64> = outcomes
            .iter()
            .filter_map(|outcome| match outcome {
                MarkOutcome::Duplicate { attempts } => Some(*attempts),
                _ => None,
            })
            .collect();
        attempts.sort_unstable();
        let expected: Vec<u64> = (1..=attempts.len() as u64).collect();
        assert_eq!(attempts, expected);
    }

    #[tokio::test]
    async fn memory_registry_honours_the_contract() {
        check_contract(&MemoryRegistry::new()).await;
    }

    #[tokio::test]
    async fn memory_registry_decides_requests_once() {
        check_decide_contract(&MemoryRegistry::new()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn memory_registry_accepts_a_raced_hash_once() {
        let registry: Arc<dyn VoterRegistry> = Arc::new(MemoryRegistry::new());
        check_race_accepts_once(vec![registry; 32]).await;
    }

    #[test]
    fn script_replies_map_to_outcomes() {
        assert_eq!(outcome_from_reply(-1).unwrap(), MarkOutcome::NotEligible);
        assert_eq!(outcome_from_reply(0).unwrap(), MarkOutcome::Accepted);
        assert_eq!(
            outcome_from_reply(3).unwrap(),
            MarkOutcome::Duplicate { attempts: 3 }
        );
        assert!(matches!(
            outcome_from_reply(-2),
            Err(RegistryError::UnexpectedReply(-2))
        ));
    }

    #[test]
    fn redis_keys_follow_the_documented_layout() {
        let keys = Keys::new("amarvote:");
        assert_eq!(keys.valid, "amarvote:valid_hashes");
        assert_eq!(keys.voted, "amarvote:voted_hashes");
        let counter = keys.duplicate_count(&hash(1));
        assert_eq!(
            counter,
            format!("amarvote:duplicate_count:{}", hash(1).to_hex())
        );
        assert_eq!(
            Keys::new("a*[b]?\\:").duplicate_count_pattern(),
            "a\\*\\[b\\]\\?\\\\:duplicate_count:*"
        );
    }

    fn redis_url() -> String {
        std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
    }

    /// Connects to the test Redis server, failing loudly if there is none.
    async fn connect_redis(prefix: &str) -> RedisRegistry {
        let url = redis_url();
        let connecting = RedisRegistry::connect(&url, prefix);
        match tokio::time::timeout(Duration::from_secs(5), connecting).await {
            Ok(Ok(registry)) => registry,
            Ok(Err(err)) => panic!("Redis tests need a server at {url} (set REDIS_URL): {err}"),
            Err(_) => panic!("Redis tests need a server at {url} (set REDIS_URL): timed out"),
        }
    }

    /// Keys under `prefix`, found with `SCAN` (never `KEYS` on a shared server).
    async fn keys_under(registry: &RedisRegistry, prefix: &str) -> Vec<String> {
        let mut connection = registry.connection.clone();
        let pattern = format!("{}*", glob_escape(prefix));
        let mut found = Vec::new();
        let mut cursor = 0_u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .cursor_arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .query_async(&mut connection)
                .await
                .unwrap();
            found.extend(keys);
            if next == 0 {
                return found;
            }
            cursor = next;
        }
    }

    /// Runs `test` with a fresh random key prefix, then deletes every key under
    /// it, whether or not the test panicked.
    async fn with_redis_prefix<F, Fut>(test: F)
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut random = [0; 8];
        openssl::rand::rand_bytes(&mut random).unwrap();
        let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let prefix = format!("amarvote-test-{suffix}:");
        let outcome = tokio::spawn(test(prefix.clone())).await;
        let registry = connect_redis(&prefix).await;
        let keys = keys_under(&registry, &prefix).await;
        if !keys.is_empty() {
            let mut connection = registry.connection.clone();
            redis::cmd("UNLINK")
                .arg(keys)
                .exec_async(&mut connection)
                .await
                .unwrap();
        }
        if let Err(err) = outcome {
            std::panic::resume_unwind(err.into_panic());
        }
    }

    #[tokio::test]
    async fn redis_registry_honours_the_contract() {
        with_redis_prefix(|prefix| async move {
            check_contract(&connect_redis(&prefix).await).await;
        })
        .await;
    }

    #[tokio::test]
    async fn redis_registry_decides_requests_once() {
        with_redis_prefix(|prefix| async move {
            check_decide_contract(&connect_redis(&prefix).await).await;
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn redis_registry_accepts_a_raced_hash_once_across_connections() {
        with_redis_prefix(|prefix| async move {
            let mut handles: Vec<Arc<dyn VoterRegistry>> = Vec::new();
            for _ in 0..4 {
                let registry: Arc<dyn VoterRegistry> = Arc::new(connect_redis(&prefix).await);
                handles.extend(std::iter::repeat_n(registry, 8));
            }
            check_race_accepts_once(handles).await;
        })
        .await;
    }

    #[tokio::test]
    async fn redis_load_spans_several_batches_and_pipelines() {
        with_redis_prefix(|prefix| async move {
            let registry = connect_redis(&prefix).await;
            let count = (SADD_BATCH * SADD_PER_PIPELINE + SADD_BATCH / 2) as u32;
            assert_eq!(
                registry.load(hashes(0..count)).await.unwrap(),
                u64::from(count)
            );
            assert_eq!(
                registry.load(hashes(count - 10..count + 10)).await.unwrap(),
                10
            );
            assert_eq!(
                registry.eligible_count().await.unwrap(),
                u64::from(count) + 10
            );
            assert_eq!(
                registry.check_and_mark(hash(count - 1)).await.unwrap(),
                MarkOutcome::Accepted
            );
        })
        .await;
    }

    #[tokio::test]
    async fn redis_stores_hex_hashes_under_the_prefix_and_clear_voted_removes_counters() {
        with_redis_prefix(|prefix| async move {
            let registry = connect_redis(&prefix).await;
            registry.load(hashes(0..3)).await.unwrap();
            for n in [0, 0, 1, 1, 1] {
                registry.check_and_mark(hash(n)).await.unwrap();
            }
            let mut connection = registry.connection.clone();
            let voted: HashSet<String> = redis::cmd("SMEMBERS")
                .arg(format!("{prefix}voted_hashes"))
                .query_async(&mut connection)
                .await
                .unwrap();
            assert_eq!(voted, HashSet::from([hash(0).to_hex(), hash(1).to_hex()]));
            let counter: u64 = redis::cmd("GET")
                .arg(format!("{prefix}duplicate_count:{}", hash(1)))
                .query_async(&mut connection)
                .await
                .unwrap();
            assert_eq!(counter, 2);

            registry.clear_voted().await.unwrap();
            let left = keys_under(&registry, &prefix).await;
            assert_eq!(left, vec![format!("{prefix}valid_hashes")]);
        })
        .await;
    }
}
