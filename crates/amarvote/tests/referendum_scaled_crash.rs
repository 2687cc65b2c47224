//! The scaled referendum pipeline (PostgreSQL, RabbitMQ, Redis) under failure, while the
//! load generator drives it: the validator process is killed with SIGKILL and restarted,
//! then the aggregator, then RabbitMQ is restarted. Afterwards the reconciliation holds
//! exactly: every accepted voter counted once, duplicates and ineligible attempts as
//! injected, and no request refused.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use amarvote::referendum::loadgen::{run, LoadgenConfig};
use amarvote::referendum::metrics::ReferendumMetrics;
use amarvote::referendum::rate_limit::RateLimit;
use amarvote::referendum::scaled::ScaledParts;
use amarvote::referendum::voter_hash::ElectionSecret;

const ADMIN: &str = "scaled-crash-admin-token";

/// The services' addresses, as the role processes read them from the environment.
struct Services {
    database: String,
    amqp: String,
    redis: String,
    prefix: String,
}

/// A role process, killed when dropped.
struct Role(Child);

impl Drop for Role {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Role {
    fn start(role: &str, services: &Services) -> Role {
        let child = Command::new(env!("CARGO_BIN_EXE_amarvote"))
            .args(["referendum", role, "--prefix", &services.prefix, "--listen"])
            .arg(format!("127.0.0.1:{}", common::free_port()))
            .env("DATABASE_URL", &services.database)
            .env("AMQP_URL", &services.amqp)
            .env("REDIS_URL", &services.redis)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the amarvote binary starts");
        Role(child)
    }

    /// SIGKILL, then a new process in its place.
    fn kill_and_restart(&mut self, role: &str, services: &Services) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
        *self = Role::start(role, services);
    }
}

/// The ingestion API in this process: it stays up, so every vote it answers 202 is on the queue.
async fn start_ingest(services: &Services) -> String {
    let parts = ScaledParts::connect(
        &services.database,
        &services.amqp,
        &services.redis,
        &services.prefix,
    )
    .await
    .unwrap();
    let router = parts.ingest_router(
        &ElectionSecret::generate().unwrap(),
        ADMIN.to_owned(),
        RateLimit::default(),
        ReferendumMetrics::new(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router.into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_validator_and_aggregator_and_a_broker_restart_lose_nothing() {
    let (amqp, vhost) = common::rabbitmq_vhost();
    let _vhost = common::VhostGuard(vhost);
    let (redis, prefix) = common::redis_url_and_prefix();
    let services = Services {
        database: common::postgres_url().await,
        amqp,
        redis,
        prefix,
    };
    let server = start_ingest(&services).await;
    let mut validator = Role::start("validate", &services);
    let mut aggregator = Role::start("aggregate", &services);
    let config = LoadgenConfig {
        server,
        admin_token: ADMIN.to_owned(),
        voters: 4_000,
        rate: 500.0,
        duration: Duration::from_secs(8),
        duplicate_rate: 0.1,
        invalid_rate: 0.05,
        concurrency: 32,
        drain_timeout: Duration::from_secs(120),
    };
    let load = tokio::spawn(async move { run(&config).await });

    tokio::time::sleep(Duration::from_secs(2)).await;
    validator.kill_and_restart("validate", &services);
    tokio::time::sleep(Duration::from_secs(2)).await;
    aggregator.kill_and_restart("aggregate", &services);
    tokio::time::sleep(Duration::from_secs(1)).await;
    common::restart_rabbitmq().await;

    let report = load.await.unwrap().unwrap();
    assert!(
        report.sent > 3_000,
        "the load ran through the failures: {report:?}"
    );
    assert!(report.reconciled(), "{report:?}");
    drop((validator, aggregator));
    common::delete_redis_keys(&services.redis, &services.prefix).await;
}
