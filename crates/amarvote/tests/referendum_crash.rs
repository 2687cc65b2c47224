//! The embedded referendum pipeline (`amarvote serve`) killed with SIGKILL twice while
//! voters make several attempts each, with different choices, at random moments: for
//! every voter the attempt answered 202 first is the one counted and every later one a
//! duplicate, the totals are exact, and every status is final within seconds of the
//! restart (the queue's claims of the dead process are released at once, not after
//! their visibility timeout).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::crowd;

const VOTERS: usize = 1_500;
const ATTEMPTS: usize = 3;
const SPREAD: Duration = Duration::from_secs(6);
const LAW: &str = "loi-crash";

fn start_server(dir: &std::path::Path, port: u16) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_amarvote"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"])
        .arg(dir)
        .args(["--vote-rate-limit", "1000000"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the amarvote binary starts")
}

async fn wait_up(http: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while http.get(format!("{base}/health")).send().await.is_err() {
        assert!(Instant::now() < deadline, "the server did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_twice_the_earliest_answered_attempt_of_every_voter_is_the_one_counted() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut server = start_server(dir.path(), port);
    wait_up(&http, &base).await;
    let admin = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
    crowd::set_up(&http, &base, admin.trim(), LAW, VOTERS).await;

    let voting = {
        let (http, bases) = (http.clone(), Arc::new(vec![base.clone()]));
        tokio::spawn(async move { crowd::vote(&http, bases, LAW, VOTERS, ATTEMPTS, SPREAD).await })
    };
    let started = Instant::now();
    for third in 1..=2 {
        tokio::time::sleep_until((started + SPREAD.mul_f64(f64::from(third) / 3.0)).into()).await;
        server.kill().unwrap();
        server.wait().unwrap();
        server = start_server(dir.path(), port);
    }
    wait_up(&http, &base).await;
    let restarted = Instant::now();
    let attempts = tokio::time::timeout(Duration::from_secs(120), voting)
        .await
        .expect("every attempt got its 202")
        .unwrap();
    assert_eq!(attempts.len(), VOTERS * ATTEMPTS);
    let (statuses, _) =
        crowd::final_statuses(&http, &base, &attempts, Duration::from_secs(30)).await;
    let final_after_restart = restarted.elapsed();
    let results = crowd::counted_results(&http, &base, LAW, VOTERS).await;
    let verdict = crowd::check(&attempts, &statuses, &results);
    eprintln!("{verdict:?}; every status final {final_after_restart:?} after the last restart");
    assert!(
        final_after_restart < Duration::from_secs(10),
        "statuses took {final_after_restart:?} to be final after the restart"
    );
    server.kill().unwrap();
    let _ = server.wait();
}
