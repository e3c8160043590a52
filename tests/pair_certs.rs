//! Certificates in a pair (`[pair]`), end to end with Debian's Pebble: two labgates on their
//! own loopback addresses (127.0.0.2 and 127.0.0.3, `--node` saying which is which) read one
//! configuration; the first orders, the second serves the same certificate without an order
//! of its own, with each DNS-01 provider kind: RFC 2136 into BIND9, Cloudflare's API (the
//! fake in `support::cloudflare`: the real one cannot run offline), and labgate's own DNS,
//! with the CA's validation queries sent to both nodes in turn. With the first node away, the
//! second orders after `takeover`, and the first, back, takes that certificate.
#![allow(
    clippy::disallowed_macros,
    clippy::disallowed_methods,
    reason = "drives real labgates from outside: deadlines on the wall clock, polls until they pass"
)]

mod support;

use std::net::UdpSocket;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::acme::{Bind, Pebble, wait_certificate};
use support::cloudflare::{FakeCloudflare, Scope};
use support::{ConfigDir, Labgate, free_port};

const ZONE: &str = "lab.example.test";
/// The nodes' own addresses.
const NODES: [&str; 2] = ["127.0.0.2", "127.0.0.3"];

/// The two nodes' shared files and ports.
struct Pair {
    cfg: ConfigDir,
    /// The DNS and HTTPS ports, the same on both nodes' addresses.
    dns: u16,
    https: u16,
}

impl Pair {
    /// The configuration with `provider` and `acme` (extra `[acme]` lines), `[pair]` with
    /// `takeover`, a key made by `openssl genpkey` and a TSIG key by `tsig-keygen`.
    fn new(pebble: &Pebble, provider: &str, acme: &str, takeover: &str) -> Self {
        let cfg = ConfigDir::new();
        genpkey(&cfg.path("pair-key.pem"));
        let tsig = Command::new("tsig-keygen")
            .arg("labgate-pair")
            .output()
            .expect("tsig-keygen is needed: apt-get install bind9-utils (scripts/test.sh does)");
        cfg.write("pair.tsig", &String::from_utf8_lossy(&tsig.stdout));
        let mode = std::os::unix::fs::PermissionsExt::from_mode(0o600);
        std::fs::set_permissions(cfg.path("pair.tsig"), mode).expect("chmod 600");
        cfg.write(
            "labgate.toml",
            &format!(
                r#"
[[network]]
name = "lab"
cidrs = ["127.0.0.0/8"]
addresses = ["127.0.0.2"]

[[zone]]
name = "{ZONE}"

[[service]]
host = "app.{ZONE}"
backends = ["http://127.0.0.1:9"]
allow = ["lab"]

[acme]
email = "admin@example.test"
directory = "{directory}"
directory_ca_file = "{ca}"
provider = "dns"
{acme}

{provider}

[pair]
nodes = ["{n1}", "{n2}"]
key_file = "pair-key.pem"
tsig_file = "pair.tsig"
takeover = "{takeover}"
"#,
                directory = pebble.directory,
                ca = pebble.tls_ca.display(),
                n1 = NODES[0],
                n2 = NODES[1],
            ),
        );
        Self {
            cfg,
            dns: free_port(),
            https: free_port(),
        }
    }

    /// Node `n` (0: the first) on its own address, ready.
    fn start(&self, n: usize) -> Labgate {
        self.start_on(n, "labgate.toml")
    }

    /// Node `n` on the configuration file `file`.
    fn start_on(&self, n: usize, file: &str) -> Labgate {
        let ip = NODES[n];
        let config = self.cfg.path(file);
        let (dns, https) = (format!("{ip}:{}", self.dns), format!("{ip}:{}", self.https));
        let (admin, http) = (format!("{ip}:0"), format!("{ip}:0"));
        let args = [
            "--config",
            config.to_str().expect("utf-8"),
            "--node",
            ip,
            "--dns",
            &dns,
            "--https",
            &https,
            "--admin",
            &admin,
            "--http",
            &http,
        ];
        Labgate::start_as_configured(&[], &args, &self.cfg.path(&format!("state{}", n + 1)))
    }

    /// The serial and names of the certificate node `n` serves, its chain verified against
    /// `root`.
    fn served(&self, n: usize, root: &Path) -> String {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "openssl s_client -connect {}:{} -servername app.{ZONE} -CAfile {} -verify_return_error </dev/null 2>/dev/null | openssl x509 -noout -serial -ext subjectAltName",
                NODES[n],
                self.https,
                root.display()
            ))
            .output()
            .expect("openssl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// A BIND9 primary for the zone, Pebble asking it, and a pair whose provider updates it by
/// RFC 2136, the second node waiting `takeover` for the first.
fn with_bind(takeover: &str) -> (Bind, Pebble, Pair) {
    let bind = Bind::start(ZONE, "acme-update");
    let pebble = Pebble::start(&format!("127.0.0.1:{}", bind.port));
    let provider = format!(
        "[[dns_provider]]\nname = \"dns\"\nkind = \"rfc2136\"\nserver = \"127.0.0.1:{}\"\nkey_name = \"acme-update.\"\nsecret_file = \"{}\"",
        bind.port,
        bind.key_file.display()
    );
    let acme = format!("propagation_servers = [\"127.0.0.1:{}\"]", bind.port);
    let pair = Pair::new(&pebble, &provider, &acme, takeover);
    (bind, pebble, pair)
}

/// An ECDSA P-256 key at `path`, as the operator makes it (`deploy/keepalived/README.md`).
fn genpkey(path: &Path) {
    let made = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
        ])
        .arg(path)
        .status()
        .expect("openssl is needed: apt-get install openssl (scripts/test.sh does)");
    assert!(made.success(), "openssl genpkey");
    let mode = std::os::unix::fs::PermissionsExt::from_mode(0o600);
    std::fs::set_permissions(path, mode).expect("chmod 600");
}

/// Orders that ended well, and certificates taken from the peer.
fn orders_and_adoptions(lg: &Labgate) -> (u64, u64) {
    (
        lg.metric("labgate_acme_issuances_total{result=\"ok\"}"),
        lg.metric("labgate_acme_adopted_total"),
    )
}

/// Starts both nodes, and checks that the first ordered, the second adopted, and both serve
/// the same certificate, chained to Pebble's root.
fn both_serve_one_order(pair: &Pair, pebble: &Pebble) -> [Labgate; 2] {
    let nodes = [pair.start(0), pair.start(1)];
    wait_certificate(&nodes[0]);
    wait_certificate(&nodes[1]);
    assert_eq!(
        orders_and_adoptions(&nodes[0]),
        (1, 0),
        "{}",
        nodes[0].log_text()
    );
    assert_eq!(
        orders_and_adoptions(&nodes[1]),
        (0, 1),
        "{}",
        nodes[1].log_text()
    );
    let root = pebble.issuing_root();
    let served = [pair.served(0, &root), pair.served(1, &root)];
    assert!(served[0].contains("serial="), "{served:?}");
    assert!(served[0].contains(&format!("DNS:*.{ZONE}")), "{served:?}");
    assert_eq!(served[0], served[1], "both nodes serve the one certificate");
    // Each node says which it is, on /config and on the status page.
    for (n, orders) in [(0, "first"), (1, "second")] {
        let pair = &nodes[n].config()["pair"];
        let want = serde_json::json!({"node": NODES[n], "peer": NODES[1 - n], "orders": orders});
        assert_eq!(*pair, want, "node {n}");
        let (_, page) = nodes[n].admin("GET", "/");
        assert!(
            page.contains(&format!("this node {} (the {orders}", NODES[n])),
            "{page}"
        );
    }
    nodes
}

#[test]
fn with_rfc2136_the_first_node_orders_and_the_second_serves_the_same_certificate() {
    let (_bind, pebble, pair) = with_bind("15m");
    both_serve_one_order(&pair, &pebble);
}

#[test]
fn with_cloudflare_the_first_node_orders_and_the_second_serves_the_same_certificate() {
    let token = "cf-pair-token-0123456789";
    let scope = Scope {
        zone: ZONE.into(),
        edit: true,
    };
    let cf = FakeCloudflare::start(&[ZONE], &[(token, scope)]);
    let pebble = Pebble::start(&format!("127.0.0.1:{}", cf.dns_port));
    let provider = format!(
        "[[dns_provider]]\nname = \"dns\"\nkind = \"cloudflare\"\napi_url = \"{}\"\ntoken_file = \"cf.token\"",
        cf.api
    );
    let acme = format!("propagation_servers = [\"127.0.0.1:{}\"]", cf.dns_port);
    let pair = Pair::new(&pebble, &provider, &acme, "15m");
    pair.cfg.write("cf.token", &format!("{token}\n"));
    both_serve_one_order(&pair, &pebble);
    // One order's two values, created and deleted once: the second node made no calls.
    let posts = cf.requests().iter().filter(|(m, _, _)| m == "POST").count();
    assert_eq!(posts, 2, "{:#?}", cf.requests());
    assert!(cf.records().is_empty(), "left behind: {:?}", cf.records());
}

/// A DNS forwarder that sends each query to the next of `servers` in turn: the CA's
/// validation queries reach both nodes. Counts the challenge questions each one answered.
struct RoundRobin {
    port: u16,
    answered: Arc<Mutex<[usize; 2]>>,
}

impl RoundRobin {
    fn start(servers: [std::net::SocketAddr; 2]) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let port = socket.local_addr().expect("addr").port();
        let answered = Arc::new(Mutex::new([0; 2]));
        let counts = Arc::clone(&answered);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut next = 0;
            while let Ok((n, client)) = socket.recv_from(&mut buf) {
                let query = buf[..n].to_vec();
                let upstream = UdpSocket::bind("127.0.0.1:0").expect("bind");
                upstream
                    .set_read_timeout(Some(Duration::from_secs(2)))
                    .expect("timeout");
                let server = next % 2;
                next += 1;
                if upstream.send_to(&query, servers[server]).is_err() {
                    continue;
                }
                let mut answer = [0u8; 4096];
                let Ok(m) = upstream.recv(&mut answer) else {
                    continue;
                };
                let parsed = hickory_proto::op::Message::from_vec(&answer[..m]);
                if parsed.is_ok_and(|a| {
                    a.answers
                        .iter()
                        .any(|r| r.record_type() == hickory_proto::rr::RecordType::TXT)
                }) {
                    counts.lock().expect("counts")[server] += 1;
                }
                let _ = socket.send_to(&answer[..m], client);
            }
        });
        Self { port, answered }
    }
}

#[test]
fn with_the_builtin_provider_either_node_answers_the_ca() {
    let port = free_port();
    let servers = NODES.map(|ip| format!("{ip}:{port}").parse().expect("address"));
    let rr = RoundRobin::start(servers);
    let pebble = Pebble::start(&format!("127.0.0.1:{}", rr.port));
    let provider = "[[dns_provider]]\nname = \"dns\"\nkind = \"builtin\"";
    let mut pair = Pair::new(&pebble, provider, "", "15m");
    pair.dns = port;
    let nodes = both_serve_one_order(&pair, &pebble);
    // The apex and the wildcard: two validations, one answered by each node.
    let answered = *rr.answered.lock().expect("counts");
    assert!(
        answered[0] >= 1 && answered[1] >= 1,
        "TXT answers by node: {answered:?}"
    );
    // The values are gone from both once the order is done.
    for ip in NODES {
        let at = format!("@{ip}");
        let d = support::dig(
            port,
            "127.0.0.1",
            &[&at, &format!("_acme-challenge.{ZONE}"), "TXT"],
        );
        assert!(d.answer.is_empty(), "{ip}: {}", d.raw);
    }
    drop(nodes);
}

#[test]
fn the_second_node_orders_when_the_first_is_away_and_the_first_takes_its_certificate() {
    let (_bind, pebble, pair) = with_bind("1s");
    let second = pair.start(1);
    wait_certificate(&second);
    assert_eq!(
        orders_and_adoptions(&second),
        (1, 0),
        "{}",
        second.log_text()
    );
    assert!(
        second
            .log_text()
            .contains("served no new certificate; ordering"),
        "{}",
        second.log_text()
    );
    let first = pair.start(0);
    wait_certificate(&first);
    assert_eq!(orders_and_adoptions(&first), (0, 1), "{}", first.log_text());
    let root = pebble.issuing_root();
    assert_eq!(pair.served(0, &root), pair.served(1, &root));
}

#[test]
fn a_peer_whose_certificate_has_another_key_is_not_adopted() {
    let (_bind, pebble, pair) = with_bind("1s");
    // The second node's key file is not the first's (a copy forgotten): the first's chain is
    // no use to it, and it orders its own once the wait is over.
    genpkey(&pair.cfg.path("other-key.pem"));
    let text = std::fs::read_to_string(pair.cfg.path("labgate.toml")).expect("config");
    pair.cfg
        .write("other.toml", &text.replace("pair-key.pem", "other-key.pem"));
    let first = pair.start(0);
    wait_certificate(&first);
    let second = pair.start_on(1, "other.toml");
    wait_certificate(&second);
    assert_eq!(orders_and_adoptions(&first), (1, 0), "{}", first.log_text());
    assert_eq!(
        orders_and_adoptions(&second),
        (1, 0),
        "{}",
        second.log_text()
    );
    let warned = "serves a certificate for another key: give both nodes the same `[pair] key_file`";
    assert!(second.log_text().contains(warned), "{}", second.log_text());
    let root = pebble.issuing_root();
    assert_ne!(pair.served(0, &root), pair.served(1, &root));
}
