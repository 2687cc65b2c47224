//! The election service's use cases, shared by every role: the API calls them to record
//! and plan, the workers to do the chunks. Nothing here keeps scheduling state in memory:
//! all of it is in the store, so any number of API instances and workers may run.

pub mod ballots;
pub mod ceremony;
pub mod codec;
pub mod elections;
pub mod guardians;
pub mod jobs;
pub mod operations;
pub mod remote_decryption;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use electionguard::context::CiphertextElectionContext;
use electionguard::elgamal::EncryptionKey;
use electionguard::json::from_json;
use electionguard::manifest::Manifest;
use electionguard::tally::TallyLayout;

use crate::domain::{ElectionId, ElectionRow};
use crate::memory::table_thread::build_on_table_thread;
use crate::metrics::Metrics;
use crate::ports::store::{CastError, StoreError};
use crate::ports::{Store, WorkQueue};
use crate::sealing::ServerKey;

/// What a use case can answer besides success; the API maps each to an HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after: std::time::Duration,
    },
    /// The database failed in a way that may pass (out of reach, restarting, busy, a
    /// transaction aborted): the request may succeed if sent again shortly. Whether a
    /// write that failed this way took effect can be unknown (the connection may have been
    /// cut while its commit was acknowledged), so a client repeats only what is safe to.
    #[error("the database is busy or out of reach; try again shortly")]
    Unavailable(#[source] StoreError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Backend {
                transient: true, ..
            } => ServiceError::Unavailable(e),
            other => ServiceError::Internal(other.into()),
        }
    }
}

impl From<CastError> for ServiceError {
    fn from(e: CastError) -> Self {
        match e {
            CastError::Store(e) => e.into(),
            CastError::NotEligible => ServiceError::Unauthorized(e.to_string()),
            other => ServiceError::Conflict(other.to_string()),
        }
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;

/// Elections whose parsed documents and tables a process keeps at once.
const CACHED_ELECTIONS: usize = 8;

/// Elections whose wide encryption tables (~81 MB each) a process keeps at once: an API
/// encrypting for many elections stays within its memory limit.
const WIDE_TABLE_ELECTIONS: usize = 2;

/// How long an election's wide table must have gone unused before another election's
/// takes its place: elections busy at the same time never evict each other's (each build
/// costs ~1 s of a core), the later one encrypts with the narrow table meanwhile.
const WIDE_TABLE_IDLE: std::time::Duration = std::time::Duration::from_secs(60);

/// An election's manifest, context and joint-key table, parsed once per process.
pub struct ElectionCrypto {
    pub manifest: Manifest,
    pub context: CiphertextElectionContext,
    /// The 8-bit table, for verifying proofs.
    pub key: EncryptionKey,
    /// Where each selection sits in a cast ballot's compact tally input.
    pub tally_layout: TallyLayout,
}

impl ElectionCrypto {
    /// Blocks while the table thread (`memory::table_thread`) builds the 8-bit table (~50
    /// ms, after any build queued before it: a wide one takes ~1 s).
    pub fn new(manifest: Manifest, context: CiphertextElectionContext) -> ElectionCrypto {
        let public_key = context.elgamal_public_key.clone();
        let key = build_on_table_thread(move || EncryptionKey::new(&public_key));
        ElectionCrypto {
            tally_layout: TallyLayout::new(&manifest),
            manifest,
            context,
            key,
        }
    }
}

/// The joint key with 13-bit tables for the few elections a process encrypts for, built
/// on first use (~1 s, once per election even when requests race). A slot is given up
/// only once it has been idle for [`WIDE_TABLE_IDLE`]; until one is, an election without
/// a slot encrypts with its 8-bit table.
#[derive(Default)]
pub struct WideKeys(Mutex<Vec<WideSlot>>);

struct WideSlot {
    election: ElectionId,
    last_used: std::time::Instant,
    key: Arc<OnceLock<EncryptionKey>>,
}

impl WideKeys {
    /// The slot of `election`'s wide key (fill it with [`Self::fill`]), or `None` while
    /// every slot is held by an election in use.
    pub fn slot(&self, election: &ElectionId) -> Option<Arc<OnceLock<EncryptionKey>>> {
        let now = std::time::Instant::now();
        let mut slots = self.0.lock().expect("not poisoned");
        if let Some(held) = slots.iter_mut().find(|s| s.election == *election) {
            held.last_used = now;
            return Some(held.key.clone());
        }
        if slots.len() >= WIDE_TABLE_ELECTIONS {
            let idlest = (0..slots.len()).min_by_key(|&i| slots[i].last_used)?;
            if now.duration_since(slots[idlest].last_used) < WIDE_TABLE_IDLE {
                return None;
            }
            slots.swap_remove(idlest);
        }
        let key = Arc::<OnceLock<EncryptionKey>>::default();
        slots.push(WideSlot {
            election: election.clone(),
            last_used: now,
            key: key.clone(),
        });
        Some(key)
    }

    /// The wide key in `slot`, built from `crypto` on the table thread
    /// (`memory::table_thread`) if it is not there yet (blocks ~1 s).
    pub fn fill<'a>(
        slot: &'a OnceLock<EncryptionKey>,
        crypto: &ElectionCrypto,
    ) -> &'a EncryptionKey {
        slot.get_or_init(|| {
            let public_key = crypto.context.elgamal_public_key.clone();
            build_on_table_thread(move || EncryptionKey::for_encryption(&public_key))
        })
    }
}

/// Tunables of the service.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Cast ballots per tally chunk (and per verification chunk).
    pub chunk_size: u64,
    /// Spoiled ballots per decryption chunk: each costs a share and a proof per selection.
    pub spoiled_chunk_size: u64,
    /// Requests per second one client address may make to the ballot endpoints.
    pub ballot_rate_limit: u32,
    /// Addresses of reverse proxies whose `X-Forwarded-For` names the client; from any
    /// other peer the header is ignored.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Ballots one voting credential may challenge (each costs every guardian a decryption).
    pub max_challenges_per_voter: u64,
    /// Encryption devices one voting credential may register.
    pub max_devices_per_voter: u64,
    /// How long a ballot encrypted on the server waits for the voter to cast or challenge it.
    pub pending_ballot_ttl: std::time::Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            chunk_size: 1000,
            spoiled_chunk_size: 50,
            ballot_rate_limit: 200,
            trusted_proxies: Vec::new(),
            max_challenges_per_voter: 10,
            max_devices_per_voter: 3,
            pending_ballot_ttl: std::time::Duration::from_secs(3600),
        }
    }
}

/// Everything a role needs: the ports, the server key and the metrics.
pub struct App {
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn WorkQueue>,
    pub server_key: Arc<ServerKey>,
    pub metrics: Arc<Metrics>,
    pub admin_token: String,
    pub settings: Settings,
    /// Guards the Argon2 passphrase checks (19 MiB and tens of ms each).
    pub passphrase_gate: PassphraseGate,
    /// One progress poller per followed job, for the event streams.
    pub job_feeds: jobs::JobFeeds,
    crypto: Mutex<HashMap<ElectionId, Arc<ElectionCrypto>>>,
    /// Wide encryption tables of the elections this process encrypts for.
    pub wide_keys: WideKeys,
}

impl App {
    pub fn new(
        store: Arc<dyn Store>,
        queue: Arc<dyn WorkQueue>,
        server_key: ServerKey,
        admin_token: String,
        settings: Settings,
    ) -> App {
        App {
            store,
            queue,
            server_key: Arc::new(server_key),
            metrics: Arc::new(Metrics::new()),
            admin_token,
            settings,
            passphrase_gate: PassphraseGate::default(),
            job_feeds: jobs::JobFeeds::default(),
            crypto: Mutex::new(HashMap::new()),
            wide_keys: WideKeys::default(),
        }
    }

    pub async fn election(&self, id: &str) -> ServiceResult<ElectionRow> {
        self.store
            .election(id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no election {id}")))
    }

    /// The election's parsed documents, cached: the manifest and context never change.
    pub async fn crypto(&self, election: &ElectionRow) -> ServiceResult<Arc<ElectionCrypto>> {
        if let Some(found) = self.crypto.lock().expect("not poisoned").get(&election.id) {
            return Ok(found.clone());
        }
        let (manifest_json, context_json) = (
            election.manifest_json.clone(),
            election.context_json.clone(),
        );
        let built = tokio::task::spawn_blocking(move || -> anyhow::Result<ElectionCrypto> {
            let manifest: Manifest = from_json(&manifest_json)?;
            let context: CiphertextElectionContext = from_json(&context_json)?;
            Ok(ElectionCrypto::new(manifest, context))
        })
        .await
        .map_err(anyhow::Error::from)??;
        let built = Arc::new(built);
        let mut cached = self.crypto.lock().expect("not poisoned");
        if cached.len() >= CACHED_ELECTIONS {
            cached.clear();
        }
        cached.insert(election.id.clone(), built.clone());
        Ok(built)
    }
}

/// Passphrase checks run Argon2 (19 MiB of memory each): at most two at a time in a
/// process, so a flood of guesses cannot exhaust memory, and after each wrong passphrase
/// a guardian waits longer (1 s, 2 s, 4 s … at most a minute) before the next try.
pub struct PassphraseGate {
    running: tokio::sync::Semaphore,
    failures: Mutex<HashMap<String, (u32, std::time::Instant)>>,
}

impl Default for PassphraseGate {
    fn default() -> Self {
        PassphraseGate {
            running: tokio::sync::Semaphore::new(2),
            failures: Mutex::new(HashMap::new()),
        }
    }
}

impl PassphraseGate {
    /// Runs `check` for `who` once its failure delay has passed; a failed check lengthens it.
    pub async fn check<T, E>(
        &self,
        who: &str,
        check: impl FnOnce() -> Result<T, E> + Send + 'static,
    ) -> ServiceResult<Result<T, E>>
    where
        T: Send + 'static,
        E: Send + 'static,
    {
        let _permit = self.running.acquire().await.map_err(anyhow::Error::from)?;
        // Checked once the permit is held: guesses queued behind a failure wait it out.
        if let Some(wait) = self.wait_for(who) {
            return Err(ServiceError::RateLimited {
                message: format!("too many wrong passphrases for {who}; try again later"),
                retry_after: wait,
            });
        }
        let outcome = tokio::task::spawn_blocking(check)
            .await
            .map_err(anyhow::Error::from)?;
        let mut failures = self.failures.lock().expect("not poisoned");
        match &outcome {
            Ok(_) => {
                failures.remove(who);
            }
            Err(_) => {
                let entry = failures
                    .entry(who.to_string())
                    .or_insert((0, std::time::Instant::now()));
                *entry = (entry.0 + 1, std::time::Instant::now());
            }
        }
        Ok(outcome)
    }

    fn wait_for(&self, who: &str) -> Option<std::time::Duration> {
        let failures = self.failures.lock().expect("not poisoned");
        let (count, last) = failures.get(who)?;
        let delay = std::time::Duration::from_secs(1u64 << (*count - 1).min(6))
            .min(std::time::Duration::from_secs(60));
        delay.checked_sub(last.elapsed())
    }
}

/// SHA-256 of a bearer credential, as stored: the store never holds a usable credential.
pub fn credential_hash(credential: &str) -> String {
    use sha2::Digest;
    crate::domain::hex(&sha2::Sha256::digest(credential.as_bytes()))
}

/// A fresh bearer credential: 128 random bits as hex.
pub fn new_credential() -> String {
    let mut bytes = [0u8; 16];
    openssl::rand::rand_bytes(&mut bytes).expect("the system random generator works");
    crate::domain::hex(&bytes)
}

/// Compares secrets in constant time.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && openssl::memcmp::eq(a.as_bytes(), b.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wide_key_slot_goes_to_another_election_only_once_idle() {
        let keys = WideKeys::default();
        let (a, b, c) = (
            ElectionId::random(),
            ElectionId::random(),
            ElectionId::random(),
        );
        let first_a = keys.slot(&a).unwrap();
        keys.slot(&b).unwrap();
        assert!(
            Arc::ptr_eq(&first_a, &keys.slot(&a).unwrap()),
            "a's table is kept"
        );
        assert!(
            keys.slot(&c).is_none(),
            "both slots are in use: c uses its narrow table"
        );
        let long_ago = std::time::Instant::now() - WIDE_TABLE_IDLE * 2;
        keys.0.lock().unwrap().iter_mut().for_each(|s| {
            if s.election == b {
                s.last_used = long_ago;
            }
        });
        keys.slot(&c).expect("b's idle slot goes to c");
        assert!(
            Arc::ptr_eq(&first_a, &keys.slot(&a).unwrap()),
            "a's is untouched"
        );
        assert!(keys.slot(&b).is_none(), "b waits now");
        assert_eq!(keys.0.lock().unwrap().len(), WIDE_TABLE_ELECTIONS);
    }

    #[test]
    fn a_database_out_of_reach_is_unavailable_and_a_refusal_stays_internal() {
        let unreachable = StoreError::Backend {
            message: "connection refused".into(),
            transient: true,
        };
        assert!(matches!(
            ServiceError::from(unreachable),
            ServiceError::Unavailable(_)
        ));
        let refused = StoreError::Backend {
            message: "syntax error".into(),
            transient: false,
        };
        assert!(matches!(
            ServiceError::from(refused),
            ServiceError::Internal(_)
        ));
    }
}
