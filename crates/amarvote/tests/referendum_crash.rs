//! The embedded referendum pipeline killed with SIGKILL mid-stream: every voter whose
//! vote was answered 202 is counted exactly once after a restart — no loss, no double
//! count — including voters who had to resubmit because the crash cut their request.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const VOTERS: usize = 6000;
const LAW: &str = "loi-crash";

fn start_server(dir: &std::path::Path, port: u16) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_amarvote"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"])
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the amarvote binary starts")
}

async fn wait_up(http: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while http.get(format!("{base}/health")).send().await.is_err() {
        assert!(Instant::now() < deadline, "the server did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn ballot(i: usize) -> Value {
    let vote = if i.is_multiple_of(3) { "non" } else { "oui" };
    json!({ "nas": format!("{:09}", 200_000_000 + i), "code": format!("K{i:06}"), "law_id": LAW, "vote": vote })
}

/// Submits voter `i` until the server answers 202; returns the request id.
async fn submit_until_accepted(http: &reqwest::Client, base: &str, i: usize) -> String {
    loop {
        if let Ok(response) = http
            .post(format!("{base}/api/v1/vote"))
            .json(&ballot(i))
            .send()
            .await
        {
            if response.status().as_u16() == 202 {
                let body: Value = response.json().await.unwrap();
                return body["request_id"].as_str().unwrap().to_string();
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_mid_stream_no_vote_is_lost_or_counted_twice() {
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
    let law = http
        .post(format!("{base}/api/v1/admin/laws"))
        .bearer_auth(admin.trim())
        .json(&json!({ "law_id": LAW, "title": "crash" }))
        .send()
        .await
        .unwrap();
    assert!(law.status().is_success(), "{:?}", law.text().await);
    let rows: Vec<Value> = (0..VOTERS)
        .map(|i| {
            let mut b = ballot(i);
            b.as_object_mut().unwrap().remove("vote");
            b
        })
        .collect();
    let voters = http
        .post(format!("{base}/api/v1/admin/voters"))
        .bearer_auth(admin.trim())
        .json(&json!({ "voters": rows }))
        .send()
        .await
        .unwrap();
    assert!(voters.status().is_success(), "{:?}", voters.text().await);

    let answered = Arc::new(AtomicUsize::new(0));
    let sender = {
        let (http, base, answered) = (http.clone(), base.clone(), answered.clone());
        tokio::spawn(async move {
            use futures_util::StreamExt;
            futures_util::stream::iter(0..VOTERS)
                .map(|i| {
                    let (http, base, answered) = (http.clone(), base.clone(), answered.clone());
                    async move {
                        let id = submit_until_accepted(&http, &base, i).await;
                        answered.fetch_add(1, Ordering::Relaxed);
                        id
                    }
                })
                .buffer_unordered(32)
                .collect::<Vec<String>>()
                .await
        })
    };
    // Killed once a third and once two thirds of the voters have their 202, however fast
    // this machine answers.
    for third in 1..=2 {
        while answered.load(Ordering::Relaxed) < third * VOTERS / 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(
            !sender.is_finished(),
            "the kill must come while votes are still being sent"
        );
        server.kill().unwrap();
        server.wait().unwrap();
        server = start_server(dir.path(), port);
    }
    wait_up(&http, &base).await;
    let request_ids = tokio::time::timeout(Duration::from_secs(120), sender)
        .await
        .expect("every voter got a 202")
        .unwrap();
    assert_eq!(request_ids.len(), VOTERS);

    let expected_oui = (0..VOTERS).filter(|i| i % 3 != 0).count() as u64;
    let expected_non = VOTERS as u64 - expected_oui;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let got: Value = match http
            .get(format!("{base}/api/v1/results/{LAW}"))
            .send()
            .await
        {
            Ok(response) => response.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        let counts = (
            got["oui"].as_u64(),
            got["non"].as_u64(),
            got["audited"].as_u64(),
        );
        if counts == (Some(expected_oui), Some(expected_non), Some(VOTERS as u64)) {
            break;
        }
        assert!(Instant::now() < deadline, "after the crashes: expected oui {expected_oui} non {expected_non} audited {VOTERS}, got {got}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    server.kill().unwrap();
    let _ = server.wait();
}
