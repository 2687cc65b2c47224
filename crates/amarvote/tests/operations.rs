//! What an operator is given in `deploy/` holds: the alert rules pass promtool, every
//! metric the rules and the dashboard name is exported by a live process, the Kubernetes
//! manifests validate, every role has a Deployment (probes, limits, a disruption budget,
//! secrets that exist) whose arguments the binary accepts, the autoscalers name real
//! Deployments and queues, the Compose file's roles start the binary with arguments it
//! accepts, and every link the manifests set up is TLS (the HTTP edge, PostgreSQL,
//! RabbitMQ, Redis).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use yaml_rust2::{Yaml, YamlLoader};

/// The queues a KEDA trigger may name: the election's work queues and the vote streams.
const QUEUES: [&str; 8] = [
    "tally",
    "decryption",
    "compensated.decryption",
    "combine",
    "verification",
    "votes.validation",
    "votes.aggregation",
    "votes.review",
];

/// The scaled roles, as the first words of their command lines.
const ROLES: [&[&str]; 5] = [
    &["api"],
    &["worker"],
    &["referendum", "ingest"],
    &["referendum", "validate"],
    &["referendum", "aggregate"],
];

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn yaml_documents(path: &Path) -> Vec<Yaml> {
    let text = std::fs::read_to_string(path).unwrap();
    YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn manifests() -> Vec<(PathBuf, Yaml)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy().join("kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .flat_map(|file| {
            yaml_documents(&file)
                .into_iter()
                .map(move |doc| (file.clone(), doc))
        })
        .collect()
}

fn strings(yaml: &Yaml) -> Vec<String> {
    yaml.as_vec()
        .map(|v| {
            v.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The binary accepts `args` (a subcommand and its flags): with `--help` after them, clap
/// checks every flag before it and prints the help.
fn binary_accepts(args: &[String]) {
    let out = Command::new(env!("CARGO_BIN_EXE_amarvote"))
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "amarvote {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_alert_rules_pass_promtool() {
    let rules = deploy().join("prometheus/alerts.yml");
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .unwrap_or_else(|e| {
            panic!("this test needs promtool (Debian package prometheus; .ci/run installs it): {e}")
        });
    assert!(
        out.status.success(),
        "promtool check rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_kubernetes_manifests_validate() {
    let tool = std::env::var("AMARVOTE_KUBERNETES_VALIDATE").unwrap_or_else(|_| {
        format!(
            "{}/.venvs/kubernetes-validate/bin/kubernetes-validate",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    let files: Vec<PathBuf> = manifests()
        .into_iter()
        .map(|(f, _)| f)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let out = Command::new(&tool)
        .args(["--strict", "--quiet", "--kubernetes-version", "1.31"])
        .args(&files)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "this test needs kubernetes-validate at {tool} (pip install kubernetes-validate; \
                 .ci/run installs it, or set AMARVOTE_KUBERNETES_VALIDATE): {e}"
            )
        });
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kubernetes-validate:\n{text}");
    // Only the KEDA and cert-manager resources have no schema there; the KEDA ones are
    // checked below instead.
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            line.contains("Couldn't find schema for kind")
                && (line.contains("keda.sh/") || line.contains("cert-manager.io/")),
            "kubernetes-validate: {line}"
        );
    }
}

#[test]
fn every_role_has_a_deployment_that_runs_it_safely() {
    let docs = manifests();
    let of_kind = |kind: &'static str| {
        docs.iter()
            .filter(move |(_, d)| d["kind"].as_str() == Some(kind))
    };
    let secret_keys: BTreeSet<String> = of_kind("Secret")
        .flat_map(|(_, d)| {
            d["stringData"]
                .as_hash()
                .unwrap()
                .keys()
                .map(|k| k.as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    let budgets: BTreeSet<String> = of_kind("PodDisruptionBudget")
        .map(|(_, d)| {
            d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let mut deployments = BTreeSet::new();
    let mut roles_run = BTreeSet::new();
    for (file, deployment) in of_kind("Deployment") {
        let name = deployment["metadata"]["name"].as_str().unwrap().to_owned();
        let pod = &deployment["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        let args = strings(&container["args"]);
        binary_accepts(&args);
        let role = ROLES
            .iter()
            .find(|role| args.iter().take(role.len()).eq(role.iter()))
            .unwrap_or_else(|| panic!("{}: {name} runs no scaled role: {args:?}", file.display()));
        roles_run.insert(role.join(" "));
        assert_eq!(
            container["readinessProbe"]["httpGet"]["path"].as_str(),
            Some("/health"),
            "{name}"
        );
        assert!(
            !container["livenessProbe"].is_badvalue(),
            "{name}: no liveness probe"
        );
        assert!(
            container["resources"]["limits"]["memory"]
                .as_str()
                .is_some(),
            "{name}: no memory limit"
        );
        assert!(
            container["resources"]["requests"]["memory"]
                .as_str()
                .is_some(),
            "{name}: no memory request"
        );
        assert!(
            pod["terminationGracePeriodSeconds"].as_i64().is_some(),
            "{name}: no grace period"
        );
        assert!(budgets.contains(&name), "{name}: no PodDisruptionBudget");
        for env in container["env"].as_vec().unwrap() {
            if let Some(key) = env["valueFrom"]["secretKeyRef"]["key"].as_str() {
                assert!(
                    secret_keys.contains(key),
                    "{name}: secret key {key} is in no Secret"
                );
            }
        }
        deployments.insert(name);
    }
    let every_role: BTreeSet<String> = ROLES.iter().map(|r| r.join(" ")).collect();
    assert_eq!(roles_run, every_role, "every scaled role has a Deployment");
    let mut scaled = 0;
    for (_, object) in of_kind("ScaledObject") {
        let target = object["spec"]["scaleTargetRef"]["name"].as_str().unwrap();
        assert!(
            deployments.contains(target),
            "autoscaler of {target}: no such Deployment"
        );
        for trigger in object["spec"]["triggers"].as_vec().unwrap() {
            let queue = trigger["metadata"]["queueName"].as_str().unwrap();
            assert!(
                QUEUES.contains(&queue),
                "{target} scales on {queue}: no such queue"
            );
            scaled += 1;
        }
    }
    assert!(scaled >= 2, "workers and validators scale on their queues");
}

/// The environment a Deployment's container sets by value.
fn env_values(container: &Yaml) -> Vec<(String, Option<String>)> {
    container["env"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|e| {
            let name = e["name"].as_str().unwrap().to_owned();
            (name, e["value"].as_str().map(str::to_owned))
        })
        .collect()
}

#[test]
fn every_link_the_manifests_set_up_is_tls() {
    use amarvote::adapters::link_tls::{exposure, Exposure};
    let docs = manifests();
    let mut urls = 0;
    for (_, secret) in docs
        .iter()
        .filter(|(_, d)| d["kind"].as_str() == Some("Secret"))
    {
        for (key, value) in secret["stringData"].as_hash().unwrap() {
            let (key, url) = (key.as_str().unwrap(), value.as_str().unwrap());
            if key.ends_with("-url") {
                assert_eq!(exposure(url), Exposure::Encrypted, "{key}: {url}");
                urls += 1;
            }
        }
    }
    assert!(
        urls >= 3,
        "the database, broker and Redis URLs are in a Secret"
    );
    for (_, deployment) in docs
        .iter()
        .filter(|(_, d)| d["kind"].as_str() == Some("Deployment"))
    {
        let name = deployment["metadata"]["name"].as_str().unwrap();
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        let env = env_values(container);
        let set = |var: &str| env.iter().any(|(n, v)| n == var && v.is_some());
        assert!(
            set("AMARVOTE_TLS_CERT") && set("AMARVOTE_TLS_KEY"),
            "{name} serves HTTPS"
        );
        assert!(
            !set("AMARVOTE_PLAINTEXT_BEYOND_LOOPBACK"),
            "{name} allows plain text"
        );
        assert_eq!(
            container["readinessProbe"]["httpGet"]["scheme"].as_str(),
            Some("HTTPS"),
            "{name}: the probe speaks the edge's protocol"
        );
    }
}

#[test]
fn the_compose_file_runs_every_role_with_arguments_the_binary_accepts() {
    let compose = &yaml_documents(&deploy().join("compose.yaml"))[0];
    let mut roles_run = BTreeSet::new();
    for (_, service) in compose["services"].as_hash().unwrap() {
        // The roles share their settings through a merge key (`<<: *amarvote`).
        let image = service["image"]
            .as_str()
            .or(service["<<"]["image"].as_str());
        if image != Some("amarvote:0.1.0") {
            continue;
        }
        let args = strings(&service["command"]);
        binary_accepts(&args);
        if let Some(role) = ROLES
            .iter()
            .find(|role| args.iter().take(role.len()).eq(role.iter()))
        {
            roles_run.insert(role.join(" "));
        }
    }
    assert_eq!(
        roles_run.len(),
        ROLES.len(),
        "every scaled role runs: {roles_run:?}"
    );
}

/// The metric names an expression or a rules file uses: ours all start with these.
fn metric_names(text: &str) -> BTreeSet<String> {
    const OURS: [&str; 5] = ["amarvote_", "vote_", "votes_", "voter_", "duplicate_"];
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|token| OURS.iter().any(|p| token.starts_with(p)))
        .map(|token| {
            ["_total", "_bucket", "_count", "_sum"]
                .iter()
                .find_map(|suffix| token.strip_suffix(suffix))
                .unwrap_or(token)
                .to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_metric_the_rules_and_the_dashboard_name_is_exported_by_a_live_process() {
    let rules = std::fs::read_to_string(deploy().join("prometheus/alerts.yml")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(deploy().join("grafana/amarvote.json")).unwrap(),
    )
    .unwrap();
    let expressions: String = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .map(|t| t["expr"].as_str().unwrap().to_owned() + "\n")
        .collect();
    let named: BTreeSet<String> = metric_names(&rules)
        .into_iter()
        .chain(metric_names(&expressions))
        .collect();
    assert!(named.len() >= 12, "the rules and dashboard name {named:?}");

    let data = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_amarvote"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"])
        .arg(data.path().join("data"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let exposition = loop {
        if let Ok(response) = reqwest::get(format!("{base}/metrics")).await {
            break response.text().await.unwrap();
        }
        assert!(Instant::now() < deadline, "amarvote serve did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = server.kill();
    let _ = server.wait();
    let exported: BTreeSet<String> = exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    let missing: Vec<&String> = named.iter().filter(|n| !exported.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "named but not exported: {missing:?}\nexported: {exported:?}"
    );
}
