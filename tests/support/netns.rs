//! Network namespaces for tests that need more than one machine (`tests/pair.rs`): a LAN of
//! namespaces joined by veth pairs to a bridge in a namespace of its own, so nothing is added
//! to the host's network and a test can cut one machine's link. Root only, as on CI.
//!
//! Names carry the test process's id, so runs never collide; a namespace outlives a test
//! process only when that process was killed (a test runner's timeout), and the next run
//! removes such leftovers ([`Lan::new`]).

use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Every namespace these helpers create starts with this, then the test process's id.
const PREFIX: &str = "lgtest-";

/// One network namespace with `lo` up; on drop, every process still in it is killed (each
/// was started by the test) and the namespace deleted, also when the test failed.
pub(crate) struct Netns {
    /// Its name, for `ip netns exec` and `ip -n`.
    pub(crate) name: String,
}

impl Netns {
    /// Creates the namespace `name` and brings its loopback up.
    pub(crate) fn add(name: String) -> Self {
        run(&["netns", "add", &name]);
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n <name> <args>`: its stdout; panics with stderr when it fails.
    pub(crate) fn ip(&self, args: &[&str]) -> String {
        let out = ip(&[&["-n", &self.name], args].concat());
        assert!(
            out.status.success(),
            "ip -n {} {}: {}",
            self.name,
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `program` run inside the namespace.
    pub(crate) fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// The wrapper that runs a program inside the namespace, for
    /// [`super::Labgate::start_as_configured`].
    pub(crate) fn wrapper(&self) -> [&str; 4] {
        ["ip", "netns", "exec", &self.name]
    }

    /// Whether `addr` is on the namespace's interface `dev`.
    pub(crate) fn has_addr(&self, dev: &str, addr: &str) -> bool {
        let out = self.ip(&["-o", "-4", "addr", "show", "dev", dev]);
        out.split_whitespace()
            .any(|w| w.split('/').next() == Some(addr))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        kill_all_in(&self.name);
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// Hosts on one Ethernet segment: a bridge in a namespace of its own (the switch), each host a
/// namespace whose `eth0` is a veth pair's end plugged into it.
pub(crate) struct Lan {
    /// The hosts, in the order given; dropped before the switch.
    pub(crate) hosts: Vec<Netns>,
    /// The switch, kept for its lifetime.
    _switch: Netns,
}

impl Lan {
    /// A LAN named `tag` (unique within the test binary) with one host per `(name, address
    /// with prefix length)`. Leftovers of killed earlier runs are removed first.
    pub(crate) fn new(tag: &str, hosts: &[(&str, &str)]) -> Self {
        remove_leftovers();
        let base = format!("{PREFIX}{}-{tag}", std::process::id());
        let switch = Netns::add(format!("{base}-sw"));
        switch.ip(&["link", "add", "br0", "type", "bridge"]);
        switch.ip(&["link", "set", "br0", "up"]);
        let mut made = Vec::new();
        for (i, (name, addr)) in hosts.iter().enumerate() {
            let host = Netns::add(format!("{base}-{name}"));
            let port = format!("port{i}");
            switch.ip(&[
                "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &host.name,
            ]);
            switch.ip(&["link", "set", &port, "master", "br0", "up"]);
            host.ip(&["addr", "add", addr, "dev", "eth0"]);
            host.ip(&["link", "set", "eth0", "up"]);
            made.push(host);
        }
        Self {
            hosts: made,
            _switch: switch,
        }
    }
}

/// `ip <args>` (iproute2), failing loudly when it is missing.
fn ip(args: &[&str]) -> Output {
    Command::new("ip")
        .args(args)
        .output()
        .expect("ip (iproute2) is needed: scripts/test.sh installs it")
}

/// `ip <args>`, which must succeed (root: CAP_NET_ADMIN and CAP_SYS_ADMIN).
fn run(args: &[&str]) {
    let out = ip(args);
    assert!(
        out.status.success(),
        "ip {} (network namespaces need root): {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Kills every process in namespace `name` by its id (all were started by a test), and waits
/// a little for them to go: a process keeps its namespace's interfaces alive.
fn kill_all_in(name: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = ip(&["netns", "pids", name]);
        let pids: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        if pids.is_empty() || Instant::now() >= deadline {
            return;
        }
        for pid in &pids {
            let _ = Command::new("kill").args(["-KILL", pid]).output();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Deletes the namespaces of test processes that no longer run (killed by a runner's timeout
/// before their guards ran).
fn remove_leftovers() {
    let out = ip(&["netns", "list"]);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            kill_all_in(name);
            let _ = ip(&["netns", "del", name]);
        }
    }
}
