//! The referendum pipeline on PostgreSQL, RabbitMQ and Redis: each stage as
//! its own role (here, in one test process), reconciled by the load generator.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use amarvote::adapters::vote_queue_amqp::AmqpVoteQueue;
use amarvote::commands::referendum::loadgen::run;
use amarvote::commands::referendum::parts::Parts;
use amarvote::domain::vote_messages::{encode, VoteMessage};
use amarvote::domain::voter_hash::{Choice, ElectionSecret, LockKey, VoterHash};
use amarvote::metrics::referendum::ReferendumMetrics;
use amarvote::ports::vote_queue::{Stream, VoteDelivery, VoteQueue};
use amarvote::referendum::stage::receipts;
use amarvote::referendum::VoteLimits;
use tokio::sync::watch;

const ADMIN: &str = "scaled-admin-token";

struct Scaled {
    url: String,
    parts: Parts,
    metrics: std::sync::Arc<ReferendumMetrics>,
    _shutdown: watch::Sender<bool>,
    _vhost: common::VhostGuard,
    redis: (String, String),
}

impl Scaled {
    async fn clean_up(self) {
        common::delete_redis_keys(&self.redis.0, &self.redis.1).await;
    }
}

async fn start() -> Scaled {
    let database = common::postgres_url().await;
    let (amqp, vhost) = common::rabbitmq_vhost();
    let (redis, prefix) = common::redis_url_and_prefix();
    let connect = || Parts::scaled(&database, &amqp, &redis, &prefix);
    let (tx, rx) = watch::channel(false);
    let metrics = ReferendumMetrics::new();
    let ingest = connect().await.unwrap();
    let limits = VoteLimits {
        per_client: 1_000_000,
        ..VoteLimits::default()
    };
    let router = ingest.ingest_router(
        &ElectionSecret::generate().unwrap(),
        ADMIN.to_owned(),
        &limits,
        metrics.clone(),
    );
    for _ in 0..2 {
        connect()
            .await
            .unwrap()
            .spawn_validator(&limits, metrics.clone(), rx.clone());
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
        metrics,
        _shutdown: tx,
        _vhost: common::VhostGuard(vhost),
        redis: (redis, prefix),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_against_two_validators_and_an_aggregator_reconciles_exactly() {
    let server = start().await;
    let report = run(&common::small_loadgen(&server.url, ADMIN))
        .await
        .unwrap();
    assert!(report.reconciled(), "{report:?}");
    server.clean_up().await;
}

/// The eligible set, as `referendum load` would put it back from the hash files.
async fn eligible_hashes(redis: &str, prefix: &str) -> Vec<VoterHash> {
    let client = redis::Client::open(redis).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let members: Vec<String> = redis::cmd("SMEMBERS")
        .arg(format!("{prefix}valid_hashes"))
        .query_async(&mut conn)
        .await
        .unwrap();
    members
        .iter()
        .map(|m| VoterHash::from_hex(m).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_emptied_mid_stream_holds_the_votes_until_reloaded_then_reconciles_exactly() {
    let server = start().await;
    let (redis, prefix) = server.redis.clone();
    let config = common::small_loadgen(&server.url, ADMIN);
    let load = tokio::spawn(async move { run(&config).await });
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let eligible = eligible_hashes(&redis, &prefix).await;
    assert!(!eligible.is_empty(), "the load generator loaded its voters");
    common::delete_redis_keys(&redis, &prefix).await;

    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let health: serde_json::Value = reqwest::get(format!("{}/api/v1/health", server.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["registry"]["readiness"], "missing", "{health}");
    assert_eq!(
        server.metrics.registry_ready.get(),
        0,
        "the validators hold the votes"
    );

    let registry = &server.parts.registry;
    registry.load(eligible.clone()).await.unwrap();
    registry.finish_load(eligible.len() as u64).await.unwrap();
    let report = load.await.unwrap().unwrap();
    assert!(
        report.reconciled(),
        "no voter told not_eligible, none pending, none counted twice: {report:?}"
    );
    assert_eq!(server.metrics.registry_ready.get(), 1);
    server.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_votes_count_once_and_malformed_ones_are_dead_lettered() {
    let server = start().await;
    let tables = &server.parts.tables;
    tables.create_law("loi-r", "").await.unwrap();
    let vote = VoteMessage {
        request_id: "vote-000000000000000000000002".to_owned(),
        voter_hash: VoterHash::from_bytes([9; 32]),
        lock_key: LockKey(VoterHash::from_bytes([10; 32])),
        law_id: "loi-r".to_owned(),
        vote: Choice::Oui,
        sequence: 1,
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
        if tables.results("loi-r").await.unwrap().counts.oui == 1 && dead == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    queue
        .publish(Stream::Aggregation, &[encode(&vote)])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let standing = tables.results("loi-r").await.unwrap();
    assert_eq!((standing.counts.oui, standing.audited), (1, 1));
    assert_eq!(queue.dead_letters(Stream::Aggregation).await.unwrap(), 1);
    assert_eq!(queue.dead_letters(Stream::Validation).await.unwrap(), 1);
    server.clean_up().await;
}

/// Consumes until `want` deliveries have arrived (or five seconds pass).
async fn consume_n(queue: &AmqpVoteQueue, want: usize, max_batch: usize) -> Vec<VoteDelivery> {
    let mut got = Vec::new();
    for _ in 0..50 {
        if got.len() >= want {
            break;
        }
        let room = (want - got.len()).min(max_batch);
        got.extend(
            queue
                .consume(Stream::Review, room, Duration::from_millis(100))
                .await
                .unwrap(),
        );
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_travels_as_one_message_and_comes_back_whole_if_any_part_is_not_acked() {
    let (amqp, vhost) = common::rabbitmq_vhost();
    let _vhost = common::VhostGuard(vhost);
    let queue = AmqpVoteQueue::connect(&amqp).await.unwrap();
    let bodies: Vec<Vec<u8>> = (0..5).map(|i| format!("part {i}").into_bytes()).collect();
    queue.publish(Stream::Review, &bodies).await.unwrap();
    assert_eq!(
        queue.depth(Stream::Review).await.unwrap(),
        1,
        "one envelope"
    );

    // Parts beyond a batch wait for the next one, in order.
    let first = consume_n(&queue, 3, 3).await;
    let rest = consume_n(&queue, 2, 3).await;
    let got: Vec<Vec<u8>> = first.iter().chain(&rest).map(|d| d.body.clone()).collect();
    assert_eq!(got, bodies);
    assert!(first.iter().all(|d| !d.redelivered));

    // One part requeued, one dropped unsettled, one dead-lettered: the whole envelope returns.
    let mut parts = first.into_iter().chain(rest);
    let (a, b, c, d, e) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    queue
        .ack(Stream::Review, receipts(vec![a, b]))
        .await
        .unwrap();
    queue
        .dead_letter(Stream::Review, receipts(vec![c]), "test")
        .await
        .unwrap();
    queue
        .requeue(Stream::Review, receipts(vec![d]))
        .await
        .unwrap();
    drop(e);
    let again = consume_n(&queue, 5, 10).await;
    assert_eq!(again.len(), 5);
    assert!(again.iter().all(|d| d.redelivered));
    assert_eq!(queue.dead_letters(Stream::Review).await.unwrap(), 1);

    // All acked: the stream is empty and stays so.
    queue.ack(Stream::Review, receipts(again)).await.unwrap();
    assert!(consume_n(&queue, 1, 1).await.is_empty());
    assert_eq!(queue.depth(Stream::Review).await.unwrap(), 0);
}

/// Roles of both systems started together on a fresh database, as an orchestrator starts
/// them: every one comes up (the schemas are applied under one lock), and each system's
/// version is recorded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_of_both_systems_starts_at_once_on_a_fresh_database() {
    use amarvote::adapters::sql_store::SqlStore;
    use amarvote::adapters::vote_tables::VoteTables;
    let url = common::postgres_url().await;
    let mut starts = tokio::task::JoinSet::new();
    for role in 0..8 {
        let url = url.clone();
        starts.spawn(async move {
            if role % 2 == 0 {
                SqlStore::connect(&url)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            } else {
                VoteTables::connect(&url)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
        });
    }
    while let Some(started) = starts.join_next().await {
        started
            .unwrap()
            .expect("a role failed to start beside the others");
    }
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    for table in ["schema_version", "referendum_schema_version"] {
        let rows: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(rows, 1, "{table}");
    }
}

/// A law's results are read while batches commit: every read shows each batch in its
/// count and its audit together or in neither (the cold-start test once read the count
/// before a batch and the audit after it: 100 counted, 150 audited). On PostgreSQL and on
/// SQLite (WAL), as the embedded default runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_read_while_batches_commit_never_show_half_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("votes.db").display()
    );
    for url in [common::postgres_url().await, sqlite] {
        reads_while_batches_commit(&url).await;
    }
}

async fn reads_while_batches_commit(url: &str) {
    use amarvote::adapters::vote_tables::VoteTables;
    use amarvote::ports::vote_store::VoteStore;
    let tables = VoteTables::connect(url).await.unwrap();
    let writer = tables.clone();
    let batches = tokio::spawn(async move {
        for batch in 0..60u8 {
            let votes: Vec<VoteMessage> = (0..20u8).map(|i| snapshot_vote(batch, i)).collect();
            writer.record_votes(&votes).await.unwrap();
        }
    });
    let mut seen_midway = std::collections::BTreeSet::new();
    while !batches.is_finished() {
        let tally = tables.results("loi-snapshot").await.unwrap();
        assert_eq!(
            tally.counts.oui + tally.counts.non,
            tally.audited,
            "a read saw half a batch: {tally:?}"
        );
        if (1..1200).contains(&tally.audited) {
            seen_midway.insert(tally.audited);
        }
    }
    batches.await.unwrap();
    let tally = tables.results("loi-snapshot").await.unwrap();
    assert_eq!(
        (tally.counts.oui, tally.counts.non, tally.audited),
        (780, 420, 1200)
    );
    assert!(
        seen_midway.len() >= 5,
        "too few reads fell between batches to test anything: {seen_midway:?}"
    );
}

/// Voter `i` of batch `batch`: one in three votes non.
fn snapshot_vote(batch: u8, i: u8) -> VoteMessage {
    let mut bytes = [7u8; 32];
    bytes[..2].copy_from_slice(&[batch, i]);
    let hash = VoterHash::from_bytes(bytes);
    VoteMessage {
        request_id: format!("r-{batch}-{i}"),
        voter_hash: hash,
        lock_key: LockKey(hash),
        law_id: "loi-snapshot".into(),
        vote: match i % 3 {
            0 => Choice::Non,
            _ => Choice::Oui,
        },
        sequence: u64::from(batch) * 100 + u64::from(i),
        received_at: 0,
    }
}
