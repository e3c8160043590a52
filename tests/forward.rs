//! End-to-end: names outside the internal zones go to the upstreams (a private Unbound on
//! loopback stands in for the internet), with conditional forwarders, rebinding protection,
//! RFC 6303 reverse zones kept local, per-network recursion, and a bounded SERVFAIL when the
//! upstream is dead.
#![allow(
    clippy::disallowed_macros,
    clippy::disallowed_methods,
    reason = "drives a real labgate from outside: deadlines on the wall clock, polls until they pass, prints what it saw"
)]

mod support;

use std::time::{Duration, Instant};

use support::{ConfigDir, Labgate, Unbound, dig, dns_ports};

fn config(upstream: u16, corp: u16) -> String {
    format!(
        r#"
[listen]
dns = ["127.0.0.1:0"]

[dns]
upstreams = ["udp://127.0.0.1:{upstream}"]
rebind_allow = ["plex.test"]

[[forward]]
domain = "corp.test"
upstreams = ["tcp://127.0.0.1:{corp}"]

[[forward]]
domain = "168.192.in-addr.arpa"
upstreams = ["tcp://127.0.0.1:{corp}"]

[[forward]]
domain = "k8s.lab.test"
upstreams = ["tcp://127.0.0.1:{corp}"]

# Public reverse names to the "corporate" server: private ones must stay local.
[[forward]]
domain = "in-addr.arpa"
upstreams = ["tcp://127.0.0.1:{corp}"]

[[network]]
name = "lab"
cidrs = ["127.0.0.1/32"]
addresses = ["127.0.0.1"]

[[network]]
name = "iot"
cidrs = ["127.0.0.3/32"]
addresses = ["127.0.0.3"]
recursion = false

[[zone]]
name = "lab.test"

# Internal names that are aliases of names elsewhere: the chain is followed out.
[[record]]
name = "www.lab.test"
type = "CNAME"
value = "www.internet.test"

[[record]]
name = "kube.lab.test"
type = "CNAME"
value = "web.k8s.lab.test"
"#
    )
}

fn internet() -> Unbound {
    Unbound::start(
        &[
            "internet.test.",
            "plex.test.",
            "corp.test.",
            "168.192.in-addr.arpa.",
            "k8s.lab.test.",
            "10.in-addr.arpa.",
        ],
        &[
            "internet.test. 300 IN SOA ns.internet.test. root.internet.test. 1 3600 600 86400 120",
            "www.internet.test. 300 IN A 93.184.216.34",
            "alias.internet.test. 300 IN CNAME www.internet.test.",
            "evil.internet.test. 300 IN A 192.168.1.10",
            "box.plex.test. 300 IN A 10.0.20.50",
            "intranet.corp.test. 300 IN A 10.9.0.1",
            "5.1.168.192.in-addr.arpa. 300 IN PTR printer.home.arpa.",
            "web.k8s.lab.test. 300 IN A 10.9.0.7",
            "3.2.1.10.in-addr.arpa. 300 IN PTR leaked.internet.test.",
        ],
    )
}

fn start(upstream: u16, corp: u16) -> (ConfigDir, Labgate, u16) {
    let cfg = ConfigDir::new();
    let lg = cfg.start(&config(upstream, corp));
    let (udp, _) = dns_ports(&lg);
    (cfg, lg, udp)
}

#[test]
fn public_names_are_forwarded_with_ra_and_without_aa() {
    let up = internet();
    let (_cfg, lg, port) = start(up.port, up.port);
    let d = dig(port, "127.0.0.1", &["www.internet.test", "A"]);
    assert_eq!(d.status, "NOERROR");
    assert_eq!(d.answer.len(), 1, "{:?}", d.answer);
    assert!(
        d.answer[0].ends_with("IN A 93.184.216.34"),
        "{:?}",
        d.answer
    );
    let flags: Vec<&str> = d.flags.split(' ').collect();
    assert!(
        flags.contains(&"ra") && !flags.contains(&"aa"),
        "{}",
        d.flags
    );
    // The whole CNAME chain is relayed.
    let alias = dig(port, "127.0.0.1", &["alias.internet.test", "A"]);
    assert_eq!(alias.answer.len(), 2, "{:?}", alias.answer);
    assert!(
        alias.answer[0].contains("CNAME www.internet.test."),
        "{:?}",
        alias.answer
    );
    // Negative answers keep the upstream's SOA.
    let nx = dig(port, "127.0.0.1", &["nope.internet.test", "A"]);
    assert_eq!(nx.status, "NXDOMAIN");
    assert!(
        nx.authority
            .first()
            .is_some_and(|s| s.contains("SOA ns.internet.test.")),
        "{:?}",
        nx.authority
    );
    // Over TCP too.
    let (_, tcp) = dns_ports(&lg);
    assert_eq!(
        dig(tcp, "127.0.0.1", &["+tcp", "www.internet.test"]).status,
        "NOERROR"
    );
}

#[test]
fn rebinding_private_reverse_and_conditional_forwarders() {
    let up = internet();
    let (_cfg, _lg, port) = start(up.port, up.port);
    // A public name answering with a LAN address is dropped...
    let evil = dig(port, "127.0.0.1", &["evil.internet.test", "A"]);
    assert_eq!(evil.status, "NOERROR");
    assert!(
        evil.answer.is_empty(),
        "rebinding answer relayed: {:?}",
        evil.answer
    );
    // ...unless its domain is allowed.
    assert_eq!(dig(port, "127.0.0.1", &["box.plex.test"]).answer.len(), 1);
    let first_answer_ends = |question: &[&str], end: &str| {
        let d = dig(port, "127.0.0.1", question);
        assert!(
            d.answer.first().is_some_and(|a| a.ends_with(end)),
            "{question:?}: {}",
            d.raw
        );
    };
    // Conditional forwarders point inside the LAN: private answers pass.
    first_answer_ends(&["intranet.corp.test"], "10.9.0.1");
    // An internal alias of an outside name (and of a delegated one) gets the whole chain:
    // stub resolvers do not follow a CNAME themselves.
    for (alias, address) in [
        ("www.lab.test", "93.184.216.34"),
        ("kube.lab.test", "10.9.0.7"),
    ] {
        let chain = dig(port, "127.0.0.1", &[alias]);
        assert_eq!(chain.status, "NOERROR", "{}", chain.raw);
        assert!(
            chain.answer.len() == 2 && chain.answer[1].ends_with(address),
            "{alias}: {}",
            chain.raw
        );
    }
    // A subdomain of an internal zone delegated to another server (a cluster's DNS).
    first_answer_ends(&["web.k8s.lab.test"], "10.9.0.7");
    // A private reverse zone the user forwards (to the router that names its DHCP leases)
    // goes there.
    first_answer_ends(&["-x", "192.168.1.5"], "printer.home.arpa.");
    // Other private reverse names are answered locally (RFC 6303), never forwarded.
    let rev = dig(port, "127.0.0.1", &["-x", "10.1.2.3"]);
    assert_eq!(rev.status, "NXDOMAIN");
    assert!(rev.flags.split(' ').any(|f| f == "aa"), "{}", rev.flags);
    assert!(
        rev.authority
            .first()
            .is_some_and(|s| s.starts_with("10.in-addr.arpa.")),
        "{:?}",
        rev.authority
    );
}

#[test]
fn networks_without_recursion_are_refused_and_ch_reveals_nothing() {
    let up = internet();
    let (_cfg, _lg, port) = start(up.port, up.port);
    assert_eq!(
        dig(port, "127.0.0.3", &["www.internet.test"]).status,
        "REFUSED"
    );
    // A delegated subdomain is forwarded, so it is refused where recursion is.
    assert_eq!(
        dig(port, "127.0.0.3", &["web.k8s.lab.test"]).status,
        "REFUSED"
    );
    assert_eq!(
        dig(port, "127.0.0.1", &["version.bind", "TXT", "CH"]).status,
        "REFUSED"
    );
}

#[test]
fn a_dead_upstream_gives_servfail_within_the_bound() {
    // A UDP socket that never answers, and a TCP port nobody listens on.
    let blackhole = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let dead = blackhole.local_addr().expect("addr").port();
    let closed = support::free_port();
    let (_cfg, _lg, port) = start(dead, closed);
    let t = Instant::now();
    let d = dig(port, "127.0.0.1", &["+time=10", "www.internet.test"]);
    let took = t.elapsed();
    assert_eq!(d.status, "SERVFAIL", "after {took:?}: {}", d.raw);
    assert!(took < Duration::from_secs(6), "SERVFAIL took {took:?}");
    // The server keeps answering internal names meanwhile.
    assert_eq!(
        dig(port, "127.0.0.1", &["lab.test", "SOA"]).status,
        "NOERROR"
    );
}

#[test]
fn cached_answers_survive_the_upstream_and_go_stale_not_servfail() {
    let up = Unbound::start(
        &["internet.test."],
        &[
            "long.internet.test. 3600 IN A 93.184.216.34",
            "short.internet.test. 1 IN A 93.184.216.35",
        ],
    );
    let (_cfg, lg, port) = start(up.port, up.port);
    assert_eq!(
        dig(port, "127.0.0.1", &["long.internet.test"]).answer.len(),
        1
    );
    assert_eq!(
        dig(port, "127.0.0.1", &["short.internet.test"])
            .answer
            .len(),
        1
    );
    drop(up);
    // Within its TTL the answer comes from the cache, the upstream being gone.
    let cached = dig(port, "127.0.0.1", &["long.internet.test"]);
    assert!(
        cached
            .answer
            .first()
            .is_some_and(|a| a.ends_with("93.184.216.34")),
        "{:?}",
        cached.answer
    );
    // Past its TTL it is served stale (TTL 30, RFC 8767) instead of SERVFAIL.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let d = dig(port, "127.0.0.1", &["short.internet.test"]);
        assert_eq!(d.status, "NOERROR", "{:?}", d.answer);
        if d.answer
            .first()
            .is_some_and(|a| a == "short.internet.test. 30 IN A 93.184.216.35")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never served stale: {:?}",
            d.answer
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // A name never seen has nothing stale to offer.
    assert_eq!(
        dig(port, "127.0.0.1", &["+time=10", "new.internet.test"]).status,
        "SERVFAIL"
    );
    // The counters saw all of it.
    assert!(lg.metric("labgate_dns_stale_answers_total") >= 1);
    assert!(lg.metric("labgate_dns_cache_hits_total") >= 1);
    assert!(lg.metric("labgate_dns_cache_misses_total") >= 2);
    assert!(lg.metric("labgate_dns_upstream_failures_total") >= 1);
    assert!(lg.metric("labgate_dns_upstream_latency_seconds_count") >= 2);
    let servfail = r#"labgate_dns_queries_total{network="lab",qtype="A",rcode="SERVFAIL"}"#;
    assert_eq!(lg.metric(servfail), 1);
}

#[test]
fn dns_over_tls_upstream_with_a_private_ca() {
    // A CA and a certificate for the upstream's TLS name, made by labgate's own local CA code.
    let pki = tempfile::tempdir().expect("tempdir");
    let ca = labgate_acme::local_ca::LocalCa::load_or_create(pki.path()).expect("CA");
    let leaf = ca
        .issue(
            &["dns.internet.test".into()],
            time::OffsetDateTime::now_utc(),
        )
        .expect("leaf");
    let chain = pki.path().join("chain.pem");
    let key = pki.path().join("key.pem");
    std::fs::write(&chain, &leaf.chain_pem).expect("chain");
    std::fs::write(&key, &leaf.key_pem).expect("key");
    let up = Unbound::start_tls(
        &["internet.test."],
        &[
            "secure.internet.test. 300 IN A 93.184.216.40",
            "doh.internet.test. 300 IN A 93.184.216.41",
        ],
        Some((&chain, &key)),
    );
    let tls_port = up.tls_port.expect("tls port");
    let https_port = up.https_port.expect("https port");
    let cfg = ConfigDir::new();
    let make = |tls_name: &str| {
        format!(
            "[listen]\ndns = [\"127.0.0.1:0\"]\n\n[dns]\nupstreams = [\"tls://127.0.0.1:{tls_port}#{tls_name}\"]\nupstream_ca_file = \"{}\"\n\n\
             [[network]]\nname = \"lab\"\ncidrs = [\"127.0.0.1/32\"]\naddresses = [\"127.0.0.1\"]\n",
            ca.cert_path().display()
        )
    };
    let lg = cfg.start(&make("dns.internet.test"));
    let (port, _) = dns_ports(&lg);
    let d = dig(port, "127.0.0.1", &["secure.internet.test"]);
    assert!(
        d.answer
            .first()
            .is_some_and(|a| a.ends_with("93.184.216.40")),
        "{}",
        d.raw
    );
    // A TLS name the certificate does not carry must fail verification: SERVFAIL, no answer.
    cfg.write("labgate.toml", &make("wrong.internet.test"));
    lg.wait_config("generation 2", |c| support::generation(c) == 2);
    let bad = dig(port, "127.0.0.1", &["+time=10", "other.internet.test"]);
    assert_eq!(bad.status, "SERVFAIL", "{}", bad.raw);
    // DNS over HTTPS (RFC 8484) to the same Unbound, same private CA.
    cfg.write(
        "labgate.toml",
        &make("dns.internet.test").replace(
            &format!("tls://127.0.0.1:{tls_port}#dns.internet.test"),
            &format!("https://127.0.0.1:{https_port}/dns-query#dns.internet.test"),
        ),
    );
    lg.wait_config("generation 3", |c| support::generation(c) == 3);
    let doh = dig(port, "127.0.0.1", &["doh.internet.test"]);
    assert!(
        doh.answer
            .first()
            .is_some_and(|a| a.ends_with("93.184.216.41")),
        "{}",
        doh.raw
    );
    assert!(lg.metric("labgate_dns_upstream_latency_seconds_count") >= 2);
}
