//! Starting a real server for the integration tests: the embedded default in a temporary
//! directory, or PostgreSQL + RabbitMQ in a database and virtual host of the test's own.
//! A missing service fails the test with a message saying which and how to start it.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub mod crowd;
pub mod tls;

use amarvote::adapters::rabbitmq::RabbitQueue;
use amarvote::adapters::sql_store::SqlStore;
use amarvote::domain::{JobState, QueueName};
use amarvote::ports::{Store, WorkQueue};
use amarvote::sealing::ServerKey;
use amarvote::service::elections::{CreatedElection, NewContest, NewElection};
use amarvote::service::{App, Settings};
use tokio::sync::watch;

pub struct TestServer {
    pub url: String,
    pub admin: String,
    pub app: Arc<App>,
    shutdown: watch::Sender<bool>,
    _dir: Option<tempfile::TempDir>,
    vhost: Option<String>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(vhost) = &self.vhost {
            let _ = std::process::Command::new("rabbitmqctl")
                .args(["delete_vhost", vhost])
                .output();
        }
    }
}

/// A loopback port nobody listens on now, for a server process a test starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn settings() -> Settings {
    Settings {
        chunk_size: 8,
        spoiled_chunk_size: 3,
        ..Settings::default()
    }
}

async fn start(app: Arc<App>, dir: Option<tempfile::TempDir>, vhost: Option<String>) -> TestServer {
    start_with(app, dir, vhost, true).await
}

async fn start_with(
    app: Arc<App>,
    dir: Option<tempfile::TempDir>,
    vhost: Option<String>,
    workers: bool,
) -> TestServer {
    let (tx, rx) = watch::channel(false);
    if workers {
        tokio::spawn(amarvote::workers::run(
            app.clone(),
            QueueName::ALL.to_vec(),
            rx.clone(),
        ));
    }
    tokio::spawn(amarvote::workers::reconciler::run(
        app.clone(),
        Duration::from_millis(500),
        rx.clone(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let router = amarvote::api::router(app.clone());
    tokio::spawn(amarvote::api::http_server::serve(
        listener,
        router,
        Default::default(),
        rx,
    ));
    TestServer {
        url: format!("http://{addr}"),
        admin: app.admin_token.clone(),
        app,
        shutdown: tx,
        _dir: dir,
        vhost,
    }
}

/// The embedded default: SQLite and the embedded queue in a fresh directory.
pub async fn embedded() -> TestServer {
    embedded_with(settings()).await
}

/// The embedded default with settings of the test's own.
pub async fn embedded_with(settings: Settings) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let app = amarvote::commands::serve::embedded_app(dir.path(), settings)
        .await
        .unwrap();
    start(app, Some(dir), None).await
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", &amarvote::service::new_credential()[..12])
}

/// A fresh PostgreSQL database on 127.0.0.1:5432 (or `TEST_POSTGRES_URL`'s server).
pub async fn postgres_url() -> String {
    use sqlx::Connection;
    let admin_url = std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let mut conn = sqlx::PgConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|e| panic!("these tests need PostgreSQL at {admin_url} (start it, or set TEST_POSTGRES_URL): {e}"));
    let name = unique("amarvote_test");
    sqlx::Executor::execute(&mut conn, format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap();
    let base = admin_url.rsplit_once('/').unwrap().0;
    format!("{base}/{name}")
}

/// Deletes a RabbitMQ virtual host when dropped.
pub struct VhostGuard(pub String);

impl Drop for VhostGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.0])
            .output();
    }
}

/// The Redis server the referendum tests use, and a key prefix of the test's own.
pub fn redis_url_and_prefix() -> (String, String) {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    (url, format!("{}:", unique("amarvote-ref")))
}

/// Removes every key under `prefix`, so test runs leave Redis as they found it.
pub async fn delete_redis_keys(url: &str, prefix: &str) {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("these tests need Redis at {url}: {e}"));
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

/// Runs rabbitmqctl; a failure fails the test with its message.
pub fn rabbitmqctl(args: &[&str]) {
    let out = std::process::Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("these tests need rabbitmqctl (RabbitMQ) on this machine");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?} failed (is RabbitMQ running?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fresh RabbitMQ virtual host on 127.0.0.1:5672, made with rabbitmqctl.
pub fn rabbitmq_vhost() -> (String, String) {
    let vhost = unique("amarvote-test");
    rabbitmqctl(&["add_vhost", &vhost]);
    rabbitmqctl(&["set_permissions", "-p", &vhost, "guest", ".*", ".*", ".*"]);
    (format!("amqp://guest:guest@127.0.0.1:5672/{vhost}"), vhost)
}

/// The API on PostgreSQL + RabbitMQ in this process, and the environment for
/// `amarvote worker` processes the test starts and kills.
pub async fn postgres_rabbitmq_external_workers() -> (TestServer, Vec<(String, String)>) {
    let database = postgres_url().await;
    let (amqp, vhost) = rabbitmq_vhost();
    let store: Arc<dyn Store> = Arc::new(SqlStore::connect(&database).await.unwrap());
    let queue: Arc<dyn WorkQueue> = Arc::new(RabbitQueue::connect(&amqp).await.unwrap());
    let key = format!(
        "{}{}",
        amarvote::service::new_credential(),
        amarvote::service::new_credential()
    );
    let admin = amarvote::service::new_credential();
    let app = Arc::new(App::new(
        store,
        queue,
        ServerKey::from_hex(&key).unwrap(),
        admin.clone(),
        settings(),
    ));
    let env = vec![
        ("DATABASE_URL".to_string(), database),
        ("AMQP_URL".to_string(), amqp),
        ("AMARVOTE_SERVER_KEY".to_string(), key),
        ("AMARVOTE_ADMIN_TOKEN".to_string(), admin),
    ];
    (start_with(app, None, Some(vhost), false).await, env)
}

/// Starts `amarvote worker` (the binary under test) with the given environment.
pub fn spawn_worker(env: &[(String, String)]) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_amarvote"))
        .args(["worker", "--listen", "127.0.0.1:0", "--chunk-size", "8"])
        .envs(env.iter().cloned())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the amarvote binary starts")
}

/// What a role's `/health` answers: `None` while nothing listens, else the status and
/// whether the role is still starting (the start gate's 503, naming what it waits for).
pub async fn health(http: &reqwest::Client, base: &str) -> Option<(u16, Option<String>)> {
    let response = http.get(format!("{base}/health")).send().await.ok()?;
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let starting = body["error"]
        .as_str()
        .filter(|e| status == 503 && e.starts_with("starting: "))
        .map(str::to_owned);
    Some((status, starting))
}

/// Waits until a role listens and has left its start (its services are open).
pub async fn wait_started(http: &reqwest::Client, base: &str, within: Duration) {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some((_, None)) = health(http, base).await {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{base} did not start within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The scaled-out adapters: PostgreSQL and RabbitMQ, in this process.
pub async fn postgres_rabbitmq() -> TestServer {
    postgres_rabbitmq_on(&postgres_url().await, ServerKey::generate()).await
}

/// As [`postgres_rabbitmq`], on a database the test made (and may reach itself), with a
/// server key a restarted server can have again.
pub async fn postgres_rabbitmq_on(database: &str, key: ServerKey) -> TestServer {
    let (amqp, vhost) = rabbitmq_vhost();
    let store: Arc<dyn Store> = Arc::new(SqlStore::connect(database).await.unwrap());
    let queue: Arc<dyn WorkQueue> = Arc::new(
        RabbitQueue::connect(&amqp)
            .await
            .unwrap_or_else(|e| panic!("these tests need RabbitMQ at {amqp}: {e}")),
    );
    let app = Arc::new(App::new(
        store,
        queue,
        key,
        amarvote::service::new_credential(),
        settings(),
    ));
    start(app, None, Some(vhost)).await
}

/// A one-contest ballot's choices: `selection` in `contest-1`.
pub fn choosing(selection: &str) -> amarvote::service::ballots::Choices {
    [("contest-1".to_string(), vec![selection.to_string()])].into()
}

/// Encrypts a one-contest ballot for `selection` on the server and casts it; the tracking code.
pub async fn cast(
    client: &amarvote::commands::client::Client,
    election: &str,
    credential: &str,
    selection: &str,
) -> String {
    let choices = choosing(selection);
    let pending = client
        .encrypt_ballot(credential, election, &choices)
        .await
        .unwrap();
    let receipt = client
        .cast_ballot(credential, election, &pending.ballot_id)
        .await
        .unwrap();
    receipt.tracking_code
}

/// The published counts of an election's first contest, in selection order.
pub async fn votes(client: &amarvote::commands::client::Client, election: &str) -> Vec<u64> {
    let results = client.results(election).await.unwrap();
    results.contests[0]
        .selections
        .iter()
        .map(|s| s.votes)
        .collect()
}

/// Stops RabbitMQ's application for two seconds, then starts it again.
pub async fn restart_rabbitmq() {
    tokio::task::spawn_blocking(|| {
        rabbitmqctl(&["stop_app"]);
        std::thread::sleep(Duration::from_secs(2));
        rabbitmqctl(&["start_app"]);
    })
    .await
    .unwrap();
}

/// The first `count` guardians of a server-run ceremony consent with their passphrases.
pub async fn consent(
    client: &amarvote::commands::client::Client,
    election: &str,
    created: &CreatedElection,
    count: u32,
) {
    amarvote::commands::demo_server::consent(client, election, created, count)
        .await
        .unwrap();
}

/// Whether the guardians' consent, or the decryption job after it, fails on this server
/// (as one must where the server key that sealed the election's secrets is missing).
pub async fn decryption_refused(
    client: &amarvote::commands::client::Client,
    admin: &str,
    election: &str,
    created: &CreatedElection,
) -> bool {
    use amarvote::commands::demo_server::run_job;
    let decrypted = async {
        amarvote::commands::demo_server::consent(client, election, created, 2).await?;
        run_job(client, admin, election, amarvote::domain::JobKind::Decrypt).await
    };
    decrypted.await.is_err()
}

/// A two-second load-generator run: 2,000 votes from 1,500 voters, 10 % duplicates and
/// 5 % ineligible, reconciled within a minute.
pub fn small_loadgen(
    server: &str,
    admin: &str,
) -> amarvote::commands::referendum::loadgen::LoadgenConfig {
    amarvote::commands::referendum::loadgen::LoadgenConfig {
        server: server.to_owned(),
        admin_token: admin.to_owned(),
        voters: 1_500,
        rate: 1_000.0,
        duration: Duration::from_secs(2),
        duplicate_rate: 0.1,
        invalid_rate: 0.05,
        concurrency: 32,
        drain_timeout: Duration::from_secs(60),
        window: Duration::from_secs(1),
    }
}

/// A voter's own encryption device, as electionguard-python's `encrypt_ballot` is one:
/// declared to the server, then encrypting ballots whose tracking codes it chains itself.
pub struct VoterDevice {
    pub device: electionguard::ballot::EncryptionDevice,
    /// The code the next ballot continues: the device's hash, then its last ballot's code.
    pub next_seed: electionguard::group::ElementModQ,
    crypto: Arc<amarvote::service::ElectionCrypto>,
}

impl VoterDevice {
    /// Declares device `device_id` for `election` with the voter's credential.
    pub async fn register(
        server: &TestServer,
        election: &str,
        credential: &str,
        device_id: u64,
    ) -> VoterDevice {
        let device = electionguard::ballot::EncryptionDevice {
            device_id,
            session_id: 1,
            launch_code: 42,
            location: format!("voter-device-{device_id}"),
        };
        let body = electionguard::json::to_reference_json(&device);
        let answer = post_device(server, election, credential, body).await;
        assert_eq!(answer.status(), 201, "{}", answer.text().await.unwrap());
        let row = server.app.election(election).await.unwrap();
        VoterDevice {
            next_seed: device.hash(),
            device,
            crypto: server.app.crypto(&row).await.unwrap(),
        }
    }

    /// Encrypts a random ballot under `object_id`, linked into this device's chain; the
    /// ballot as the voter's device keeps it (nonces included).
    pub fn encrypt(
        &mut self,
        object_id: &str,
        seed: u64,
    ) -> electionguard::ballot::CiphertextBallot {
        let mut rng = amarvote::commands::simulation::ChoiceRng::new(seed);
        let mut plaintext =
            amarvote::commands::simulation::random_ballot(&self.crypto.manifest, 0, &mut rng);
        plaintext.object_id = object_id.to_string();
        let encryptor = electionguard::encrypt::Encryptor::with_key(
            &self.crypto.manifest,
            &self.crypto.context,
            self.crypto.key.clone(),
        );
        let ballot = encryptor
            .encrypt(
                &plaintext,
                &self.next_seed,
                &electionguard::group::ElementModQ::random(),
                1_700_000_000,
            )
            .unwrap();
        self.next_seed = ballot.code.clone();
        ballot
    }
}

/// The administrator closes voting.
pub async fn close_voting(
    client: &amarvote::commands::client::Client,
    admin: &str,
    election: &str,
) {
    client.close_voting(admin, election).await.unwrap();
}

/// Declares an encryption device (its reference JSON) with a voter's credential.
pub async fn post_device(
    server: &TestServer,
    election: &str,
    credential: &str,
    device_json: String,
) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/api/elections/{election}/devices", server.url))
        .bearer_auth(credential)
        .body(device_json)
        .send()
        .await
        .unwrap()
}

impl VoterDevice {
    /// Another ballot's ciphertexts and proofs under a new id, linked into this device's
    /// chain: the copy an attacker would submit. Its proofs still verify.
    pub fn relabel(
        &mut self,
        ballot: &electionguard::ballot::CiphertextBallot,
        id: &str,
    ) -> electionguard::ballot::CiphertextBallot {
        use electionguard::ballot::CiphertextBallot;
        let mut copy = ballot.clone();
        copy.object_id = id.to_string();
        copy.state = None;
        copy.crypto_hash = CiphertextBallot::compute_crypto_hash(
            &copy.object_id,
            &copy.manifest_hash,
            &copy.contests,
        );
        copy.code_seed = self.next_seed.clone();
        copy.code =
            CiphertextBallot::compute_code(&copy.code_seed, copy.timestamp, &copy.crypto_hash);
        self.next_seed = copy.code.clone();
        copy
    }
}

/// The ballot as a device submits it: no nonces, no state.
pub fn without_nonces(
    ballot: &electionguard::ballot::CiphertextBallot,
) -> electionguard::ballot::CiphertextBallot {
    electionguard::ballot::CiphertextBallot {
        state: None,
        ..ballot.submit(electionguard::ballot::BallotBoxState::Unknown)
    }
}

/// Posts a client-encrypted ballot (reference JSON); `spoil` challenges it.
pub async fn submit_ballot(
    server: &TestServer,
    election: &str,
    credential: &str,
    ballot: &electionguard::ballot::CiphertextBallot,
    spoil: bool,
) -> (u16, serde_json::Value) {
    let action = if spoil { "?action=spoil" } else { "" };
    let answer = reqwest::Client::new()
        .post(format!(
            "{}/api/elections/{election}/ballots{action}",
            server.url
        ))
        .bearer_auth(credential)
        .header("content-type", "application/json")
        .body(electionguard::json::to_reference_json(ballot))
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    (
        status,
        answer.json().await.unwrap_or(serde_json::Value::Null),
    )
}

/// Creates an election of one 1-of-3 contest (3 guardians, quorum 2) with `voters`
/// credentials.
pub async fn small_election(
    client: &amarvote::commands::client::Client,
    admin: &str,
    voters: u32,
) -> (String, Vec<String>, CreatedElection) {
    let contest = NewContest::between("C", ["a", "b", "c"]);
    let election = NewElection::server_run("T", vec![contest], 3, 2);
    let created = client.create_election(admin, &election).await.unwrap();
    let id = created.election_id.clone();
    let credentials = client
        .issue_credentials(admin, &id, voters)
        .await
        .unwrap()
        .credentials;
    (id, credentials, created)
}

/// Waits until a job is done, every chunk processed.
pub async fn wait_done(client: &amarvote::commands::client::Client, job: &str) {
    for _ in 0..600 {
        let status = client.job(job).await.unwrap();
        if status.state == JobState::Done {
            assert_eq!(status.processed_chunks, status.total_chunks);
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("job {job} did not finish");
}

pub async fn status_of(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, serde_json::Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{}{path}", server.url))
        .body(body.to_string())
        .header("content-type", "application/json");
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (
        status,
        response.json().await.unwrap_or(serde_json::Value::Null),
    )
}
