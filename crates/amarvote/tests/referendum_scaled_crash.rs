//! The scaled referendum pipeline (PostgreSQL, RabbitMQ, Redis; every role its own
//! process: two ingest APIs, two validators, an aggregator) while voters make several
//! attempts each, with different choices, at random moments: a validator, the
//! aggregator and an ingest API are killed with SIGKILL and restarted, then RabbitMQ is
//! restarted. For every voter the attempt answered 202 first is the one counted and
//! every later one a duplicate, the totals are exact, every status is final soon after.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::crowd;

const ADMIN: &str = "0f3a9c2e7b1d4f6a8c0e2b4d6f8a1c3e";
const VOTERS: usize = 1_200;
const ATTEMPTS: usize = 3;
const SPREAD: Duration = Duration::from_secs(8);
const LAW: &str = "loi-scaled-crash";

/// The services' addresses, as the role processes read them from the environment.
struct Services {
    database: String,
    amqp: String,
    redis: String,
    prefix: String,
    secret_file: std::path::PathBuf,
}

/// A role process, killed when dropped.
struct Role {
    child: Child,
    role: &'static str,
    port: u16,
}

impl Drop for Role {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Role {
    fn start(role: &'static str, services: &Services) -> Role {
        Role::start_on(role, services, common::free_port())
    }

    fn start_on(role: &'static str, services: &Services, port: u16) -> Role {
        let mut command = Command::new(env!("CARGO_BIN_EXE_amarvote"));
        command
            .args(["referendum", role, "--prefix", &services.prefix, "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .env("DATABASE_URL", &services.database)
            .env("AMQP_URL", &services.amqp)
            .env("REDIS_URL", &services.redis)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if role == "ingest" {
            command
                .arg("--secret-file")
                .arg(&services.secret_file)
                .args(["--vote-rate-limit", "1000000"])
                .env("AMARVOTE_ADMIN_TOKEN", ADMIN);
        }
        let child = command.spawn().expect("the amarvote binary starts");
        Role { child, role, port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// SIGKILL, then a new process in its place (on the same port).
    fn kill_and_restart(&mut self, services: &Services) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        *self = Role::start_on(self.role, services, self.port);
    }
}

async fn wait_up(http: &reqwest::Client, base: &str) {
    common::wait_started(http, base, Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_roles_and_a_broker_restart_count_every_voters_earliest_answered_attempt() {
    let (amqp, vhost) = common::rabbitmq_vhost();
    let _vhost = common::VhostGuard(vhost);
    let (redis, prefix) = common::redis_url_and_prefix();
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("referendum.secret");
    std::fs::write(&secret_file, "ab".repeat(32)).unwrap();
    let services = Services {
        database: common::postgres_url().await,
        amqp,
        redis,
        prefix,
        secret_file,
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    // The ingest roles first, one after the other: the first migrates the database.
    let mut ingest_a = Role::start("ingest", &services);
    wait_up(&http, &ingest_a.url()).await;
    let ingest_b = Role::start("ingest", &services);
    wait_up(&http, &ingest_b.url()).await;
    let mut validator = Role::start("validate", &services);
    let _second_validator = Role::start("validate", &services);
    let mut aggregator = Role::start("aggregate", &services);
    crowd::set_up(&http, &ingest_a.url(), ADMIN, LAW, VOTERS).await;

    let bases = Arc::new(vec![ingest_a.url(), ingest_b.url()]);
    let voting = {
        let (http, bases) = (http.clone(), bases.clone());
        tokio::spawn(async move { crowd::vote(&http, bases, LAW, VOTERS, ATTEMPTS, SPREAD).await })
    };
    let started = Instant::now();
    let at = |fraction: f64| tokio::time::sleep_until((started + SPREAD.mul_f64(fraction)).into());
    at(0.2).await;
    validator.kill_and_restart(&services);
    at(0.4).await;
    aggregator.kill_and_restart(&services);
    at(0.55).await;
    ingest_a.kill_and_restart(&services);
    at(0.7).await;
    common::restart_rabbitmq().await;
    let restarted = Instant::now();

    let attempts = tokio::time::timeout(Duration::from_secs(180), voting)
        .await
        .expect("every attempt got its 202")
        .unwrap();
    assert_eq!(attempts.len(), VOTERS * ATTEMPTS);
    let (statuses, _) =
        crowd::final_statuses(&http, &ingest_b.url(), &attempts, Duration::from_secs(60)).await;
    let final_after_restart = restarted.elapsed();
    let results = crowd::counted_results(&http, &ingest_b.url(), LAW, VOTERS).await;
    let verdict = crowd::check(&attempts, &statuses, &results);
    eprintln!("{verdict:?}; every status final {final_after_restart:?} after the broker restart");
    assert!(
        final_after_restart < Duration::from_secs(30),
        "statuses took {final_after_restart:?} to be final after the broker restart"
    );
    common::delete_redis_keys(&services.redis, &services.prefix).await;
}
