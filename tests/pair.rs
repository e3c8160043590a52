//! Two labgates behind one virtual address (issue 25, "Two machines, one address"): two nodes
//! and a client in network namespaces on one bridge, keepalived on each node with
//! `deploy/keepalived/keepalived.conf` exactly as shipped (its `@node1`/`@node2` lines picked
//! with `-i`), both labgates on the same configuration file. Clients in the client namespace
//! ask the virtual address without pause (dig for DNS, curl for HTTPS, one process per
//! query); the test kills the active node's labgate (or cuts its link) and measures how long
//! the address stays unanswered, checks that nothing answers wrongly meanwhile, then brings
//! the node back and checks that failback costs no second outage. Root only, as on CI.
#![allow(
    clippy::disallowed_macros,
    clippy::disallowed_methods,
    reason = "drives real processes from outside: deadlines on the wall clock, polls until they pass, prints what it measured"
)]

mod support;

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use support::Labgate;
use support::netns::{Lan, Netns};

/// The addresses `deploy/keepalived/keepalived.conf` names.
const NODES: [&str; 2] = ["192.168.1.11", "192.168.1.12"];
const VIP: &str = "192.168.1.53";
const CLIENT: &str = "192.168.1.100";
/// The target: the address answers again within this after its node fails.
const FAILOVER_BUDGET: Duration = Duration::from_secs(3);
/// Each client query's timeout (dig `+time`, curl `--max-time`).
const QUERY_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest run of unanswered queries a failback may cost: one query timeout (plus
/// scheduling on a loaded machine), never a second outage.
const FAILBACK_OUTAGE: Duration = Duration::from_millis(1250);
/// How often the HTTPS client starts a request at most: a process per request, kept from
/// loading the 2-core CI machine whose timers keepalived needs.
const HTTPS_PACE: Duration = Duration::from_millis(50);
/// How long to watch the clients after a node came back, for a late takeover.
const FAILBACK_WATCH: Duration = Duration::from_secs(4);
/// Bound on every wait for keepalived (elections, a failover that never comes).
const WAIT: Duration = Duration::from_secs(20);

/// One pair at a time: two labgates and two keepalived per test, on a shared 2-core CI
/// machine, and the timings are the point.
static SERIAL: Mutex<()> = Mutex::new(());

/// Both nodes serve this one file, as two checkouts of the same Git revision would.
const CONFIG: &str = r#"[listen]
dns = ["0.0.0.0:53"]
https = ["0.0.0.0:443"]
http = ["0.0.0.0:80"]
admin = "127.0.0.1:9153"

[[network]]
name = "lan"
cidrs = ["192.168.1.0/24"]
addresses = ["192.168.1.53"]

[[zone]]
name = "lab.test"

# The backend is each node's own admin endpoint: the answer says nothing about which node
# gave it, as a real service behind the pair would.
[[service]]
host = "app.lab.test"
backends = ["http://127.0.0.1:9153"]
allow = ["lan"]

# Each node finds which of the two it is from its own interface (no `--node`).
[pair]
nodes = ["192.168.1.11", "192.168.1.12"]
key_file = "pair-key.pem"
tsig_file = "pair.tsig"
"#;

/// The pair's TSIG key file (any secret: nothing in these tests is signed).
const TSIG: &str = "key \"labgate-pair\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0IQ==\";\n};\n";

#[test]
fn a_killed_labgate_moves_the_address_within_3s_and_failback_costs_no_second_outage() {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let mut pair = Pair::start("kill");
    let active = pair.wait_settled();
    let standby = 1 - active;
    let dns = Prober::dns(&pair.lan.hosts[2]);
    let https = Prober::https(&pair.lan.hosts[2]);
    dns.wait_right_after(
        Instant::now(),
        "DNS from the virtual address before the failure",
    );
    https.wait_right_after(
        Instant::now(),
        "HTTPS from the virtual address before the failure",
    );

    let killed = Instant::now();
    pair.kill_labgate(active);
    let dns_outage = dns.wait_recovered(killed);
    let https_outage = https.wait_recovered(killed);
    pair.wait_holder(standby);
    dns.assert_never_wrong();
    https.assert_never_wrong();
    eprintln!(
        "pair: labgate killed on node{}: DNS answered again after {dns_outage:?}, HTTPS after {https_outage:?}",
        active + 1
    );
    assert!(
        dns_outage < FAILOVER_BUDGET,
        "DNS unanswered for {dns_outage:?} after the kill"
    );
    assert!(
        https_outage < FAILOVER_BUDGET,
        "HTTPS unanswered for {https_outage:?} after the kill"
    );

    // Failback: the node's labgate comes back; the address must not move again in a way the
    // clients notice.
    let back = Instant::now();
    let rejoins = pair.keepalived[active].count("Entering BACKUP STATE");
    pair.start_labgate(active);
    pair.keepalived[active].wait_count("Entering BACKUP STATE", rejoins + 1);
    pair.watch_failback(&dns, &https, back, standby);
}

#[test]
fn a_cut_link_moves_the_address_within_3s_and_failback_costs_no_second_outage() {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let pair = Pair::start("link");
    let active = pair.wait_settled();
    let standby = 1 - active;
    let dns = Prober::dns(&pair.lan.hosts[2]);
    let https = Prober::https(&pair.lan.hosts[2]);
    dns.wait_right_after(
        Instant::now(),
        "DNS from the virtual address before the failure",
    );
    https.wait_right_after(
        Instant::now(),
        "HTTPS from the virtual address before the failure",
    );

    let cut = Instant::now();
    pair.lan.hosts[active].ip(&["link", "set", "eth0", "down"]);
    let dns_outage = dns.wait_recovered(cut);
    let https_outage = https.wait_recovered(cut);
    pair.wait_holder(standby);
    dns.assert_never_wrong();
    https.assert_never_wrong();
    eprintln!(
        "pair: link cut on node{}: DNS answered again after {dns_outage:?}, HTTPS after {https_outage:?}",
        active + 1
    );
    assert!(
        dns_outage < FAILOVER_BUDGET,
        "DNS unanswered for {dns_outage:?} after the cut"
    );
    assert!(
        https_outage < FAILOVER_BUDGET,
        "HTTPS unanswered for {https_outage:?} after the cut"
    );

    let back = Instant::now();
    let rejoins = pair.keepalived[active].count("Entering BACKUP STATE");
    pair.lan.hosts[active].ip(&["link", "set", "eth0", "up"]);
    pair.keepalived[active].wait_count("Entering BACKUP STATE", rejoins + 1);
    pair.watch_failback(&dns, &https, back, standby);
}

/// A labgate that hangs rather than dies (SIGSTOP: every thread frozen, the admin endpoint
/// too): the health check's request times out (1 s) twice, and the standby takes the address.
/// Slower than a death, which refuses the check at once: its budget is [`HUNG_BUDGET`].
#[test]
fn a_hung_labgate_moves_the_address_and_failback_costs_no_second_outage() {
    let signal = |pair: &Pair, node: usize, s: &str| {
        let pid = pair.labgates[node].as_ref().expect("labgate running").pid();
        let sent = Command::new("kill")
            .args([s, &pid.to_string()])
            .status()
            .expect("kill is needed: apt-get install procps (scripts/test.sh does)");
        assert!(sent.success(), "{s} not sent");
    };
    fails_over_and_back(
        "hung",
        HUNG_BUDGET,
        |pair, node| signal(pair, node, "-STOP"),
        |pair, node| signal(pair, node, "-CONT"),
    );
}

/// How long a hung node may hold the address: two health checks timing out (1 s each, a
/// second apart), the address's move, and a query's own timeout.
const HUNG_BUDGET: Duration = Duration::from_secs(6);

/// A labgate whose admin endpoint answers while its DNS does not (a firewall rule drops every
/// UDP datagram to port 53 on the node, labgate's own self-check included): `/readyz` turns
/// 503 once no self-check has passed for 5 s, keepalived's check fails twice, and the standby
/// takes the address. Its budget is [`MUTE_BUDGET`].
#[test]
fn a_labgate_whose_dns_stops_answering_loses_the_address_though_its_admin_endpoint_answers() {
    let nft = |pair: &Pair, node: usize, rule: &str| {
        let out = pair.lan.hosts[node]
            .command("nft")
            .arg(rule)
            .output()
            .expect("nft is needed: apt-get install nftables (scripts/test.sh does)");
        assert!(out.status.success(), "nft {rule}: {out:?}");
    };
    fails_over_and_back(
        "mute",
        MUTE_BUDGET,
        |pair, node| {
            nft(
                pair,
                node,
                "add table inet mute; add chain inet mute input { type filter hook input priority 0; }; \
                 add rule inet mute input udp dport 53 drop",
            );
        },
        |pair, node| nft(pair, node, "delete table inet mute"),
    );
}

/// How long a node whose DNS is silent may hold the address: `/readyz` waits for its last
/// passed self-check to be 5 s old (checks every 2 s), then two failed health checks a second
/// apart, the address's move, and a query's own timeout.
const MUTE_BUDGET: Duration = Duration::from_secs(12);

/// A pair (`tag`) whose active node's labgate is broken by `fail` while still running: DNS
/// from the virtual address is answered again within `budget` and never wrongly; once `repair`
/// mends it, the node rejoins as the backup and the address stays, without a second outage.
fn fails_over_and_back(
    tag: &str,
    budget: Duration,
    fail: impl FnOnce(&Pair, usize),
    repair: impl FnOnce(&Pair, usize),
) {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let pair = Pair::start(tag);
    let active = pair.wait_settled();
    let standby = 1 - active;
    let dns = Prober::dns(&pair.lan.hosts[2]);
    dns.wait_right_after(
        Instant::now(),
        "DNS from the virtual address before the failure",
    );
    let failed = Instant::now();
    fail(&pair, active);
    let dns_outage = dns.wait_recovered(failed);
    pair.wait_holder(standby);
    dns.assert_never_wrong();
    eprintln!(
        "pair: labgate {tag} on node{}: DNS answered again after {dns_outage:?}",
        active + 1
    );
    assert!(
        dns_outage < budget,
        "DNS unanswered for {dns_outage:?} after the failure ({tag})"
    );
    let back = Instant::now();
    let rejoins = pair.keepalived[active].count("Entering BACKUP STATE");
    repair(&pair, active);
    pair.keepalived[active].wait_count("Entering BACKUP STATE", rejoins + 1);
    let https = Prober::https(&pair.lan.hosts[2]);
    pair.watch_failback(&dns, &https, back, standby);
}

/// Two nodes, each with labgate and keepalived, and a client, on one LAN. Fields drop in
/// order: keepalived, labgate, then the namespaces (which kill whatever is left).
struct Pair {
    keepalived: Vec<Keepalived>,
    labgates: Vec<Option<Labgate>>,
    /// node1, node2, client.
    lan: Lan,
    dir: tempfile::TempDir,
}

impl Pair {
    /// The LAN, both labgates (ready), then keepalived on both nodes.
    fn start(tag: &str) -> Self {
        let lan = Lan::new(
            tag,
            &[
                ("node1", &format!("{}/24", NODES[0])),
                ("node2", &format!("{}/24", NODES[1])),
                ("client", &format!("{CLIENT}/24")),
            ],
        );
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("labgate.toml"), CONFIG).expect("config");
        // No certificate is ordered here: the key file only has to be there.
        for (name, text) in [("pair-key.pem", "unused\n"), ("pair.tsig", TSIG)] {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("secret");
            let mode = std::os::unix::fs::PermissionsExt::from_mode(0o600);
            std::fs::set_permissions(&path, mode).expect("chmod 600");
        }
        let mut pair = Self {
            keepalived: Vec::new(),
            labgates: vec![None, None],
            lan,
            dir,
        };
        for node in 0..2 {
            pair.start_labgate(node);
        }
        let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/keepalived/keepalived.conf");
        for node in 0..2 {
            let k = Keepalived::start(&pair.lan.hosts[node], node, &conf, pair.dir.path());
            pair.keepalived.push(k);
        }
        pair
    }

    /// Starts node `node`'s labgate (again) on the shared configuration and its own state
    /// directory, and waits for its readiness line.
    fn start_labgate(&mut self, node: usize) {
        let config = self.dir.path().join("labgate.toml");
        let state = self.dir.path().join(format!("state{}", node + 1));
        let lg = Labgate::start_as_configured(
            &self.lan.hosts[node].wrapper(),
            &["--config", config.to_str().expect("utf-8")],
            &state,
        );
        let role = format!(
            "[pair]: this is node {} ({})",
            NODES[node],
            ["first", "second"][node]
        );
        assert!(lg.log_text().contains(&role), "{}", lg.log_text());
        self.labgates[node] = Some(lg);
    }

    /// SIGKILL to node `node`'s labgate, and waits until it is gone.
    fn kill_labgate(&mut self, node: usize) {
        let mut lg = self.labgates[node].take().expect("labgate running");
        let sent = Command::new("kill")
            .args(["-KILL", &lg.pid().to_string()])
            .status()
            .expect("kill is needed: apt-get install procps (scripts/test.sh does)");
        assert!(sent.success(), "SIGKILL not sent");
        assert!(
            lg.wait_exit(Duration::from_secs(5)).is_some(),
            "labgate survived SIGKILL"
        );
    }

    /// The nodes holding the virtual address.
    fn holders(&self) -> Vec<usize> {
        (0..2)
            .filter(|&n| self.lan.hosts[n].has_addr("eth0", VIP))
            .collect()
    }

    /// Waits until one node holds the address and the other is a ready backup: the active
    /// node's index.
    fn wait_settled(&self) -> usize {
        let deadline = Instant::now() + WAIT + support::START_TIMEOUT;
        loop {
            if let [active] = self.holders()[..] {
                let other = &self.keepalived[1 - active];
                if self.keepalived[active].state() == "MASTER" && other.state() == "BACKUP" {
                    return active;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the pair did not settle: address on {:?}, states {:?}",
                self.holders(),
                self.keepalived
                    .iter()
                    .map(Keepalived::state)
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `node` alone holds the address.
    fn wait_holder(&self, node: usize) {
        let deadline = Instant::now() + WAIT;
        while self.holders() != [node] {
            assert!(
                Instant::now() < deadline,
                "node{} did not take the address: it is on {:?}",
                node + 1,
                self.holders()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// After a node came back at `back`: watches the clients for [`FAILBACK_WATCH`] and
    /// checks that no answer was wrong, no outage exceeded one query timeout, and the address
    /// stayed with `holder` (nopreempt).
    fn watch_failback(&self, dns: &Prober, https: &Prober, back: Instant, holder: usize) {
        let rejoined = Instant::now();
        dns.wait_right_after(
            rejoined + FAILBACK_WATCH,
            "DNS answers after the node came back",
        );
        https.wait_right_after(
            rejoined + FAILBACK_WATCH,
            "HTTPS answers after the node came back",
        );
        let (dns_outage, https_outage) = (dns.longest_outage(back), https.longest_outage(back));
        eprintln!(
            "pair: failback (node back, rejoined as backup after {:?}): DNS {} unanswered, \
             longest outage {dns_outage:?}, longest gap between answers {:?}; HTTPS {} \
             unanswered, longest outage {https_outage:?}, longest gap {:?}",
            rejoined - back,
            dns.unanswered(back),
            dns.longest_gap(back),
            https.unanswered(back),
            https.longest_gap(back),
        );
        assert!(
            dns_outage <= FAILBACK_OUTAGE,
            "failback cost DNS a second outage of {dns_outage:?}"
        );
        assert!(
            https_outage <= FAILBACK_OUTAGE,
            "failback cost HTTPS a second outage of {https_outage:?}"
        );
        assert_eq!(
            self.holders(),
            [holder],
            "the address moved on failback (nopreempt keeps it where it is)"
        );
        dns.assert_never_wrong();
        https.assert_never_wrong();
    }
}

/// keepalived (VRRP only) in a node's namespace, its log in a file; stopped with SIGTERM on
/// drop so its VRRP child goes too (the namespace's guard kills whatever remains).
struct Keepalived {
    child: Child,
    log: PathBuf,
}

impl Keepalived {
    fn start(ns: &Netns, node: usize, conf: &Path, dir: &Path) -> Self {
        let id = format!("node{}", node + 1);
        let file = |ext: &str| dir.join(format!("keepalived-{id}.{ext}"));
        let log = file("log");
        let out = File::create(&log).expect("log file");
        let child = ns
            .command("keepalived")
            .args(["-n", "-l", "-D", "-G", "-P", "-i", &id, "-f"])
            .arg(conf)
            .arg("-p")
            .arg(file("pid"))
            .arg("-r")
            .arg(file("vrrp.pid"))
            .arg("-c")
            .arg(file("checkers.pid"))
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .spawn()
            .expect("ip netns exec");
        let k = Self { child, log };
        let deadline = Instant::now() + WAIT;
        while !k.log_text().contains("Startup complete") {
            assert!(
                Instant::now() < deadline,
                "keepalived did not start (apt-get install keepalived; scripts/test.sh does): {}",
                k.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        k
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The VRRP state it last entered (`BACKUP`, `MASTER`, `FAULT`), empty before any.
    fn state(&self) -> String {
        let text = self.log_text();
        text.lines()
            .rev()
            .find_map(|l| {
                let (_, rest) = l.split_once("Entering ")?;
                Some(rest.strip_suffix(" STATE")?.to_owned())
            })
            .unwrap_or_default()
    }

    /// How many log lines contain `what`.
    fn count(&self, what: &str) -> usize {
        self.log_text().lines().filter(|l| l.contains(what)).count()
    }

    /// Waits until `what` was logged `n` times.
    fn wait_count(&self, what: &str, n: usize) {
        let deadline = Instant::now() + WAIT + support::START_TIMEOUT;
        while self.count(what) < n {
            assert!(
                Instant::now() < deadline,
                "keepalived never logged {what:?} {n} times"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Keepalived {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .output();
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- {} ---\n{}", self.log.display(), self.log_text());
        }
    }
}

/// What one client query got.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// The right answer.
    Right,
    /// No answer: a timeout, a refused connection, a reset.
    Silent,
    /// Anything else, with what the client printed.
    Wrong(String),
}

#[derive(Debug, Clone)]
struct Probe {
    sent: Instant,
    done: Instant,
    outcome: Outcome,
}

/// Clients asking the virtual address without pause from the client namespace, each
/// query's outcome recorded; they stop on drop.
struct Prober {
    name: &'static str,
    probes: Arc<Mutex<Vec<Probe>>>,
    stop: Arc<AtomicBool>,
    /// The long-lived client process, when there is one.
    child: Option<Child>,
    thread: Option<JoinHandle<()>>,
}

impl Prober {
    /// `tests/pair/dns_client.py`: one long-lived process asking for `app.lab.test` over UDP,
    /// right when the one answer is the virtual address.
    fn dns(client: &Netns) -> Self {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pair/dns_client.py");
        let mut child = client
            .command("/usr/bin/python3")
            .args([script, VIP, "app.lab.test", VIP])
            .arg(QUERY_TIMEOUT.as_secs_f64().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 is needed: apt-get install python3 (scripts/test.sh does)");
        let stdout = child.stdout.take().expect("stdout");
        let probes = Arc::new(Mutex::new(Vec::new()));
        let thread = std::thread::spawn({
            let probes = Arc::clone(&probes);
            move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let done = Instant::now();
                    let mut fields = line.splitn(3, ' ');
                    let (kind, micros) = (fields.next(), fields.next());
                    let took =
                        Duration::from_micros(micros.and_then(|m| m.parse().ok()).unwrap_or(0));
                    let outcome = match kind {
                        Some("right") => Outcome::Right,
                        Some("silent") => Outcome::Silent,
                        _ => Outcome::Wrong(line.clone()),
                    };
                    let probe = Probe {
                        sent: done - took,
                        done,
                        outcome,
                    };
                    probes
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(probe);
                }
            }
        });
        Self {
            name: "dns",
            probes,
            stop: Arc::new(AtomicBool::new(false)),
            child: Some(child),
            thread: Some(thread),
        }
    }

    /// `curl -k https://app.lab.test/healthz` at the virtual address, one process per
    /// request (curl starts fast), one every [`HTTPS_PACE`] at most: right when the service (the node's own admin endpoint)
    /// says ok.
    fn https(client: &Netns) -> Self {
        let args: Vec<String> = vec![
            "curl".into(),
            "-sk".into(),
            "--max-time".into(),
            QUERY_TIMEOUT.as_secs().to_string(),
            "--resolve".into(),
            format!("app.lab.test:443:{VIP}"),
            "-w".into(),
            "\n%{http_code}".into(),
            "https://app.lab.test/healthz".into(),
        ];
        let probes = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let ns = client.name.clone();
        let thread = std::thread::spawn({
            let (probes, stop) = (Arc::clone(&probes), Arc::clone(&stop));
            move || {
                while !stop.load(Ordering::Relaxed) {
                    let sent = Instant::now();
                    let out = Command::new("ip")
                        .args(["netns", "exec", &ns])
                        .args(&args)
                        .stdin(Stdio::null())
                        .output()
                        .expect("curl is needed: apt-get install curl (scripts/test.sh does)");
                    let text = String::from_utf8_lossy(&out.stdout);
                    let outcome = match (out.status.success(), text.as_ref()) {
                        (true, "ok\n\n200") => Outcome::Right,
                        (true, _) => Outcome::Wrong(format!("curl: {text:?}")),
                        (false, _) => Outcome::Silent,
                    };
                    let probe = Probe {
                        sent,
                        done: Instant::now(),
                        outcome,
                    };
                    if let Some(rest) = HTTPS_PACE.checked_sub(probe.done - sent) {
                        std::thread::sleep(rest);
                    }
                    probes
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(probe);
                }
            }
        });
        Self {
            name: "https",
            probes,
            stop,
            child: None,
            thread: Some(thread),
        }
    }

    fn probes(&self) -> Vec<Probe> {
        self.probes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits for a right answer to a query sent at or after `t`.
    fn wait_right_after(&self, t: Instant, what: &str) -> Probe {
        let deadline = t.max(Instant::now()) + WAIT;
        loop {
            let found = self
                .probes()
                .into_iter()
                .find(|p| p.sent >= t && p.outcome == Outcome::Right);
            if let Some(p) = found {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "{}: no {what}; last: {:?}",
                self.name,
                self.probes().last()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// After a failure at `t`: how long until the clients got a right answer again, from `t`
    /// to the end of the first right query after the first unanswered one (counting the
    /// query in flight at `t`).
    fn wait_recovered(&self, t: Instant) -> Duration {
        let deadline = t + WAIT;
        loop {
            self.assert_never_wrong();
            let probes: Vec<Probe> = self.probes().into_iter().filter(|p| p.done > t).collect();
            if let Some(first_silent) = probes.iter().find(|p| p.outcome != Outcome::Right) {
                let recovered = probes
                    .iter()
                    .find(|p| p.sent > first_silent.sent && p.outcome == Outcome::Right);
                if let Some(p) = recovered {
                    return p.done - t;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{}: no outage and recovery seen within {WAIT:?}: {:?}",
                self.name,
                probes
                    .iter()
                    .map(|p| (p.done - t, p.outcome.clone()))
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The longest time without a right answer from `from` on: from `from` to the first
    /// right answer, and between consecutive ones.
    fn longest_gap(&self, from: Instant) -> Duration {
        let mut last = from;
        let mut longest = Duration::ZERO;
        for p in self.probes() {
            if p.sent >= from && p.outcome == Outcome::Right {
                longest = longest.max(p.done.saturating_duration_since(last));
                last = p.done;
            }
        }
        longest
    }

    /// The longest run of consecutive unanswered queries sent from `from` on, from the first
    /// one's start to the last one's end: how long clients went without an answer.
    fn longest_outage(&self, from: Instant) -> Duration {
        let mut run: Option<Instant> = None;
        let mut longest = Duration::ZERO;
        for p in self.probes().into_iter().filter(|p| p.sent >= from) {
            if p.outcome == Outcome::Right {
                run = None;
            } else {
                let start = *run.get_or_insert(p.sent);
                longest = longest.max(p.done - start);
            }
        }
        longest
    }

    /// Queries sent from `from` on that got no answer.
    fn unanswered(&self, from: Instant) -> usize {
        self.probes()
            .iter()
            .filter(|p| p.sent >= from && p.outcome == Outcome::Silent)
            .count()
    }

    /// Every answer so far was the right one (a query may go unanswered, never misanswered).
    fn assert_never_wrong(&self) {
        let probes = self.probes();
        let wrong: Vec<&Probe> = probes
            .iter()
            .filter(|p| matches!(p.outcome, Outcome::Wrong(_)))
            .collect();
        assert!(
            wrong.is_empty(),
            "{}: {} of {} answers were wrong: {wrong:?}",
            self.name,
            wrong.len(),
            probes.len()
        );
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
