//! The processes of the cluster: the data host's own PostgreSQL (a fresh `initdb`
//! cluster), RabbitMQ node and Redis, the load balancer's HAProxy, and amarvote's roles,
//! each started inside its host's namespace with its output in a log file of the test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::hosts::{must, Host, Network};

/// A process on a test host, killed when dropped; its output kept for failure messages.
pub struct Process {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Process {
    pub fn spawn(name: &str, mut command: Command, logs: &Path) -> Process {
        let log = logs.join(format!("{name}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = command
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Process {
            name: name.to_owned(),
            child,
            log,
        }
    }

    /// Sends a signal to the process (`ip netns exec` has become it).
    pub fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).expect("a pid fits i32"));
        nix::sys::signal::kill(pid, signal)
            .unwrap_or_else(|e| panic!("cannot signal {}: {e}", self.name));
    }

    /// Waits for the process to end after a signal, up to `within`.
    pub fn wait_exit(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "{} did not stop within {within:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Panics with the log's end if the process has exited.
    pub fn still_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("{} exited ({status}):\n{}", self.name, self.log_tail());
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until something on `host` accepts TCP connections on `port`.
pub fn wait_port(net: &Network, host: &Host, port: u16, within: Duration, what: &str) {
    let started = Instant::now();
    let probe = format!("exec 3<>/dev/tcp/{}/{port}", host.ip());
    loop {
        let open = net
            .on(host, "bash")
            .args(["-c", &probe])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if open {
            return;
        }
        assert!(
            started.elapsed() < within,
            "{what} does not listen on {}:{port} after {within:?}",
            host.ip()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The newest PostgreSQL server programs Debian installed.
pub fn postgres_bin(program: &str) -> PathBuf {
    let versions = std::fs::read_dir("/usr/lib/postgresql")
        .expect("the cluster test needs PostgreSQL's server (Debian's postgresql)");
    let newest = versions
        .filter_map(|v| v.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .max()
        .expect("a PostgreSQL version under /usr/lib/postgresql");
    PathBuf::from(format!("/usr/lib/postgresql/{newest}/bin/{program}"))
}

/// The data host's PostgreSQL: a cluster of the test's own, owned by `postgres`, that
/// takes connections from the test's subnet over TLS only (`tls/server.pem`, its key).
pub struct Postgres {
    data: PathBuf,
    host: Host,
    running: Option<Process>,
}

impl Postgres {
    /// Makes the cluster (`initdb`), lets the test's subnet in over TLS, starts it and
    /// creates `database`.
    pub fn start(net: &Network, dir: &Path, host: Host, database: &str) -> Postgres {
        let data = dir.join("pgdata");
        std::fs::create_dir_all(&data).unwrap();
        must(
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&data),
        );
        must(
            as_postgres(&mut Command::new("setpriv"))
                .arg(postgres_bin("initdb"))
                .args(["-A", "trust", "-U", "postgres", "-D"])
                .arg(&data)
                .stdout(Stdio::null()),
        );
        // The test's subnet only over TLS, with the cluster's server certificate.
        let hba = data.join("pg_hba.conf");
        let mut rules = std::fs::read_to_string(&hba).unwrap();
        rules.push_str("hostssl all all 10.213.0.0/24 trust\n");
        std::fs::write(&hba, rules).unwrap();
        for (from, to) in [("server.pem", "server.crt"), ("server.key", "server.key")] {
            std::fs::copy(dir.join("tls").join(from), data.join(to)).unwrap();
        }
        must(
            Command::new("chown")
                .args(["postgres:postgres"])
                .arg(data.join("server.crt"))
                .arg(data.join("server.key")),
        );
        must(
            Command::new("chmod")
                .arg("600")
                .arg(data.join("server.key")),
        );
        let mut postgres = Postgres {
            data,
            host,
            running: None,
        };
        postgres.run(net, &dir.join("logs"));
        postgres.create_database(net, database);
        postgres
    }

    fn run(&mut self, net: &Network, logs: &Path) {
        let mut command = net.on(&self.host, "setpriv");
        as_postgres(&mut command)
            .arg(postgres_bin("postgres"))
            .arg("-D")
            .arg(&self.data)
            .args(["-c", &format!("listen_addresses={}", self.host.ip())])
            .args([
                "-c",
                &format!("unix_socket_directories={}", self.data.display()),
            ])
            .args([
                "-c",
                "max_connections=300",
                "-c",
                "fsync=off",
                "-c",
                "ssl=on",
            ]);
        self.running = Some(Process::spawn("postgres", command, logs));
        wait_port(net, &self.host, 5432, Duration::from_secs(30), "PostgreSQL");
    }

    /// A fast shutdown (SIGINT: sessions are ended, nothing committed is lost), `down` of
    /// nothing, and a start.
    pub fn restart(&mut self, net: &Network, logs: &Path, down: Duration) {
        let mut running = self.running.take().expect("PostgreSQL runs");
        running.signal(Signal::SIGINT);
        running.wait_exit(Duration::from_secs(30));
        std::thread::sleep(down);
        self.run(net, logs);
    }

    fn create_database(&self, net: &Network, name: &str) {
        let ip = self.host.ip();
        for _ in 0..50 {
            let made = net
                .on(&self.host, "psql")
                .args(["-h", &ip, "-U", "postgres", "-c"])
                .arg(format!("CREATE DATABASE {name}"))
                .output()
                .unwrap();
            if made.status.success() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("cannot create database {name} on the data host");
    }
}

fn as_postgres(command: &mut Command) -> &mut Command {
    command.args(["--reuid=postgres", "--regid=postgres", "--clear-groups"])
}

/// The RabbitMQ server script Debian installs.
pub const RABBITMQ_SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
const RABBITMQCTL: &str = "/usr/lib/rabbitmq/bin/rabbitmqctl";

/// The port of the data host's RabbitMQ, which takes AMQP over TLS only.
pub const AMQPS_PORT: u16 = 5671;

/// A node configuration with one listener, TLS on [`AMQPS_PORT`], its certificate from
/// `tls/` (clients are not asked for one: they log in).
fn amqps_only(host: &Host, tls: &Path) -> String {
    format!(
        "loopback_users = none\n\
         listeners.tcp = none\n\
         listeners.ssl.default = {ip}:{AMQPS_PORT}\n\
         ssl_options.cacertfile = {ca}\n\
         ssl_options.certfile = {cert}\n\
         ssl_options.keyfile = {key}\n\
         ssl_options.verify = verify_none\n\
         ssl_options.fail_if_no_peer_cert = false\n",
        ip = host.ip(),
        ca = tls.join("ca.pem").display(),
        cert = tls.join("server.pem").display(),
        key = tls.join("server.key").display(),
    )
}

/// The data host's RabbitMQ node: its own node name, data directory and listener.
pub struct Rabbit {
    dir: PathBuf,
    host: Host,
    running: Option<Process>,
}

impl Rabbit {
    pub fn start(net: &Network, dir: &Path, host: Host) -> Rabbit {
        let logs = dir.join("logs");
        let tls = dir.join("tls");
        let dir = dir.join("rabbitmq");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("rabbitmq.conf"), amqps_only(&host, &tls)).unwrap();
        std::fs::write(dir.join("enabled_plugins"), "[].\n").unwrap();
        let mut rabbit = Rabbit {
            dir,
            host,
            running: None,
        };
        rabbit.run(net, &logs);
        rabbit
    }

    fn with_env(&self, command: &mut Command) {
        let dir = &self.dir;
        command
            .env("RABBITMQ_NODENAME", "cluster@localhost")
            .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_PID_FILE", dir.join("pid"))
            .env("HOME", dir);
    }

    fn run(&mut self, net: &Network, logs: &Path) {
        let mut command = net.on(&self.host, RABBITMQ_SERVER);
        self.with_env(&mut command);
        self.running = Some(Process::spawn("rabbitmq", command, logs));
        wait_port(
            net,
            &self.host,
            AMQPS_PORT,
            Duration::from_secs(90),
            "RabbitMQ",
        );
    }

    /// Stops the node as an operator would (`rabbitmqctl stop`: durable queues and
    /// persistent messages stay on disk), then starts it again.
    pub fn restart(&mut self, net: &Network, logs: &Path) {
        let mut running = self.running.take().expect("RabbitMQ runs");
        let mut command = net.on(&self.host, RABBITMQCTL);
        self.with_env(&mut command);
        must(command.arg("stop"));
        running.wait_exit(Duration::from_secs(60));
        self.run(net, logs);
    }
}

/// The data host's Redis, without persistence: a restart comes back empty.
pub struct Redis {
    dir: PathBuf,
    host: Host,
    running: Option<Process>,
}

impl Redis {
    pub fn start(net: &Network, dir: &Path, host: Host) -> Redis {
        let mut redis = Redis {
            dir: dir.to_owned(),
            host,
            running: None,
        };
        redis.run(net);
        redis
    }

    /// Redis on TLS only (`--port 0`), its certificate from `tls/`.
    fn run(&mut self, net: &Network) {
        let tls = self.dir.join("tls");
        let mut command = net.on(&self.host, "redis-server");
        command
            .args([
                "--bind",
                &self.host.ip(),
                "--port",
                "0",
                "--tls-port",
                "6379",
            ])
            .arg("--tls-cert-file")
            .arg(tls.join("server.pem"))
            .arg("--tls-key-file")
            .arg(tls.join("server.key"))
            .arg("--tls-ca-cert-file")
            .arg(tls.join("ca.pem"))
            .args(["--tls-auth-clients", "no", "--save", ""])
            .args(["--appendonly", "no", "--protected-mode", "no", "--dir"])
            .arg(&self.dir);
        self.running = Some(Process::spawn("redis", command, &self.dir.join("logs")));
        wait_port(net, &self.host, 6379, Duration::from_secs(20), "Redis");
    }

    /// Kills Redis outright and starts it again, empty.
    pub fn restart_empty(&mut self, net: &Network) {
        let mut running = self.running.take().expect("Redis runs");
        running.signal(Signal::SIGKILL);
        running.wait_exit(Duration::from_secs(10));
        self.run(net);
    }
}

/// HAProxy in front of the API hosts: `:8080` balances the election API, `:8081` the
/// referendum's ingestion, each server checked on `/health` twice a second. Both sides are
/// TLS: clients reach it with the certificate of `tls/haproxy.pem`, and it reaches the API
/// hosts checking theirs against `tls/ca.pem`.
pub fn haproxy(net: &Network, lb: &Host, apis: &[Host], dir: &Path, logs: &Path) -> Process {
    let ca = dir.join("tls/ca.pem");
    let servers = |port: u16| -> String {
        apis.iter()
            .map(|h| {
                format!(
                    "  server {} {}:{port} ssl verify required ca-file {} check check-ssl \
                     inter 500ms fall 2 rise 2\n",
                    h.name,
                    h.ip(),
                    ca.display()
                )
            })
            .collect()
    };
    let config = format!(
        "global\n  maxconn 4000\n\
         defaults\n  mode http\n  timeout connect 2s\n  timeout client 60s\n  timeout server 15s\n\
         \x20 retries 2\n  option redispatch\n  option forwardfor\n  option httpchk GET /health\n\
         frontend election\n  bind {lb}:8080 ssl crt {crt}\n  default_backend api\n\
         backend api\n{api}\
         frontend referendum\n  bind {lb}:8081 ssl crt {crt}\n  default_backend ingest\n\
         backend ingest\n{ingest}",
        lb = lb.ip(),
        crt = dir.join("tls/haproxy.pem").display(),
        api = servers(8080),
        ingest = servers(8081),
    );
    let file = dir.join("haproxy.cfg");
    std::fs::write(&file, config).unwrap();
    let mut command = net.on(lb, "haproxy");
    command.arg("-db").arg("-f").arg(&file);
    let process = Process::spawn("haproxy", command, logs);
    wait_port(net, lb, 8080, Duration::from_secs(20), "HAProxy");
    process
}
