//! The scaled roles of both systems on a cluster of test hosts (network namespaces on one
//! private switch, `hosts.rs`), with real network faults while an election's jobs and a
//! referendum's votes are in flight.
//!
//! Hosts: `data` (its own PostgreSQL, RabbitMQ node and Redis), `lb` (HAProxy checking
//! `/health`), `api1` and `api2` (`amarvote api` and `referendum ingest`), `wk1` and `wk2`
//! (`amarvote worker` and `referendum validate`), `agg` (`referendum aggregate`), and
//! `cli`, where this test's voters, guardians and administrator run and reach only the
//! load balancer, over HTTPS (a CA of the test's own; HAProxy re-encrypts to the API
//! hosts, and every role serves HTTPS). Every link that crosses hosts is TLS: PostgreSQL
//! (`sslmode=verify-full`, `hostssl` only), RabbitMQ (AMQPS only) and Redis (TLS only).
//! Each phase starts an election (`amarvote demo
//! --server`, which fails unless the published results equal its ballots and the exported
//! record verifies) and a
//! crowd of referendum voters (two attempts each, resubmitting what got no answer), applies
//! one fault, heals it, and then checks both: the first answered vote of each voter stands,
//! every other attempt is a duplicate, the totals are the counted choices. The time each
//! fault took to heal is printed.
//!
//! Needs root and Debian's iproute2, nftables, haproxy, postgresql, rabbitmq-server and
//! redis-server; fails saying which is missing.

#[path = "../common/mod.rs"]
mod common;
mod hosts;
mod services;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::crowd;
use hosts::{Host, Network};
use nix::sys::signal::Signal;
use serde_json::{json, Value};
use services::{Postgres, Process, Rabbit, Redis, AMQPS_PORT};

const DATA: Host = Host::new("data", 10);
const LB: Host = Host::new("lb", 20);
const API1: Host = Host::new("api1", 21);
const API2: Host = Host::new("api2", 22);
const WK1: Host = Host::new("wk1", 31);
const WK2: Host = Host::new("wk2", 32);
const AGG: Host = Host::new("agg", 40);
const CLI: Host = Host::new("cli", 50);
const HOSTS: [Host; 8] = [DATA, LB, API1, API2, WK1, WK2, AGG, CLI];

const ADMIN: &str = "3f1e9a7b3d2f4e6a8b0c2d4e6f8a0b1c";
/// Seconds between AMQP heartbeats: a cut-off peer is given up after two missed ones.
const HEARTBEAT_S: u64 = 4;
const VOTERS: usize = 120;

/// A role: where it runs, its arguments, and the port of its HTTP edge.
struct RoleSpec {
    key: &'static str,
    host: Host,
    args: &'static [&'static str],
    port: u16,
}

const ROLES: [RoleSpec; 9] = [
    RoleSpec {
        key: "api1",
        host: API1,
        args: &["api"],
        port: 8080,
    },
    RoleSpec {
        key: "ingest1",
        host: API1,
        args: &["referendum", "ingest"],
        port: 8081,
    },
    RoleSpec {
        key: "api2",
        host: API2,
        args: &["api"],
        port: 8080,
    },
    RoleSpec {
        key: "ingest2",
        host: API2,
        args: &["referendum", "ingest"],
        port: 8081,
    },
    RoleSpec {
        key: "worker1",
        host: WK1,
        args: &["worker", "--chunk-size", "4"],
        port: 9100,
    },
    RoleSpec {
        key: "validate1",
        host: WK1,
        args: &["referendum", "validate"],
        port: 9101,
    },
    RoleSpec {
        key: "worker2",
        host: WK2,
        args: &["worker", "--chunk-size", "4"],
        port: 9100,
    },
    RoleSpec {
        key: "validate2",
        host: WK2,
        args: &["referendum", "validate"],
        port: 9101,
    },
    RoleSpec {
        key: "aggregate",
        host: AGG,
        args: &["referendum", "aggregate"],
        port: 9102,
    },
];

fn spec(key: &str) -> &'static RoleSpec {
    ROLES
        .iter()
        .find(|r| r.key == key)
        .expect("a role of ROLES")
}

/// Everything the test started, stopped when dropped.
struct Cluster {
    net: Arc<Network>,
    dir: PathBuf,
    logs: PathBuf,
    env: Vec<(&'static str, String)>,
    postgres: Postgres,
    rabbit: Rabbit,
    redis: Redis,
    _haproxy: Process,
    roles: Vec<(&'static str, Process)>,
    http: reqwest::Client,
    /// Every law set up so far, for reloading the registry after Redis comes back empty.
    laws: Vec<String>,
}

impl Cluster {
    fn start(net: Arc<Network>, dir: &Path) -> Cluster {
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        let ca = certificates(dir);
        let postgres = Postgres::start(&net, dir, DATA, "amarvote");
        let rabbit = Rabbit::start(&net, dir, DATA);
        let redis = Redis::start(&net, dir, DATA);
        let haproxy = services::haproxy(&net, &LB, &[API1, API2], dir, &logs);
        let secret = dir.join("referendum.secret");
        std::fs::write(&secret, "ab".repeat(32)).unwrap();
        let mut cluster = Cluster {
            net,
            dir: dir.to_owned(),
            logs,
            env: role_environment(&secret, dir),
            postgres,
            rabbit,
            redis,
            _haproxy: haproxy,
            roles: Vec::new(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
                .build()
                .unwrap(),
            laws: Vec::new(),
        };
        for role in &ROLES {
            cluster.start_role(role.key);
        }
        cluster
    }

    fn start_role(&mut self, key: &'static str) {
        let role = spec(key);
        let mut command = self.net.on(&role.host, env!("CARGO_BIN_EXE_amarvote"));
        command
            .args(role.args)
            .arg("--listen")
            .arg(format!("{}:{}", role.host.ip(), role.port))
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())));
        let process = Process::spawn(key, command, &self.logs);
        self.roles.retain(|(k, _)| *k != key);
        self.roles.push((key, process));
    }

    fn role(&mut self, key: &str) -> &mut Process {
        let found = self.roles.iter_mut().find(|(k, _)| *k == key);
        &mut found.expect("a started role").1
    }

    /// Waits until every role runs and answers `/health` (the roles' liveness).
    async fn all_alive(&mut self, within: Duration) {
        let started = Instant::now();
        for role in &ROLES {
            let url = format!("https://{}:{}", role.host.ip(), role.port);
            loop {
                self.role(role.key).still_running();
                if let Some((200, _)) = common::health(&self.http, &url).await {
                    break;
                }
                if started.elapsed() > within {
                    let log = self.role(role.key).log_tail();
                    panic!(
                        "{} does not answer /health after {within:?}:\n{log}",
                        role.key
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// Waits until the load balancer's own checks found an API host of each system up.
    async fn balanced(&self, within: Duration) {
        let started = Instant::now();
        for url in [self.election_url(), self.referendum_url()] {
            while !matches!(common::health(&self.http, &url).await, Some((200, _))) {
                assert!(
                    started.elapsed() < within,
                    "{url} has no server up after {within:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    fn election_url(&self) -> String {
        format!("https://{}:8080", LB.ip())
    }

    fn referendum_url(&self) -> String {
        format!("https://{}:8081", LB.ip())
    }

    /// Creates a law with its voters, through the load balancer.
    async fn new_law(&mut self, law: &str) -> String {
        crowd::set_up(&self.http, &self.referendum_url(), ADMIN, law, VOTERS).await;
        self.laws.push(law.to_owned());
        law.to_owned()
    }

    /// Loads every law's voters again, as the operator does after Redis lost them: the
    /// registry is marked complete with the last batch only, so no vote is judged before.
    async fn reload_registry(&self) {
        for (n, law) in self.laws.iter().enumerate() {
            let rows: Vec<Value> = (0..VOTERS)
                .map(|i| {
                    let (nas, code) = crowd::credentials(i);
                    json!({ "nas": nas, "code": code, "law_id": law })
                })
                .collect();
            let body = json!({ "voters": rows, "complete": n + 1 == self.laws.len() });
            self.load_voters(&body).await;
        }
    }

    /// Posts one batch of voters, again while the ingestion answers 503 (it reconnects to
    /// the Redis that came back) or the answer is lost, for up to 30 s.
    async fn load_voters(&self, body: &Value) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let answer = self
                .http
                .post(format!("{}/api/v1/admin/voters", self.referendum_url()))
                .bearer_auth(ADMIN)
                .json(body)
                .send()
                .await;
            let status = answer.as_ref().map(|a| a.status().as_u16());
            if status.is_ok_and(|s| s == 200) {
                return;
            }
            assert!(
                matches!(status, Err(_) | Ok(502..=504)) && Instant::now() < deadline,
                "the voters could not be loaded again: {answer:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// An election through the load balancer, as its own process on the client host.
    fn election(&self, name: &str) -> Election {
        let record = self.dir.join(format!("record-{name}"));
        let errors = self.logs.join(format!("election-{name}.err"));
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_amarvote"))
            .args(["demo", "--server", &self.election_url()])
            .args([
                "--admin-token",
                ADMIN,
                "--ballots",
                "24",
                "--guardians",
                "3",
            ])
            .args([
                "--quorum",
                "2",
                "--missing",
                "1",
                "--spoil",
                "0.1",
                "--record",
            ])
            .arg(&record)
            .env("AMARVOTE_CA_FILE", self.dir.join("tls/ca.pem"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&errors).unwrap())
            .spawn()
            .unwrap();
        let (lines, seen) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        Election {
            name: name.to_owned(),
            id: None,
            errors,
            child,
            seen,
            output: Vec::new(),
        }
    }
}

/// The cluster's own CA and one server certificate for every host that serves TLS (the
/// data host's PostgreSQL, the load balancer and every role), written under `tls/`; HAProxy takes the certificate and
/// key in one file. Returns the CA, PEM.
fn certificates(dir: &Path) -> Vec<u8> {
    let tls = dir.join("tls");
    std::fs::create_dir_all(&tls).unwrap();
    let authority = common::tls::Authority::new();
    let addresses: Vec<std::net::IpAddr> = [DATA, LB, API1, API2, WK1, WK2, AGG]
        .iter()
        .map(|h| h.ip().parse().unwrap())
        .collect();
    let server = authority.issue(&addresses);
    std::fs::write(tls.join("ca.pem"), authority.ca_pem()).unwrap();
    std::fs::write(tls.join("server.pem"), &server.cert).unwrap();
    std::fs::write(tls.join("server.key"), &server.key).unwrap();
    std::fs::write(tls.join("haproxy.pem"), [server.cert, server.key].concat()).unwrap();
    authority.ca_pem()
}

/// What every role is given: the data host's services over TLS (each checked against the
/// test's own authority), the secrets, its HTTPS certificate,
/// the load balancer as the one trusted proxy, and a short AMQP heartbeat so that a
/// cut-off peer is noticed soon.
fn role_environment(secret: &Path, dir: &Path) -> Vec<(&'static str, String)> {
    let data = DATA.ip();
    let ca = dir.join("tls/ca.pem");
    let server_key = amarvote::service::new_credential() + &amarvote::service::new_credential();
    vec![
        (
            "DATABASE_URL",
            format!(
                "postgres://postgres@{data}:5432/amarvote?sslmode=verify-full&sslrootcert={}",
                ca.display()
            ),
        ),
        (
            "AMQP_URL",
            format!(
                "amqps://guest:guest@{data}:{AMQPS_PORT}/%2f?heartbeat={HEARTBEAT_S}&cacertfile={}",
                ca.display()
            ),
        ),
        (
            "REDIS_URL",
            format!("rediss://{data}:6379/?cacertfile={}", ca.display()),
        ),
        ("AMARVOTE_SERVER_KEY", server_key),
        ("AMARVOTE_ADMIN_TOKEN", ADMIN.to_owned()),
        ("AMARVOTE_TRUSTED_PROXIES", LB.ip()),
        (
            "AMARVOTE_REFERENDUM_SECRET_FILE",
            secret.display().to_string(),
        ),
        ("AMARVOTE_VOTE_RATE_LIMIT", "1000000".to_owned()),
        (
            "AMARVOTE_TLS_CERT",
            dir.join("tls/server.pem").display().to_string(),
        ),
        (
            "AMARVOTE_TLS_KEY",
            dir.join("tls/server.key").display().to_string(),
        ),
        ("RUST_LOG", "info".to_owned()),
    ]
}

/// A running `amarvote demo --server`, its output read line by line.
struct Election {
    name: String,
    /// The election's id, once the demo has printed it.
    id: Option<String>,
    errors: PathBuf,
    child: Child,
    seen: mpsc::Receiver<String>,
    output: Vec<String>,
}

/// The demo's line once every ballot is cast: its tally job starts next.
const CAST: &str = "ballots encrypted, proved and cast";
/// The demo's line once the election exists: voters cast next.
const CREATED: &str = "created, key ceremony done";

impl Election {
    /// Waits for a line of the demo's output that contains `what`.
    async fn reached(&mut self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            while let Ok(line) = self.seen.try_recv() {
                let found = line.contains(what);
                if line.contains(CREATED) {
                    self.id = line.split_whitespace().nth(1).map(str::to_owned);
                }
                self.output.push(line);
                if found {
                    return;
                }
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                let report = self.report();
                panic!(
                    "election {} ended ({status}) before {what:?}:\n{report}",
                    self.name
                );
            }
            assert!(
                Instant::now() < deadline,
                "election {} never reached {what:?}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until a job of `kind` runs (the fault then hits it mid-way), and says so.
    async fn job_running(&mut self, cluster: &Cluster, kind: &str) {
        self.reached(CREATED).await;
        let id = self.id.clone().expect("the demo prints its election's id");
        let url = format!("{}/api/elections/{id}/jobs", cluster.election_url());
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(answer) = cluster.http.get(&url).send().await {
                let list: Value = answer.json().await.unwrap_or(Value::Null);
                let jobs = list["jobs"].as_array().cloned().unwrap_or_default();
                let job = jobs.iter().find(|j| j["kind"] == kind);
                if job.is_some_and(|j| j["state"] == "running") {
                    return;
                }
                assert!(
                    job.is_none(),
                    "the {kind} job of {} ended before the fault",
                    self.name
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {kind} job of {} runs",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn report(&mut self) -> String {
        while let Ok(line) = self.seen.try_recv() {
            self.output.push(line);
        }
        self.output.join("\n")
    }

    /// Waits for the demo to end, whatever its outcome.
    async fn finished(mut self) -> Election {
        let started = Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            if started.elapsed() > Duration::from_secs(240) {
                let report = self.report();
                panic!("election {} hangs:\n{report}", self.name);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self
    }

    /// Waits for the demo's end: results equal to its ballots, record verified.
    async fn succeeded(self) {
        let mut done = self.finished().await;
        let status = done.child.wait().unwrap();
        let report = done.report();
        let stderr = std::fs::read_to_string(&done.errors).unwrap_or_default();
        assert!(
            status.success() && report.contains("election record written to"),
            "election {} failed:\n{report}\n{stderr}",
            done.name
        );
    }
}

/// A referendum crowd voting through the load balancer.
struct Crowd {
    law: String,
    votes: tokio::task::JoinHandle<Vec<crowd::Attempt>>,
}

impl Crowd {
    /// Every voter of `law` makes two attempts at random moments within `spread`, from now.
    fn vote(cluster: &Cluster, law: String, spread: Duration) -> Crowd {
        let (http, bases) = (
            cluster.http.clone(),
            Arc::new(vec![cluster.referendum_url()]),
        );
        let name = law.clone();
        let votes =
            tokio::spawn(async move { crowd::vote(&http, bases, &name, VOTERS, 2, spread).await });
        Crowd { law, votes }
    }

    /// Every attempt final, the first answered vote of each voter counted, the rest
    /// duplicates; and how many tries got no answer (the fault felt by the voters).
    async fn reconciled(self, cluster: &Cluster) -> (crowd::Verdict, usize) {
        let attempts = tokio::time::timeout(Duration::from_secs(180), self.votes)
            .await
            .expect("every attempt of the crowd answered 202 within 180 s")
            .unwrap();
        let base = cluster.referendum_url();
        let (statuses, _) =
            crowd::final_statuses(&cluster.http, &base, &attempts, Duration::from_secs(120)).await;
        let results = crowd::counted_results(&cluster.http, &base, &self.law, VOTERS).await;
        let unanswered = attempts.iter().map(|a| a.unanswered_tries).sum();
        (crowd::check(&attempts, &statuses, &results), unanswered)
    }
}

/// How one fault healed, from the moment it ended: every role alive again, every attempt
/// of the phase's voters decided and reconciled, and the phase's election published and
/// verified (at once when it finished before the heal).
async fn settled(
    cluster: &mut Cluster,
    fault: &str,
    healed: Instant,
    crowd: Crowd,
    election: Election,
) {
    cluster.all_alive(Duration::from_secs(90)).await;
    let (verdict, unanswered) = crowd.reconciled(cluster).await;
    let votes = healed.elapsed();
    election.succeeded().await;
    let published = healed.elapsed();
    eprintln!(
        "FAULT {fault}: votes decided {votes:.1?} and election published {published:.1?} after \
         the heal; {} voters, {} answered attempts ({unanswered} tries unanswered and sent \
         again), oui {} non {}: first answered vote stands, every other a duplicate",
        verdict.voters, verdict.attempts, verdict.oui, verdict.non
    );
}

/// A worker host cut off the switch, while the decryption job runs, for three heartbeats:
/// the broker gives up its connection and the chunk it held goes to the other worker; the
/// partitioned worker reconnects once healed.
async fn worker_partition(cluster: &mut Cluster) {
    let mut election = cluster.election("partition");
    let law = cluster.new_law("loi-partition").await;
    election.job_running(cluster, "decrypt").await;
    let crowd = Crowd::vote(cluster, law, Duration::from_secs(8));
    cluster.net.partition(&WK1);
    tokio::time::sleep(Duration::from_secs(3 * HEARTBEAT_S)).await;
    cluster.net.heal(&WK1);
    let fault = format!(
        "worker host partitioned {} s during decryption",
        3 * HEARTBEAT_S
    );
    settled(cluster, &fault, Instant::now(), crowd, election).await;
}

/// 10 % of a worker host's packets dropped each way from the last ballot on (nftables;
/// no delay is added: there is no netem here).
async fn lossy_worker(cluster: &mut Cluster) {
    let mut election = cluster.election("loss");
    let law = cluster.new_law("loi-loss").await;
    election.reached(CAST).await;
    let crowd = Crowd::vote(cluster, law, Duration::from_secs(6));
    let lossy = Instant::now();
    cluster.net.lossy(&WK2, 10);
    let finished = election.finished().await;
    cluster.net.lossless(&WK2);
    let fault = format!(
        "worker host losing 10 % of packets for {:.1?} (the jobs' time)",
        lossy.elapsed()
    );
    settled(cluster, &fault, Instant::now(), crowd, finished).await;
}

/// An API host's processes killed (SIGKILL) while voters cast; restarted five seconds later.
async fn api_host_killed(cluster: &mut Cluster) {
    api_host_fault(cluster, "kill", ["api1", "ingest1"], Signal::SIGKILL).await;
}

/// An API host frozen (SIGSTOP) while voters cast; thawed five seconds later.
async fn api_host_frozen(cluster: &mut Cluster) {
    api_host_fault(cluster, "freeze", ["api2", "ingest2"], Signal::SIGSTOP).await;
}

/// Strikes both processes of an API host with `signal` while voters of both systems cast,
/// and heals them five seconds later: a killed process is started again, a frozen one
/// thawed.
async fn api_host_fault(
    cluster: &mut Cluster,
    name: &str,
    roles: [&'static str; 2],
    signal: Signal,
) {
    let mut election = cluster.election(name);
    let law = cluster.new_law(&format!("loi-{name}")).await;
    election.reached(CREATED).await;
    let crowd = Crowd::vote(cluster, law, Duration::from_secs(8));
    // By then the demo's 24 voters are casting and the crowd's first attempts are out.
    tokio::time::sleep(Duration::from_millis(800)).await;
    for role in roles {
        cluster.role(role).signal(signal);
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    for role in roles {
        match signal {
            Signal::SIGSTOP => cluster.role(role).signal(Signal::SIGCONT),
            _ => cluster.start_role(role),
        }
    }
    let fault = match signal {
        Signal::SIGSTOP => "API host frozen 5 s (SIGSTOP)",
        _ => "API host killed (SIGKILL), restarted after 5 s",
    };
    settled(cluster, fault, Instant::now(), crowd, election).await;
}

/// PostgreSQL shut down (fast) while the decryption job runs, and started 2 s later.
async fn postgres_restarted(cluster: &mut Cluster) {
    let mut election = cluster.election("postgres");
    let law = cluster.new_law("loi-postgres").await;
    election.job_running(cluster, "decrypt").await;
    let crowd = Crowd::vote(cluster, law, Duration::from_secs(6));
    let (net, logs) = (cluster.net.clone(), cluster.logs.clone());
    cluster
        .postgres
        .restart(&net, &logs, Duration::from_secs(2));
    settled(
        cluster,
        "PostgreSQL down 2 s during decryption",
        Instant::now(),
        crowd,
        election,
    )
    .await;
}

/// RabbitMQ stopped and started again while votes stream in and voters cast.
async fn rabbitmq_restarted(cluster: &mut Cluster) {
    let mut election = cluster.election("rabbitmq");
    let law = cluster.new_law("loi-rabbitmq").await;
    election.reached(CREATED).await;
    let crowd = Crowd::vote(cluster, law, Duration::from_secs(8));
    // A second in: votes are queued and in the validators' and aggregator's hands.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (net, logs) = (cluster.net.clone(), cluster.logs.clone());
    cluster.rabbit.restart(&net, &logs);
    settled(
        cluster,
        "RabbitMQ restarted mid-referendum",
        Instant::now(),
        crowd,
        election,
    )
    .await;
}

/// Redis killed and started again empty while votes stream in; the operator loads the
/// voters again, and the validators rebuild who voted from PostgreSQL.
async fn redis_restarted_empty(cluster: &mut Cluster) {
    let election = cluster.election("redis");
    let law = cluster.new_law("loi-redis").await;
    let crowd = Crowd::vote(cluster, law, Duration::from_secs(6));
    // Two seconds in: a third of the attempts decided, the rest coming.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let net = cluster.net.clone();
    cluster.redis.restart_empty(&net);
    let restarted = Instant::now();
    cluster.reload_registry().await;
    let fault = format!(
        "Redis restarted empty, voters of {} laws loaded again in {:.1?}",
        cluster.laws.len(),
        restarted.elapsed()
    );
    settled(cluster, &fault, restarted, crowd, election).await;
}

/// The aggregator host cut off for three heartbeats while it commits batches.
async fn aggregator_partition(cluster: &mut Cluster) {
    let election = cluster.election("aggregator");
    let law = cluster.new_law("loi-aggregator").await;
    let crowd = Crowd::vote(cluster, law, Duration::from_secs(6));
    // Two seconds in: the aggregator is committing the first batches.
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.net.partition(&AGG);
    tokio::time::sleep(Duration::from_secs(3 * HEARTBEAT_S)).await;
    cluster.net.heal(&AGG);
    let fault = format!("aggregator host partitioned {} s", 3 * HEARTBEAT_S);
    settled(cluster, &fault, Instant::now(), crowd, election).await;
}

async fn scenario(net: Arc<Network>, dir: PathBuf) {
    let started = Instant::now();
    let mut cluster = Cluster::start(net, &dir);
    cluster.all_alive(Duration::from_secs(120)).await;
    cluster.balanced(Duration::from_secs(30)).await;
    eprintln!("cluster up in {:.1?}", started.elapsed());
    worker_partition(&mut cluster).await;
    lossy_worker(&mut cluster).await;
    api_host_killed(&mut cluster).await;
    api_host_frozen(&mut cluster).await;
    postgres_restarted(&mut cluster).await;
    rabbitmq_restarted(&mut cluster).await;
    redis_restarted_empty(&mut cluster).await;
    aggregator_partition(&mut cluster).await;
    eprintln!(
        "every fault healed; the whole run took {:.1?}",
        started.elapsed()
    );
}

/// Moves the calling thread into a host's network namespace.
fn enter(net: &Network, host: &Host) {
    let path = format!("/run/netns/{}", net.namespace(host));
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
        .unwrap_or_else(|e| panic!("cannot enter {path}: {e}"));
}

/// Fails naming what this machine lacks, before anything is made.
fn preflight() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the cluster test makes network namespaces: run it as root (CI does)"
    );
    let on_path = |program: &str| {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(program).is_file()))
    };
    for (program, package) in [
        ("ip", "iproute2"),
        ("nft", "nftables"),
        ("haproxy", "haproxy"),
        ("redis-server", "redis-server"),
        ("psql", "postgresql-client"),
        ("setpriv", "util-linux"),
    ] {
        assert!(
            on_path(program),
            "the cluster test needs {program} (Debian's {package})"
        );
    }
    for path in [
        PathBuf::from(services::RABBITMQ_SERVER),
        services::postgres_bin("initdb"),
    ] {
        assert!(path.is_file(), "the cluster test needs {}", path.display());
    }
}

#[test]
fn a_cluster_of_hosts_heals_from_partitions_loss_kills_and_restarts_and_counts_exactly() {
    preflight();
    let net = Arc::new(Network::build(&HOSTS));
    let dir = tempfile::Builder::new()
        .prefix("amarvote-cluster")
        .tempdir()
        .unwrap();
    // The data host's PostgreSQL runs as `postgres` and must reach its directory.
    hosts::must(
        std::process::Command::new("chmod")
            .arg("755")
            .arg(dir.path()),
    );
    let (on_client, path) = (net.clone(), dir.path().to_owned());
    let outcome = std::thread::spawn(move || {
        enter(&on_client, &CLI);
        // Built after entering: every thread of the runtime is on the client host too.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(scenario(on_client.clone(), path));
    })
    .join();
    net.teardown();
    if let Err(panic) = outcome {
        eprintln!("logs kept in {}", dir.keep().display());
        std::panic::resume_unwind(panic);
    }
}
