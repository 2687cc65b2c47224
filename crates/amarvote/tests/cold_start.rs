//! Every scaled role started at once, as an orchestrator starts them, and before the
//! services they need: the election's `api` and `worker`, the referendum's `ingest`,
//! `validate` and `aggregate`, each its own process. PostgreSQL, RabbitMQ and Redis are
//! reached through relays the test opens one after the other, so that for a while each
//! service is "not there yet". Every role must answer 503 naming the service it waits
//! for, come up once the last one is there, and then count exactly: an election run
//! through the API (results equal the ballots cast, its record verified) and a
//! referendum's crowd (first answered vote stands, the rest duplicates).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::crowd;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const ADMIN: &str = "5c1e9a7b3d2f4e6a8b0c2d4e6f8a0b1c";
const LAW: &str = "loi-cold-start";
const VOTERS: usize = 150;

/// A service reached through a loopback port that nobody listens on until [`Relay::open`].
struct Relay {
    port: u16,
    target: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl Relay {
    fn to(target: &str) -> Relay {
        Relay {
            port: common::free_port(),
            target: target.parse().unwrap(),
            task: None,
        }
    }

    /// From now on, connections to the relay's port reach the service.
    async fn open(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("the relay's port is still free");
        let target = self.target;
        self.task = Some(tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if let Ok(mut service) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut service).await;
                    }
                });
            }
        }));
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// A role process, killed when dropped; its standard error kept for the failure message.
struct Role {
    name: &'static str,
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Role {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Role {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    fn still_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("{} exited ({status}):\n{}", self.name, self.log_tail());
        }
    }
}

/// The environment every role reads its services and secrets from.
struct Services {
    env: Vec<(&'static str, String)>,
    prefix: String,
    secret_file: PathBuf,
    logs: PathBuf,
}

impl Services {
    fn start(&self, name: &'static str, args: &[&str]) -> Role {
        let port = common::free_port();
        let log = self.logs.join(format!("{name}.log"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_amarvote"));
        command
            .args(args)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        if args[0] == "referendum" {
            command.args(["--prefix", &self.prefix]);
        }
        if args.get(1) == Some(&"ingest") {
            command
                .arg("--secret-file")
                .arg(&self.secret_file)
                .args(["--vote-rate-limit", "1000000"]);
        }
        Role {
            name,
            child: command.spawn().expect("the amarvote binary starts"),
            port,
            log,
        }
    }

    /// Every role of both systems, started in the same instant.
    fn start_every_role(&self) -> Vec<Role> {
        vec![
            self.start("api", &["api"]),
            self.start("worker", &["worker", "--chunk-size", "4"]),
            self.start("ingest", &["referendum", "ingest"]),
            self.start("validate", &["referendum", "validate"]),
            self.start("aggregate", &["referendum", "aggregate"]),
        ]
    }
}

fn services_through(database: &str, amqp: &str, redis: &str, prefix: &str, dir: &Path) -> Services {
    let secret_file = dir.join("referendum.secret");
    std::fs::write(&secret_file, "cd".repeat(32)).unwrap();
    let server_key = amarvote::service::new_credential() + &amarvote::service::new_credential();
    Services {
        env: vec![
            ("DATABASE_URL", database.to_owned()),
            ("AMQP_URL", amqp.to_owned()),
            ("REDIS_URL", redis.to_owned()),
            ("AMARVOTE_SERVER_KEY", server_key),
            ("AMARVOTE_ADMIN_TOKEN", ADMIN.to_owned()),
        ],
        prefix: prefix.to_owned(),
        secret_file,
        logs: dir.to_owned(),
    }
}

/// Waits until every role says it waits for `service` (or, with `None`, has started).
async fn until_every_role(
    http: &reqwest::Client,
    roles: &mut [Role],
    service: Option<&str>,
    within: Duration,
) {
    let deadline = Instant::now() + within;
    for role in roles.iter_mut() {
        loop {
            role.still_running();
            let answer = common::health(http, &role.url()).await;
            let waiting = answer
                .as_ref()
                .and_then(|(_, starting)| starting.as_deref());
            let arrived = match service {
                Some(service) => waiting == Some(&format!("starting: waiting for {service}")),
                None => answer.is_some() && waiting.is_none(),
            };
            if arrived {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not reach {service:?} within {within:?} (answer {answer:?}):\n{}",
                role.name,
                role.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_role_started_before_its_services_waits_for_them_then_counts_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let database = common::postgres_url().await;
    let (_, vhost) = common::rabbitmq_vhost();
    let _vhost = common::VhostGuard(vhost.clone());
    let (redis, prefix) = common::redis_url_and_prefix();
    let database_name = database.rsplit_once('/').unwrap().1.to_owned();
    let mut relays = [
        Relay::to("127.0.0.1:5432"),
        Relay::to("127.0.0.1:5672"),
        Relay::to("127.0.0.1:6379"),
    ];
    let services = services_through(
        &format!(
            "postgres://postgres@127.0.0.1:{}/{database_name}",
            relays[0].port
        ),
        &format!("amqp://guest:guest@127.0.0.1:{}/{vhost}", relays[1].port),
        &format!("redis://127.0.0.1:{}", relays[2].port),
        &prefix,
        dir.path(),
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();

    let mut roles = services.start_every_role();
    until_every_role(
        &http,
        &mut roles,
        Some("PostgreSQL"),
        Duration::from_secs(20),
    )
    .await;
    let began = Instant::now();
    relays[0].open().await;
    until_every_role(&http, &mut roles, Some("RabbitMQ"), Duration::from_secs(20)).await;
    relays[1].open().await;
    // The election's roles need no Redis: they start here; the referendum's wait on.
    until_every_role(&http, &mut roles[..2], None, Duration::from_secs(20)).await;
    until_every_role(
        &http,
        &mut roles[2..],
        Some("Redis"),
        Duration::from_secs(20),
    )
    .await;
    relays[2].open().await;
    let opened = Instant::now();
    until_every_role(&http, &mut roles, None, Duration::from_secs(20)).await;
    eprintln!(
        "every role up {:?} after the last service, {:?} after the first",
        opened.elapsed(),
        began.elapsed()
    );

    let (api, ingest) = (roles[0].url(), roles[2].url());
    let election = run_demo_election(&api, dir.path());
    crowd::set_up(&http, &ingest, ADMIN, LAW, VOTERS).await;
    let attempts = crowd::vote(
        &http,
        Arc::new(vec![ingest.clone()]),
        LAW,
        VOTERS,
        2,
        Duration::from_secs(2),
    )
    .await;
    let (statuses, _) =
        crowd::final_statuses(&http, &ingest, &attempts, Duration::from_secs(60)).await;
    let results = crowd::counted_results(&http, &ingest, LAW, VOTERS).await;
    let verdict = crowd::check(&attempts, &statuses, &results);
    eprintln!("{verdict:?}");
    let election = election.join().unwrap();
    assert!(
        election.status.success(),
        "the election through the cold-started roles:\n{}\n{}\n{}",
        String::from_utf8_lossy(&election.stdout),
        String::from_utf8_lossy(&election.stderr),
        roles[1].log_tail()
    );
    for role in &mut roles {
        role.still_running();
    }
    common::delete_redis_keys(&redis, &prefix).await;
}

/// The whole election through the API (cast, tally, decryption, combine, record
/// verified), in a thread: the demo client fails unless the results equal its ballots.
fn run_demo_election(api: &str, dir: &Path) -> std::thread::JoinHandle<std::process::Output> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_amarvote"));
    command
        .args(["demo", "--server", api, "--admin-token", ADMIN])
        .args(["--ballots", "12", "--guardians", "3", "--quorum", "2"])
        .args(["--missing", "1", "--spoil", "0.2", "--record"])
        .arg(dir.join("record"));
    std::thread::spawn(move || command.output().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_role_started_in_the_same_instant_on_a_fresh_database_comes_up() {
    // Five processes create both systems' tables at once: the schema is applied under
    // one advisory lock, so none fails on a half-made catalogue.
    let dir = tempfile::tempdir().unwrap();
    let database = common::postgres_url().await;
    let (amqp, vhost) = common::rabbitmq_vhost();
    let _vhost = common::VhostGuard(vhost);
    let (redis, prefix) = common::redis_url_and_prefix();
    let services = services_through(&database, &amqp, &redis, &prefix, dir.path());
    let http = reqwest::Client::new();
    let mut roles = services.start_every_role();
    until_every_role(&http, &mut roles, None, Duration::from_secs(30)).await;
    common::delete_redis_keys(&redis, &prefix).await;
}

#[test]
fn a_refusal_is_not_waited_for_and_patience_ends() {
    let closed = common::free_port();
    let key = amarvote::service::new_credential() + &amarvote::service::new_credential();
    let run = |database: String, amqp: &str, wait: &str| {
        let started = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_amarvote"))
            .args([
                "worker",
                "--listen",
                "127.0.0.1:0",
                "--dependency-wait",
                wait,
            ])
            .env("DATABASE_URL", database)
            .env("AMQP_URL", amqp)
            .env("AMARVOTE_SERVER_KEY", &key)
            .env("AMARVOTE_ADMIN_TOKEN", ADMIN)
            .output()
            .unwrap();
        assert!(!out.status.success());
        (
            String::from_utf8_lossy(&out.stderr).into_owned(),
            started.elapsed(),
        )
    };
    // Nothing listens: tried again with backoff for the patience given, then a clear end.
    let (text, took) = run(
        format!("postgres://postgres@127.0.0.1:{closed}/none"),
        "amqp://guest:guest@127.0.0.1:5672/%2f",
        "2",
    );
    assert!(
        text.contains("cannot open PostgreSQL") && text.contains("gave up"),
        "{text}"
    );
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(10),
        "{took:?}"
    );
    // A malformed URL is no service that is late: refused at once, naming the variable.
    let database = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(common::postgres_url());
    let (text, took) = run(
        database.clone(),
        "amqp://guest:guest@127.0.0.1:not-a-port/",
        "300",
    );
    assert!(text.contains("AMQP_URL"), "{text}");
    assert!(
        took < Duration::from_secs(5),
        "checked before any wait: {took:?}"
    );
    // A broker that refuses the login will refuse it again: no wait either.
    let (text, took) = run(
        database,
        "amqp://guest:wrong-password@127.0.0.1:5672/%2f",
        "300",
    );
    assert!(
        text.contains("cannot open RabbitMQ") && !text.contains("gave up"),
        "{text}"
    );
    assert!(took < Duration::from_secs(20), "{took:?}");
}
