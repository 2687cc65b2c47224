//! HTTPS on the HTTP edge: `amarvote serve` given a certificate and key (signed by a CA of
//! the test's own) serves a whole election to `amarvote demo --server https://…` that
//! trusts that CA through `AMARVOTE_CA_FILE`; a client that does not trust the CA, and a
//! plain-HTTP request to the HTTPS port, get nothing; a key file that is not one ends the
//! start naming it, before anything listens.

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
