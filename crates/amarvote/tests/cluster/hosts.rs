//! Test hosts as Linux network namespaces on one private switch.
//!
//! The switch is a bridge inside a namespace of its own, so nothing of the cluster touches
//! the machine's own interfaces: each host gets a veth pair with one end (`eth0`, with the
//! host's address) in the host's namespace and the other plugged into the bridge. A host is
//! cut off by taking its switch port down, and made lossy with an nftables rule that
//! drops a share of its packets (the kernels this runs on may lack `sch_netem`, so `tc
//! netem` is not used). Each run names its namespaces with a prefix of its own, so two
//! runs on one machine never touch each other's. Dropping the [`Network`] kills every
//! process left in its namespaces and deletes them, also when the test panics.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

/// The cluster's private subnet; each host is `10.213.0.<octet>`.
const SUBNET: &str = "10.213.0";

/// A host of the cluster: its namespace and its address.
#[derive(Clone, Copy, Debug)]
pub struct Host {
    pub name: &'static str,
    octet: u8,
}

impl Host {
    pub const fn new(name: &'static str, octet: u8) -> Host {
        Host { name, octet }
    }

    pub fn ip(&self) -> String {
        format!("{SUBNET}.{}", self.octet)
    }
}

/// The namespaces of one cluster, named `<prefix>-<host>` and `<prefix>-sw`.
pub struct Network {
    prefix: String,
    hosts: Vec<Host>,
    torn_down: AtomicBool,
}

/// Runs a command that must succeed, naming it when it does not.
pub fn must(command: &mut Command) {
    let out = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ip(args: &[&str]) {
    must(Command::new("ip").args(args));
}

impl Network {
    /// Makes the switch and every host.
    pub fn build(hosts: &[Host]) -> Network {
        let network = Network {
            prefix: format!("av{:x}", std::process::id() % 0x10000),
            hosts: hosts.to_vec(),
            torn_down: AtomicBool::new(false),
        };
        let switch = network.switch();
        ip(&["netns", "add", &switch]);
        ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &switch, "link", "set", "br0", "up"]);
        for host in hosts {
            network.plug(host);
        }
        network
    }

    fn switch(&self) -> String {
        format!("{}-sw", self.prefix)
    }

    pub fn namespace(&self, host: &Host) -> String {
        format!("{}-{}", self.prefix, host.name)
    }

    /// The host's port on the switch (interface names have at most 15 bytes).
    fn port(&self, host: &Host) -> String {
        format!("{}p{}", self.prefix, host.octet)
    }

    /// Makes the host's namespace and its veth pair, created with each end already in its
    /// namespace (so a failure leaves nothing in the machine's own).
    fn plug(&self, host: &Host) {
        let (ns, port, switch) = (self.namespace(host), self.port(host), self.switch());
        ip(&["netns", "add", &ns]);
        ip(&[
            "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &port, "netns",
            &switch,
        ]);
        ip(&["-n", &switch, "link", "set", &port, "master", "br0", "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        let address = format!("{}/24", host.ip());
        ip(&["-n", &ns, "addr", "add", &address, "dev", "eth0"]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
    }

    /// A command that runs on `host` (inside its namespace).
    pub fn on(&self, host: &Host, program: &str) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.namespace(host), program])
            .stdin(Stdio::null());
        command
    }

    /// Cuts the host off the switch: packets neither leave nor arrive.
    pub fn partition(&self, host: &Host) {
        ip(&[
            "-n",
            &self.switch(),
            "link",
            "set",
            &self.port(host),
            "down",
        ]);
    }

    pub fn heal(&self, host: &Host) {
        ip(&["-n", &self.switch(), "link", "set", &self.port(host), "up"]);
    }

    /// Drops `percent` % of the host's packets in each direction, at random.
    pub fn lossy(&self, host: &Host, percent: u8) {
        let ruleset = format!(
            "table inet loss {{\n\
               chain in {{ type filter hook input priority 0; numgen random mod 100 < {percent} drop; }}\n\
               chain out {{ type filter hook output priority 0; numgen random mod 100 < {percent} drop; }}\n\
             }}\n"
        );
        let mut nft = self
            .on(host, "nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("nft runs");
        nft.stdin
            .take()
            .unwrap()
            .write_all(ruleset.as_bytes())
            .unwrap();
        assert!(nft.wait().unwrap().success(), "nft refused the loss rules");
    }

    pub fn lossless(&self, host: &Host) {
        must(
            self.on(host, "nft")
                .args(["delete", "table", "inet", "loss"]),
        );
    }

    /// Kills whatever still runs in the namespaces and deletes them.
    pub fn teardown(&self) {
        if self.torn_down.swap(true, Ordering::SeqCst) {
            return;
        }
        let mut names: Vec<String> = self.hosts.iter().map(|h| self.namespace(h)).collect();
        names.push(self.switch());
        for ns in &names {
            let pids = Command::new("ip")
                .args(["netns", "pids", ns])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            for pid in pids.split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).output();
            }
        }
        for ns in &names {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        self.teardown();
    }
}
