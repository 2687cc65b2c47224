//! HTTPS on the HTTP edge: `amarvote serve` given a certificate and key (signed by a CA of
//! the test's own) serves a whole election to `amarvote demo --server https://…` that
//! trusts that CA through `AMARVOTE_CA_FILE`; a client that does not trust the CA, and a
//! plain-HTTP request to the HTTPS port, get nothing; a key file that is not one ends the
//! start naming it, before anything listens; a role refuses at once a plain-text link
//! beyond loopback (to its database, broker or Redis, or plain HTTP on a public address),
//! naming it, and an authority file that is not one.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Writes the CA, the server's certificate and its key into `dir`.
fn certificates(dir: &Path) {
    let authority = common::tls::Authority::new();
    let server = authority.issue(&[LOOPBACK]);
    std::fs::write(dir.join("ca.pem"), authority.ca_pem()).unwrap();
    std::fs::write(dir.join("server.pem"), server.cert).unwrap();
    std::fs::write(dir.join("server.key"), server.key).unwrap();
}

fn serve(dir: &Path, port: u16, key: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_amarvote"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"])
        .arg(dir.join("data"))
        .arg("--tls-cert")
        .arg(dir.join("server.pem"))
        .arg("--tls-key")
        .arg(dir.join(key))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn client(ca: Option<&Path>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(5));
    if let Some(ca) = ca {
        let root = reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
        builder = builder.add_root_certificate(root);
    }
    builder.build().unwrap()
}

fn demo(dir: &Path, base: &str) -> Output {
    let admin = std::fs::read_to_string(dir.join("data/admin.token")).unwrap();
    Command::new(env!("CARGO_BIN_EXE_amarvote"))
        .args(["demo", "--server", base, "--admin-token", admin.trim()])
        .args([
            "--ballots",
            "8",
            "--guardians",
            "3",
            "--quorum",
            "2",
            "--missing",
            "1",
        ])
        .args(["--spoil", "0.25", "--record"])
        .arg(dir.join("record"))
        .env("AMARVOTE_CA_FILE", dir.join("ca.pem"))
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_serves_https_to_clients_that_trust_its_ca_and_to_no_one_else() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let port = common::free_port();
    let mut server = serve(dir.path(), port, "server.key");
    let base = format!("https://127.0.0.1:{port}");
    let trusting = client(Some(&dir.path().join("ca.pem")));
    let deadline = Instant::now() + Duration::from_secs(60);
    while trusting.get(format!("{base}/health")).send().await.is_err() {
        assert!(
            Instant::now() < deadline,
            "amarvote serve did not come up over HTTPS"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let stranger = client(None).get(format!("{base}/health")).send().await;
    assert!(
        stranger.is_err(),
        "a client without the CA refuses the server: {stranger:?}"
    );
    let plain = client(None)
        .get(format!("http://127.0.0.1:{port}/health"))
        .send()
        .await;
    assert!(
        plain.is_err() || !plain.as_ref().unwrap().status().is_success(),
        "plain HTTP to the HTTPS port gets nothing: {plain:?}"
    );

    let out = demo(dir.path(), &base);
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        out.status.success(),
        "the demo over HTTPS:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_key_that_is_not_one_ends_the_start_naming_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    std::fs::write(dir.path().join("broken.key"), "not a key").unwrap();
    let started = Instant::now();
    let out = serve(dir.path(), common::free_port(), "broken.key")
        .wait_with_output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("server.pem"), "{said}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "refused at once"
    );
}

/// Starts `args` with `env` and returns what it said once it exited (within 20 s).
fn refused_at_start(args: &[&str], env: &[(&str, &str)]) -> String {
    let started = Instant::now();
    let server_key: String = (0u8..32).map(|b| format!("{:02x}", b * 7)).collect();
    let out = Command::new(env!("CARGO_BIN_EXE_amarvote"))
        .args(args)
        .env_clear()
        .env("AMARVOTE_SERVER_KEY", server_key)
        .env(
            "AMARVOTE_ADMIN_TOKEN",
            "a-strong-admin-token-of-forty-characters-x",
        )
        .env("AMARVOTE_REFERENDUM_SECRET_FILE", "/nonexistent")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(!out.status.success(), "{args:?} started");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "refused at once"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_plain_link_beyond_loopback_is_refused_at_start_by_name() {
    let local_db = ("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/x");
    let local_amqp = ("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f");
    let said = refused_at_start(
        &["worker", "--listen", "127.0.0.1:0"],
        &[
            ("DATABASE_URL", "postgres://pg:hunter2@10.255.255.1/db"),
            local_amqp,
        ],
    );
    assert!(
        said.contains("DATABASE_URL would carry plain text to 10.255.255.1"),
        "{said}"
    );
    assert!(
        !said.contains("hunter2"),
        "the URL's password is never quoted: {said}"
    );
    let said = refused_at_start(
        &["referendum", "validate", "--listen", "127.0.0.1:0"],
        &[
            local_db,
            local_amqp,
            ("REDIS_URL", "redis://10.255.255.2:6379"),
        ],
    );
    assert!(
        said.contains("REDIS_URL would carry plain text to 10.255.255.2"),
        "{said}"
    );
    let said = refused_at_start(&["api", "--listen", "0.0.0.0:0"], &[local_db, local_amqp]);
    assert!(
        said.contains("refusing to serve plain HTTP on 0.0.0.0"),
        "{said}"
    );
    let said = refused_at_start(
        &["api", "--listen", "127.0.0.1:0"],
        &[
            local_db,
            (
                "AMQP_URL",
                "amqps://guest:guest@10.255.255.3:5671/%2f?cacertfile=/nonexistent/ca.pem",
            ),
        ],
    );
    assert!(
        said.contains("AMQP_URL: cacertfile=/nonexistent/ca.pem"),
        "{said}"
    );
}
