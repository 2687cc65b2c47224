//! The voter registry on Redis, shared by every replica of the referendum's stages:
//! one Lua script per decision, so two racing attempts yield exactly one acceptance.

use redis::aio::ConnectionManager;
use redis::{RedisWrite, Script, ToRedisArgs};

use super::link_tls::LinkUrl;
use crate::domain::now_ms;
use crate::domain::voter_hash::{LockKey, VoterHash};
use crate::ports::voter_registry::*;

impl From<redis::RedisError> for RegistryError {
    fn from(err: redis::RedisError) -> Self {
        RegistryError::Backend(format!("redis: {err}"))
    }
}

/// Hashes per `SADD` command when loading.
const SADD_BATCH: usize = 10_000;
/// `SADD` commands sent per pipelined round trip (bounds request size to a few MiB).
const SADD_PER_PIPELINE: usize = 4;
/// Script calls per pipelined round trip when restoring.
const RESTORE_BATCH: usize = 5_000;
/// How long one process may hold the right to rebuild.
const REBUILD_LEASE_SECS: u64 = 60;

/// The earliest-wins rule, shared by the decide and restore scripts. In: KEYS[3]
/// the voted hash, KEYS[4] this voter's repeated-attempt counter; ARGV[1] the
/// voter hash, ARGV[2] the request id, ARGV[3] its sequence, ARGV[7] the outcome
/// TTL, ARGV[9] the key prefix. Sets `outcome`. Sequences stay below 2^53, so
/// Lua's numbers hold them exactly.
const COUNT_LUA: &str = r"
local counted = redis.call('HGET', KEYS[3], ARGV[1])
if not counted then
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[3] .. ':' .. ARGV[2])
  outcome = 0
else
  local colon = string.find(counted, ':', 1, true)
  local counted_sequence = tonumber(string.sub(counted, 1, colon - 1))
  local counted_request = string.sub(counted, colon + 1)
  if counted_request == ARGV[2] then
    outcome = 0
  elseif tonumber(ARGV[3]) < counted_sequence then
    redis.call('HSET', KEYS[3], ARGV[1], ARGV[3] .. ':' .. ARGV[2])
    local attempts = redis.call('INCR', KEYS[4])
    redis.call('SET', ARGV[9] .. 'outcome:' .. counted_request, attempts, 'EX', ARGV[7])
    outcome = 0
  else
    outcome = redis.call('INCR', KEYS[4])
  end
end
";

/// Decides one attempt. KEYS: marker, eligible set, voted hash, repeated-attempt
/// counter, this request's outcome, wrong-code counts, locks. ARGV: voter hash,
/// request id, sequence, lock key, law id, wrong codes that lock, outcome TTL,
/// now (ms), key prefix.
fn decide_lua() -> String {
    format!(
        r"
if redis.call('HGET', KEYS[1], 'ready') ~= '1' then
  return {NOT_READY}
end
local known = redis.call('GET', KEYS[5])
if known then
  return tonumber(known)
end
local outcome
local lock = redis.call('HGET', KEYS[7], ARGV[4])
if lock and tonumber(ARGV[3]) > tonumber(string.sub(lock, 1, string.find(lock, '|', 1, true) - 1)) then
  outcome = {LOCKED}
elseif redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 0 then
  if redis.call('HINCRBY', KEYS[6], ARGV[4], 1) >= tonumber(ARGV[6]) then
    redis.call('HSETNX', KEYS[7], ARGV[4], ARGV[3] .. '|' .. ARGV[8] .. '|' .. ARGV[5])
  end
  outcome = {NOT_ELIGIBLE}
else
{COUNT_LUA}
end
redis.call('SET', KEYS[5], outcome, 'EX', ARGV[7])
return outcome
"
    )
}

/// Records an attempt the audit counted. KEYS and ARGV as [`decide_lua`]'s.
fn restore_lua() -> String {
    format!(
        r"
local outcome
{COUNT_LUA}
redis.call('SET', KEYS[5], outcome, 'EX', ARGV[7])
return outcome
"
    )
}

/// Takes the rebuild lease for the marker's generation. KEYS: marker, lease.
/// ARGV: the lease's time to live.
const BEGIN_REBUILD_LUA: &str = r"
local generation = redis.call('HGET', KEYS[1], 'generation')
if generation and redis.call('SET', KEYS[2], generation, 'NX', 'EX', ARGV[1]) then
  return 1
end
return 0
";

/// Marks the marker ready only if it is the generation the lease was taken for
/// (a registry lost and reloaded during the rebuild is rebuilt again), and ends
/// the lease. KEYS: marker, lease.
const MARK_READY_LUA: &str = r"
local generation = redis.call('HGET', KEYS[1], 'generation')
if generation and generation == redis.call('GET', KEYS[2]) then
  redis.call('HSET', KEYS[1], 'ready', '1')
end
redis.call('DEL', KEYS[2])
return 0
";

/// A registry shared by every service replica, kept in Redis (run it with
/// `maxmemory-policy noeviction`: an evicted key is a silent loss the marker
/// cannot see).
///
/// Keys, all under a configurable prefix so several referendums or test runs
/// can share a server: `registry` (the marker: `loaded`, `loads`, `loaded_at`,
/// `ready`), `valid_hashes` (set of lowercase hex hashes), `voted` (hash → the
/// counted attempt, `sequence:request_id`), `duplicate_count:{hash}`,
/// `outcome:{request_id}`, `code_failures` and `code_locks` (lock key → count,
/// and → `sequence|locked_at|law_id` of the attempt that locked it), `rebuilding`
/// (the rebuild lease). The scripts write the outcome of an overturned request,
/// whose key they build from the prefix: a standalone Redis (or one whose ACLs
/// allow the prefix) is assumed, not Redis Cluster.
#[derive(Clone)]
pub struct RedisRegistry {
    connection: ConnectionManager,
    keys: Keys,
    decide: Script,
    restore: Script,
    begin_rebuild: Script,
    mark_ready: Script,
}

#[derive(Debug, Clone)]
struct Keys {
    prefix: String,
    marker: String,
    valid: String,
    voted: String,
    failures: String,
    locks: String,
    rebuilding: String,
}

impl Keys {
    fn new(prefix: &str) -> Self {
        let key = |name: &str| format!("{prefix}{name}");
        Keys {
            prefix: prefix.to_owned(),
            marker: key("registry"),
            valid: key("valid_hashes"),
            voted: key("voted"),
            failures: key("code_failures"),
            locks: key("code_locks"),
            rebuilding: key("rebuilding"),
        }
    }

    fn outcome(&self, request_id: &str) -> String {
        format!("{}outcome:{request_id}", self.prefix)
    }

    fn duplicate_count(&self, hash: &VoterHash) -> String {
        format!("{}duplicate_count:{hash}", self.prefix)
    }
}

/// No request waits on a silent connection (a partition, a half-open socket) for more
/// than [`RESPONSE_TIMEOUT`]: it fails, the caller retries, the manager reconnects.
const RESPONSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// A (re)connection is tried this often, at most a second apart, then fails: the caller
/// decides how long to wait (a role at start: `--dependency-wait`), not the driver, whose
/// default retries for minutes.
const CONNECT_RETRIES: usize = 2;
const LONGEST_RETRY_MS: u64 = 1_000;

fn link_config() -> redis::aio::ConnectionManagerConfig {
    redis::aio::ConnectionManagerConfig::new()
        .set_response_timeout(RESPONSE_TIMEOUT)
        .set_connection_timeout(CONNECT_TIMEOUT)
        .set_number_of_retries(CONNECT_RETRIES)
        .set_max_delay(LONGEST_RETRY_MS)
}

/// A client for `url`: `rediss://` gets TLS, the server's certificate checked against the
/// authority the URL's `cacertfile` names, or the public roots where it names none.
pub fn client(url: &str) -> Result<redis::Client, RegistryError> {
    let refused = |e: &dyn std::fmt::Display| RegistryError::Backend(format!("REDIS_URL: {e}"));
    let link = LinkUrl::parse(url).map_err(|e| refused(&e))?;
    match link.ca_pem {
        None => redis::Client::open(link.url),
        Some(pem) => redis::Client::build_with_tls(
            link.url,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.into_bytes()),
            },
        ),
    }
    .map_err(|e| refused(&e))
}

impl RedisRegistry {
    /// Connects to `url` (e.g. `redis://127.0.0.1:6379`); the connection
    /// reconnects by itself after transient failures.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, RegistryError> {
        let client = client(url)?;
        let connection = ConnectionManager::new_with_config(client, link_config()).await?;
        Ok(Self::new(connection, prefix))
    }

    pub fn new(connection: ConnectionManager, prefix: &str) -> Self {
        RedisRegistry {
            connection,
            keys: Keys::new(prefix),
            decide: Script::new(&decide_lua()),
            restore: Script::new(&restore_lua()),
            begin_rebuild: Script::new(BEGIN_REBUILD_LUA),
            mark_ready: Script::new(MARK_READY_LUA),
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

    /// One invocation of the decide or restore script for an attempt.
    fn invocation<'s>(
        &self,
        script: &'s Script,
        attempt: &Attempt,
        max_wrong_codes: u32,
        now: i64,
    ) -> redis::ScriptInvocation<'s> {
        let mut invocation = script.prepare_invoke();
        invocation
            .key(&self.keys.marker)
            .key(&self.keys.valid)
            .key(&self.keys.voted)
            .key(self.keys.duplicate_count(&attempt.voter_hash))
            .key(self.keys.outcome(&attempt.request_id))
            .key(&self.keys.failures)
            .key(&self.keys.locks)
            .arg(attempt.voter_hash)
            .arg(&attempt.request_id)
            .arg(attempt.sequence)
            .arg(attempt.lock_key.0)
            .arg(&attempt.law_id)
            .arg(max_wrong_codes.max(1))
            .arg(OUTCOME_TTL_SECS)
            .arg(now)
            .arg(&self.keys.prefix);
        invocation
    }

    /// Runs a script on the marker and the rebuild lease (ARGV: the lease's life).
    async fn on_lease(&self, script: &Script) -> Result<i64, RegistryError> {
        let mut connection = self.connection.clone();
        Ok(script
            .key(&self.keys.marker)
            .key(&self.keys.rebuilding)
            .arg(REBUILD_LEASE_SECS)
            .invoke_async(&mut connection)
            .await?)
    }

    /// Every attempt's script call in one pipelined round trip; each call is
    /// atomic on its own, which is all an attempt needs.
    async fn run_pipelined(
        &self,
        script: &Script,
        attempts: &[Attempt],
        max_wrong_codes: u32,
    ) -> Result<Vec<i64>, RegistryError> {
        let now = now_ms();
        let mut pipe = redis::pipe();
        pipe.load_script(script).ignore();
        for attempt in attempts {
            pipe.invoke_script(&self.invocation(script, attempt, max_wrong_codes, now));
        }
        let mut connection = self.connection.clone();
        Ok(pipe.query_async(&mut connection).await?)
    }
}

impl VoterRegistry for RedisRegistry {
    fn load(&self, hashes: Vec<VoterHash>) -> BoxFuture<'_, Result<u64, RegistryError>> {
        Box::pin(async move { self.add_in_batches(&self.keys.valid, &hashes).await })
    }

    fn finish_load(&self, loaded: u64) -> BoxFuture<'_, Result<(), RegistryError>> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let mut generation = [0u8; 8];
            openssl::rand::rand_bytes(&mut generation).expect("the system random generator works");
            redis::pipe()
                .atomic()
                .cmd("HSET")
                .arg(&self.keys.marker)
                .arg("loaded")
                .arg(loaded)
                .ignore()
                .cmd("HSETNX")
                .arg(&self.keys.marker)
                .arg("generation")
                .arg(crate::domain::hex(&generation))
                .ignore()
                .cmd("HINCRBY")
                .arg(&self.keys.marker)
                .arg("loads")
                .arg(1)
                .ignore()
                .cmd("HSET")
                .arg(&self.keys.marker)
                .arg("loaded_at")
                .arg(now_ms())
                .ignore()
                .exec_async(&mut connection)
                .await?;
            Ok(())
        })
    }

    fn state(&self) -> BoxFuture<'_, Result<RegistryState, RegistryError>> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let (loaded, ready): (Option<u64>, Option<String>) = redis::cmd("HMGET")
                .arg(&self.keys.marker)
                .arg("loaded")
                .arg("ready")
                .query_async(&mut connection)
                .await?;
            Ok(state_of(loaded, ready.as_deref() == Some("1")))
        })
    }

    fn decide(
        &self,
        attempts: Vec<Attempt>,
        max_wrong_codes: u32,
    ) -> BoxFuture<'_, Result<Vec<MarkOutcome>, RegistryError>> {
        Box::pin(async move {
            if attempts.is_empty() {
                return Ok(Vec::new());
            }
            let replies = self
                .run_pipelined(&self.decide, &attempts, max_wrong_codes)
                .await?;
            replies.into_iter().map(MarkOutcome::from_code).collect()
        })
    }

    fn restore(&self, counted: Vec<Counted>) -> BoxFuture<'_, Result<(), RegistryError>> {
        Box::pin(async move {
            for page in counted.chunks(RESTORE_BATCH) {
                let attempts: Vec<Attempt> = page.iter().map(Attempt::from).collect();
                self.run_pipelined(&self.restore, &attempts, 1).await?;
            }
            Ok(())
        })
    }

    fn restore_outcomes(
        &self,
        outcomes: Vec<(String, MarkOutcome)>,
    ) -> BoxFuture<'_, Result<(), RegistryError>> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            for page in outcomes.chunks(RESTORE_BATCH) {
                let mut pipe = redis::pipe();
                for (request_id, outcome) in page {
                    pipe.cmd("SET")
                        .arg(self.keys.outcome(request_id))
                        .arg(outcome.code())
                        .arg("NX")
                        .arg("EX")
                        .arg(OUTCOME_TTL_SECS)
                        .ignore();
                }
                pipe.exec_async(&mut connection).await?;
            }
            Ok(())
        })
    }

    fn begin_rebuild(&self) -> BoxFuture<'_, Result<bool, RegistryError>> {
        Box::pin(async move { Ok(self.on_lease(&self.begin_rebuild).await? == 1) })
    }

    fn mark_ready(&self) -> BoxFuture<'_, Result<(), RegistryError>> {
        Box::pin(async move {
            self.on_lease(&self.mark_ready).await?;
            Ok(())
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
            reply.map(MarkOutcome::from_code).transpose()
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
                .map(|reply| reply.map(MarkOutcome::from_code).transpose())
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

    fn locks(&self) -> BoxFuture<'_, Result<(Vec<CodeLock>, u64), RegistryError>> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let total: u64 = redis::cmd("HLEN")
                .arg(&self.keys.locks)
                .query_async(&mut connection)
                .await?;
            let mut locks = Vec::new();
            let mut cursor = 0_u64;
            loop {
                let (next, pairs): (u64, Vec<(String, String)>) = redis::cmd("HSCAN")
                    .arg(&self.keys.locks)
                    .cursor_arg(cursor)
                    .arg("COUNT")
                    .arg(MAX_LOCKS_LISTED)
                    .query_async(&mut connection)
                    .await?;
                for (lock_id, value) in pairs {
                    locks.push(parse_lock(lock_id, &value)?);
                }
                if next == 0 || locks.len() >= MAX_LOCKS_LISTED {
                    break;
                }
                cursor = next;
            }
            locks.truncate(MAX_LOCKS_LISTED);
            Ok((locks, total))
        })
    }

    fn lift_lock(&self, lock: LockKey) -> BoxFuture<'_, Result<bool, RegistryError>> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let (lifted, _): (u64, u64) = redis::pipe()
                .atomic()
                .cmd("HDEL")
                .arg(&self.keys.locks)
                .arg(lock.0)
                .cmd("HDEL")
                .arg(&self.keys.failures)
                .arg(lock.0)
                .query_async(&mut connection)
                .await?;
            Ok(lifted == 1)
        })
    }
}

/// A lock as stored in Redis: `sequence|locked_at|law_id`.
fn parse_lock(lock_id: String, value: &str) -> Result<CodeLock, RegistryError> {
    let corrupt = || RegistryError::Corrupt(format!("unreadable code lock {lock_id}"));
    let (_, rest) = value.split_once('|').ok_or_else(corrupt)?;
    let (at, law_id) = rest.split_once('|').ok_or_else(corrupt)?;
    let locked_at = at.parse().map_err(|_| corrupt())?;
    Ok(CodeLock {
        law_id: law_id.to_owned(),
        lock_id,
        locked_at,
    })
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
    use std::future::Future;
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::sync::Barrier;

    use super::*;

    pub(crate) fn hash(n: u32) -> VoterHash {
        let mut bytes = [0; 32];
        bytes[..4].copy_from_slice(&n.to_be_bytes());
        VoterHash::from_bytes(bytes)
    }

    fn hashes(range: std::ops::Range<u32>) -> Vec<VoterHash> {
        range.map(hash).collect()
    }

    /// Voter `voter`'s attempt with this request number and sequence.
    pub(crate) fn attempt(voter: u32, request: u32, sequence: u64) -> Attempt {
        Attempt {
            request_id: format!("vote-{request}"),
            voter_hash: hash(voter),
            lock_key: LockKey(hash(1_000_000 + voter)),
            law_id: "law".into(),
            sequence,
        }
    }

    async fn ready(registry: &dyn VoterRegistry, voters: std::ops::Range<u32>) {
        let n = voters.len() as u64;
        assert_eq!(registry.load(hashes(voters)).await.unwrap(), n);
        registry.finish_load(n).await.unwrap();
        assert!(registry.begin_rebuild().await.unwrap());
        registry.mark_ready().await.unwrap();
    }

    /// The behaviour every adapter must have, on an empty registry.
    pub(crate) async fn check_contract(registry: &dyn VoterRegistry) {
        let missing = registry.state().await.unwrap();
        assert_eq!(missing.readiness, Readiness::Missing);
        assert!(matches!(
            registry.decide(vec![attempt(0, 1, 1)], 5).await,
            Err(RegistryError::NotReady)
        ));
        registry.load(hashes(0..3)).await.unwrap();
        registry.finish_load(3).await.unwrap();
        assert_eq!(registry.state().await.unwrap().readiness, Readiness::Loaded);
        assert!(matches!(
            registry.decide(vec![attempt(0, 1, 1)], 5).await,
            Err(RegistryError::NotReady)
        ));
        assert!(registry.begin_rebuild().await.unwrap());
        registry.mark_ready().await.unwrap();
        assert_eq!(
            registry.state().await.unwrap(),
            RegistryState {
                readiness: Readiness::Ready,
                loaded: 3
            }
        );
        assert_eq!(registry.load(hashes(2..5)).await.unwrap(), 2);
        assert_eq!(registry.eligible_count().await.unwrap(), 5);
        assert_eq!(
            registry.outcome("vote-1".into()).await.unwrap(),
            None,
            "nothing decided"
        );

        let decided = registry
            .decide(
                vec![attempt(0, 1, 10), attempt(0, 2, 11), attempt(99, 3, 12)],
                5,
            )
            .await
            .unwrap();
        use MarkOutcome::*;
        assert_eq!(
            decided,
            vec![Accepted, Duplicate { attempts: 1 }, NotEligible]
        );
        let replay = registry
            .decide(vec![attempt(0, 1, 10), attempt(0, 2, 11)], 5)
            .await
            .unwrap();
        assert_eq!(
            replay,
            vec![Accepted, Duplicate { attempts: 1 }],
            "a replay changes nothing"
        );
        assert_eq!(
            registry
                .outcomes(vec!["vote-3".into(), "vote-404".into()])
                .await
                .unwrap(),
            vec![Some(NotEligible), None]
        );
    }

    /// Voter `voter`'s attempt `vote-{sequence}`, as the audit log counted it.
    fn counted(voter: u32, sequence: u64) -> Counted {
        Counted {
            voter_hash: hash(voter),
            sequence,
            request_id: format!("vote-{sequence}"),
        }
    }

    /// A later attempt decided first is overturned by the earlier one.
    pub(crate) async fn check_earliest_attempt_counts(registry: &dyn VoterRegistry) {
        ready(registry, 0..2).await;
        use MarkOutcome::*;
        let later = registry.decide(vec![attempt(1, 2, 20)], 5).await.unwrap();
        assert_eq!(later, vec![Accepted]);
        let earlier = registry.decide(vec![attempt(1, 1, 10)], 5).await.unwrap();
        assert_eq!(
            earlier,
            vec![Accepted],
            "the earliest attempt takes the voter's place"
        );
        assert_eq!(
            registry.outcome("vote-2".into()).await.unwrap(),
            Some(Duplicate { attempts: 1 }),
            "and the later one becomes the duplicate"
        );
        let third = registry.decide(vec![attempt(1, 3, 15)], 5).await.unwrap();
        assert_eq!(third, vec![Duplicate { attempts: 2 }]);
        assert_eq!(
            registry.outcome("vote-1".into()).await.unwrap(),
            Some(Accepted)
        );

        // The audit log's confirmation follows the same rule, in any order.
        registry.restore(vec![counted(0, 30)]).await.unwrap();
        let late = registry.decide(vec![attempt(0, 31, 31)], 5).await.unwrap();
        assert_eq!(late, vec![Duplicate { attempts: 1 }]);
        registry.restore(vec![counted(0, 5)]).await.unwrap();
        assert_eq!(
            registry.outcome("vote-5".into()).await.unwrap(),
            Some(Accepted)
        );
        assert!(matches!(
            registry.outcome("vote-30".into()).await.unwrap(),
            Some(Duplicate { .. })
        ));
        registry
            .restore_outcomes(vec![
                ("vote-5".into(), NotEligible),
                ("vote-77".into(), Locked),
            ])
            .await
            .unwrap();
        assert_eq!(
            registry
                .outcomes(vec!["vote-5".into(), "vote-77".into()])
                .await
                .unwrap(),
            vec![Some(Accepted), Some(Locked)],
            "a known outcome is never overwritten"
        );
    }

    /// Wrong codes lock the NAS and law until lifted.
    pub(crate) async fn check_code_lockout(registry: &dyn VoterRegistry) {
        ready(registry, 0..2).await;
        use MarkOutcome::*;
        let guess = |request: u32| Attempt {
            voter_hash: hash(500 + request),
            ..attempt(0, request, u64::from(request))
        };
        let guesses: Vec<Attempt> = (1..=3).map(guess).collect();
        assert_eq!(
            registry.decide(guesses, 3).await.unwrap(),
            vec![NotEligible; 3]
        );
        let (locks, total) = registry.locks().await.unwrap();
        assert_eq!(total, 1);
        assert_eq!(locks[0].lock_id, hash(1_000_000).to_hex());
        assert_eq!(locks[0].law_id, "law");
        let right_code = attempt(0, 4, 4);
        assert_eq!(
            registry.decide(vec![right_code.clone()], 3).await.unwrap(),
            vec![Locked]
        );
        let other_voter = attempt(1, 5, 5);
        assert_eq!(
            registry.decide(vec![other_voter], 3).await.unwrap(),
            vec![Accepted]
        );

        // Sent before the guesses, decided after them: not locked out by them.
        let early = Attempt {
            request_id: "vote-40".into(),
            sequence: 0,
            ..right_code.clone()
        };
        assert_eq!(
            registry.decide(vec![early], 3).await.unwrap(),
            vec![Accepted]
        );

        assert!(registry.lift_lock(LockKey(hash(1_000_000))).await.unwrap());
        assert!(!registry.lift_lock(LockKey(hash(1_000_000))).await.unwrap());
        assert_eq!(registry.locks().await.unwrap().1, 0);
        let retry = Attempt {
            request_id: "vote-6".into(),
            sequence: 6,
            ..right_code
        };
        assert_eq!(
            registry.decide(vec![retry], 3).await.unwrap(),
            vec![Duplicate { attempts: 1 }],
            "unlocked: decided as any attempt"
        );
    }

    /// Every task presents the same voter at once, each through its own
    /// registry handle (`handles` share one underlying store): whatever order
    /// they run in, the earliest attempt ends up counted and each other one is a
    /// duplicate with its own attempt number.
    pub(crate) async fn check_race_counts_the_earliest(handles: Vec<Arc<dyn VoterRegistry>>) {
        let first = Arc::clone(&handles[0]);
        ready(&*first, 7..8).await;
        let count = handles.len() as u32;
        let barrier = Arc::new(Barrier::new(handles.len()));
        let tasks: Vec<_> = handles
            .into_iter()
            .zip(0..)
            .map(|(registry, n)| {
                let barrier = Arc::clone(&barrier);
                tokio::spawn(async move {
                    barrier.wait().await;
                    registry
                        .decide(vec![attempt(7, n, u64::from(n))], 5)
                        .await
                        .unwrap()
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let requests = (0..count).map(|n| format!("vote-{n}")).collect();
        let outcomes = first.outcomes(requests).await.unwrap();
        assert_eq!(outcomes[0], Some(MarkOutcome::Accepted), "{outcomes:?}");
        let mut attempts: Vec<u64> = outcomes[1..]
            .iter()
            .map(|outcome| match outcome {
                Some(MarkOutcome::Duplicate { attempts }) => *attempts,
                other => panic!("expected a duplicate, got {other:?}"),
            })
            .collect();
        attempts.sort_unstable();
        assert_eq!(attempts, (1..u64::from(count)).collect::<Vec<_>>());
    }

    #[test]
    fn outcome_codes_round_trip() {
        use MarkOutcome::*;
        for outcome in [Accepted, Duplicate { attempts: 3 }, NotEligible, Locked] {
            assert_eq!(MarkOutcome::from_code(outcome.code()).unwrap(), outcome);
        }
        assert!(matches!(
            MarkOutcome::from_code(NOT_READY),
            Err(RegistryError::NotReady)
        ));
        assert!(matches!(
            MarkOutcome::from_code(-9),
            Err(RegistryError::UnexpectedReply(-9))
        ));
    }

    #[test]
    fn redis_keys_follow_the_documented_layout() {
        let keys = Keys::new("amarvote:");
        assert_eq!(keys.valid, "amarvote:valid_hashes");
        assert_eq!(keys.voted, "amarvote:voted");
        assert_eq!(keys.marker, "amarvote:registry");
        assert_eq!(
            keys.duplicate_count(&hash(1)),
            format!("amarvote:duplicate_count:{}", hash(1).to_hex())
        );
        assert_eq!(keys.outcome("vote-1"), "amarvote:outcome:vote-1");
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
        let pattern = format!("{prefix}*");
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

    /// Deletes every key under `prefix` in one command (atomically, as a Redis
    /// restarted without its data would lose them).
    async fn unlink_all(registry: &RedisRegistry, prefix: &str) {
        let keys = keys_under(registry, prefix).await;
        if keys.is_empty() {
            return;
        }
        let mut connection = registry.connection.clone();
        redis::cmd("UNLINK")
            .arg(keys)
            .exec_async(&mut connection)
            .await
            .unwrap();
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
        unlink_all(&connect_redis(&prefix).await, &prefix).await;
        if let Err(err) = outcome {
            std::panic::resume_unwind(err.into_panic());
        }
    }

    #[tokio::test]
    async fn redis_registry_honours_the_contract() {
        with_redis_prefix(|prefix| async move {
            let registry = connect_redis(&prefix).await;
            check_contract(&registry).await;
            assert!(registry.begin_rebuild().await.unwrap());
            let other = connect_redis(&prefix).await;
            assert!(
                !other.begin_rebuild().await.unwrap(),
                "one rebuilder at a time"
            );
            registry.mark_ready().await.unwrap();
            assert!(
                other.begin_rebuild().await.unwrap(),
                "marking ready ends the lease"
            );
        })
        .await;
    }

    #[tokio::test]
    async fn redis_registry_counts_the_earliest_attempt() {
        with_redis_prefix(|prefix| async move {
            check_earliest_attempt_counts(&connect_redis(&prefix).await).await;
        })
        .await;
    }

    #[tokio::test]
    async fn redis_registry_locks_out_code_guessing() {
        with_redis_prefix(|prefix| async move {
            check_code_lockout(&connect_redis(&prefix).await).await;
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn redis_registry_counts_the_earliest_of_raced_attempts_across_connections() {
        with_redis_prefix(|prefix| async move {
            let mut handles: Vec<Arc<dyn VoterRegistry>> = Vec::new();
            for _ in 0..4 {
                let registry: Arc<dyn VoterRegistry> = Arc::new(connect_redis(&prefix).await);
                handles.extend(std::iter::repeat_n(registry, 8));
            }
            check_race_counts_the_earliest(handles).await;
        })
        .await;
    }

    #[tokio::test]
    async fn a_flushed_redis_is_not_ready_and_decides_nothing() {
        with_redis_prefix(|prefix| async move {
            let registry = connect_redis(&prefix).await;
            ready(&registry, 0..2).await;
            registry.decide(vec![attempt(0, 1, 1)], 5).await.unwrap();
            unlink_all(&registry, &prefix).await;
            assert_eq!(
                registry.state().await.unwrap().readiness,
                Readiness::Missing
            );
            assert!(matches!(
                registry.decide(vec![attempt(1, 2, 2)], 5).await,
                Err(RegistryError::NotReady)
            ));
            assert_eq!(
                keys_under(&registry, &prefix).await,
                Vec::<String>::new(),
                "nothing written"
            );
            registry.mark_ready().await.unwrap();
            assert_eq!(
                registry.state().await.unwrap().readiness,
                Readiness::Missing
            );
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
        })
        .await;
    }
}
