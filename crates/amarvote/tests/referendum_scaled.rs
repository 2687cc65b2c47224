//! The referendum pipeline on PostgreSQL, RabbitMQ and Redis: each stage as
//! its own role (here, in one test process), reconciled by the load generator.

use std::net::SocketAddr;
use std::time::Duration;

use amarvote::referendum::loadgen::{run, LoadgenConfig};
use amarvote::referendum::messages::{encode, VoteMessage};
use amarvote::referendum::metrics::ReferendumMetrics;
use amarvote::referendum::queue::Stream;
use amarvote::referendum::rate_limit::RateLimit;
use amarvote::referendum::scaled::ScaledParts;
use amarvote::referendum::voter_hash::{Choice, ElectionSecret, VoterHash};
use tokio::sync::watch;

const ADMIN: &str = "scaled-admin-token";

fn unique(prefix: &str) -> String {
    let mut bytes = [0u8; 6];
    openssl::rand::rand_bytes(&mut bytes).unwrap();
    format!("{prefix}_{}", amarvote::domain::hex(&bytes))
}

async fn postgres_url() -> String {
    use sqlx::Connection;
    let admin_url = std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let mut conn = sqlx::PgConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|e| panic!("these tests need PostgreSQL at {admin_url}: {e}"));
    let name = unique("amarvote_ref");
    sqlx::Executor::execute(&mut conn, format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap();
    format!("{}/{name}", admin_url.rsplit_once('/').unwrap().0)
}

struct Vhost(String);

impl Drop for Vhost {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.0])
            .output();
    }
}

fn rabbitmq_vhost() -> (String, Vhost) {
    let vhost = unique("amarvote-ref");
    for args in [
        vec!["add_vhost", vhost.as_str()],
        vec![
            "set_permissions",
            "-p",
            vhost.as_str(),
            "guest",
            ".*",
            ".*",
            ".*",
        ],
    ] {
        let out = std::process::Command::new("rabbitmqctl")
            .args(&args)
            .output()
            .expect("these tests need rabbitmqctl (RabbitMQ) on this machine");
        assert!(
            out.status.success(),
            "rabbitmqctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (
        format!("amqp://guest:guest@127.0.0.1:5672/{vhost}"),
        Vhost(vhost),
    )
}

struct Scaled {
    url: String,
    parts: ScaledParts,
    _shutdown: watch::Sender<bool>,
    _vhost: Vhost,
}

async fn start() -> Scaled {
    let database = postgres_url().await;
    let (amqp, vhost) = rabbitmq_vhost();
    let redis = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("{}:", unique("amarvote-ref"));
    let connect = || ScaledParts::connect(&database, &amqp, &redis, &prefix);
    let (tx, rx) = watch::channel(false);
    let metrics = ReferendumMetrics::new();
    let ingest = connect().await.unwrap();
    let router = ingest.ingest_router(
        &ElectionSecret::generate().unwrap(),
        ADMIN.to_owned(),
        RateLimit::default(),
        metrics.clone(),
    );
    for _ in 0..2 {
        connect()
            .await
            .unwrap()
            .spawn_validator(metrics.clone(), rx.clone());
    }
    connect()
        .await
        .unwrap()
        .spawn_aggregator(metrics.clone(), rx.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router.into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Scaled {
        url: format!("http://{addr}"),
        parts: ingest,
        _shutdown: tx,
        _vhost: vhost,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_against_two_validators_and_an_aggregator_reconciles_exactly() {
    let server = start().await;
    let config = LoadgenConfig {
        server: server.url.clone(),
        admin_token: ADMIN.to_owned(),
        voters: 1_500,
        rate: 1_000.0,
        duration: Duration::from_secs(2),
        duplicate_rate: 0.1,
        invalid_rate: 0.05,
        concurrency: 32,
        drain_timeout: Duration::from_secs(60),
    };
    let report = run(&config).await.unwrap();
    assert!(report.reconciled(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_votes_count_once_and_malformed_ones_are_dead_lettered() {
    let server = start().await;
    let tables = &server.parts.tables;
    tables.create_law("loi-r", "").await.unwrap();
    let vote = VoteMessage {
        request_id: "vote-000000000000000000000002".to_owned(),
        voter_hash: VoterHash::from_bytes([9; 32]),
        law_id: "loi-r".to_owned(),
        vote: Choice::Oui,
        received_at: 1,
    };
    let queue = &server.parts.queue;
    queue
        .publish(
            Stream::Aggregation,
            &[encode(&vote), encode(&vote), b"oops".to_vec()],
        )
        .await
        .unwrap();
    queue
        .publish(Stream::Validation, &[b"{}".to_vec()])
        .await
        .unwrap();
    for _ in 0..100 {
        let dead = queue.dead_letters(Stream::Aggregation).await.unwrap()
            + queue.dead_letters(Stream::Validation).await.unwrap();
        if tables.results("loi-r").await.unwrap().oui == 1 && dead == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    queue
        .publish(Stream::Aggregation, &[encode(&vote)])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(tables.results("loi-r").await.unwrap().oui, 1);
    assert_eq!(tables.audited("loi-r").await.unwrap(), 1);
    assert_eq!(queue.dead_letters(Stream::Aggregation).await.unwrap(), 1);
    assert_eq!(queue.dead_letters(Stream::Validation).await.unwrap(), 1);
}
