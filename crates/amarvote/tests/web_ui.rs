//! The web pages end to end in headless Chromium against a real `amarvote serve`:
//! tests/browser/election.mjs plays the administrator, the guardians, the voters (in
//! English, Bengali and French, one with the keyboard alone) and a referendum voter, and
//! audits every page it reaches with axe-core; this test starts the server, runs it, and
//! then checks the published counts through the API against the ground truth of the
//! ballots it cast. Screenshots of every page and language land in target/browser-artifacts/.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_up(base: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while reqwest::get(format!("{base}/health")).await.is_err() {
        assert!(Instant::now() < deadline, "amarvote serve did not come up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn get_json(url: String) -> Value {
    let response = reqwest::get(&url).await.unwrap();
    assert!(
        response.status().is_success(),
        "GET {url}: {}",
        response.status()
    );
    response.json().await.unwrap()
}

/// What the browser run needs on this machine; a missing piece fails with how to get it.
fn browser_prerequisites(dir: &Path) -> PathBuf {
    let chromium = PathBuf::from(std::env::var("CHROMIUM").unwrap_or("/usr/bin/chromium".into()));
    assert!(
        chromium.exists(),
        "{} is missing: install Debian's chromium and chromium-driver (.ci/run does)",
        chromium.display()
    );
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "playwright-core is missing: run `npm ci --prefix {}` (.ci/run does)",
        dir.display()
    );
    chromium
}

#[tokio::test(flavor = "multi_thread")]
async fn people_run_an_election_and_a_referendum_in_the_browser() {
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let chromium = browser_prerequisites(&browser_dir);
    let data = tempfile::tempdir().unwrap();
    let base = format!("http://127.0.0.1:{}", common::free_port());
    let _server = Server(
        Command::new(env!("CARGO_BIN_EXE_amarvote"))
            .args([
                "serve",
                "--listen",
                base.trim_start_matches("http://"),
                "--data",
            ])
            .arg(data.path())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the amarvote binary starts"),
    );
    wait_up(&base).await;
    let admin = std::fs::read_to_string(data.path().join("admin.token")).unwrap();
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/browser-artifacts");
    // Only this run's screenshots: an earlier run's would be mistaken for this one's.
    let _ = std::fs::remove_dir_all(&artifacts);
    let run = tokio::process::Command::new("node")
        .arg(browser_dir.join("election.mjs"))
        .env("AMARVOTE_URL", &base)
        .env("AMARVOTE_ADMIN_TOKEN", admin.trim())
        .env("ARTIFACTS", &artifacts)
        .env("AMARVOTE_BIN", env!("CARGO_BIN_EXE_amarvote"))
        .env("CHROMIUM", &chromium)
        .output()
        .await
        .expect("node runs (install Node.js and npm)");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "the browser run failed (screenshots so far in {}):\n{stdout}\n{}",
        artifacts.display(),
        String::from_utf8_lossy(&run.stderr)
    );
    for summary in stdout
        .lines()
        .filter(|l| l.starts_with("AXE ") || l.starts_with("OK "))
    {
        println!("{summary}");
    }
    let election = stdout
        .lines()
        .find_map(|l| l.strip_prefix("ELECTION "))
        .expect("the run names its election");
    assert_published_counts(&base, election.trim()).await;
    let archive = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RECORD "))
        .expect("the run downloads the record");
    assert_record_verifies(Path::new(archive.trim())).await;
}

/// Ground truth of the ballots the browser cast: ada (Alice; Dan, Eve; Yes), brian
/// (Bob; Eve, Fay; No), chloe (Alice; Dan, Fay; Yes) after challenging one ballot, and
/// dara's from "another device" (no mayor; Dan; No).
async fn assert_published_counts(base: &str, election: &str) {
    let results = get_json(format!("{base}/api/elections/{election}/results")).await;
    let votes = |contest: &str, selection: usize| {
        results["contests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["contest_id"] == contest)
            .and_then(|c| {
                c["selections"].as_array().unwrap().iter().find(|s| {
                    s["selection_id"] == format!("{contest}-selection-{selection}").as_str()
                })
            })
            .map(|s| s["votes"].as_u64().unwrap())
            .unwrap_or_else(|| panic!("no count for {contest} selection {selection}"))
    };
    let expected = [
        ("contest-1", [2, 1, 0].as_slice()),
        ("contest-2", &[3, 2, 2]),
        ("contest-3", &[2, 2]),
    ];
    for (contest, counts) in expected {
        for (k, count) in counts.iter().enumerate() {
            assert_eq!(
                votes(contest, k + 1),
                *count,
                "{contest} selection {}",
                k + 1
            );
        }
    }
    let summary = get_json(format!("{base}/api/elections/{election}")).await;
    assert_eq!(summary["cast_ballots"], 4);
    assert_eq!(summary["spoiled_ballots"], 1);
}

/// The record the administrator downloaded from the page unpacks with `tar` and passes
/// `amarvote verify`.
async fn assert_record_verifies(archive: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let untar = tokio::process::Command::new("tar")
        .arg("-xf")
        .arg(archive)
        .arg("-C")
        .arg(dir.path())
        .output()
        .await
        .unwrap();
    assert!(
        untar.status.success(),
        "tar: {}",
        String::from_utf8_lossy(&untar.stderr)
    );
    let verify = tokio::process::Command::new(env!("CARGO_BIN_EXE_amarvote"))
        .arg("verify")
        .arg(dir.path())
        .output()
        .await
        .unwrap();
    assert!(
        verify.status.success(),
        "amarvote verify of the downloaded record:\n{}\n{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
}
