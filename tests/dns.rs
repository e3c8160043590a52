//! End-to-end: the real binary answers DNS per network view, over UDP and TCP, with dig as
//! the client; loopback addresses 127.0.0.x stand in for VLANs (`dig -b`).
#![allow(
    clippy::disallowed_macros,
    clippy::disallowed_methods,
    reason = "drives a real labgate from outside: deadlines on the wall clock, polls until they pass, prints what it saw"
)]

mod support;

use support::{ConfigDir, Labgate, dig, dns_ports};

const CONFIG: &str = r#"
[listen]
dns = ["127.0.0.1:0"]

[[network]]
name = "lab"
cidrs = ["127.0.0.1/32"]
addresses = ["10.0.10.2", "fd00:10::2"]

[[network]]
name = "iot"
cidrs = ["127.0.0.3/32"]
addresses = ["10.0.40.2"]

[[network]]
name = "guest"
cidrs = ["127.0.0.2/32"]
addresses = ["10.0.50.2"]
internal = false

[[network]]
name = "vpn"
cidrs = ["127.0.0.4/32"]
addresses = ["10.0.60.2"]

[[zone]]
name = "lab.test"

[[record]]
name = "nas.lab.test"
type = "A"
value = "10.0.20.10"
networks = ["lab"]

[[record]]
name = "files.lab.test"
type = "CNAME"
value = "nas.lab.test"

[[record]]
name = "old.lab.test"
type = "CNAME"
value = "gone.lab.test"

[[record]]
name = "big.lab.test"
type = "TXT"
value = "0xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"

[[record]]
name = "big.lab.test"
type = "TXT"
value = "1xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"

[[record]]
name = "big.lab.test"
type = "TXT"
value = "2xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"

[[record]]
name = "big.lab.test"
type = "TXT"
value = "3xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"

[[record]]
name = "big.lab.test"
type = "TXT"
value = "4xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"

[[record]]
name = "big.lab.test"
type = "TXT"
value = "5xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"

[[record]]
name = "big.lab.test"
type = "TXT"
value = "6xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"

[[record]]
name = "big.lab.test"
type = "TXT"
value = "7xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"

[[record]]
name = "huge.lab.test"
type = "TXT"
value = "0yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy"

[[record]]
name = "huge.lab.test"
type = "TXT"
value = "1yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy"

[[record]]
name = "huge.lab.test"
type = "TXT"
value = "2yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy"

[[record]]
name = "huge.lab.test"
type = "TXT"
value = "3yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy"

[[record]]
name = "huge.lab.test"
type = "TXT"
value = "4yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy"

[[record]]
name = "huge.lab.test"
type = "TXT"
value = "5yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy"

[[record]]
name = "huge.lab.test"
type = "TXT"
value = "6yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy"

[[record]]
name = "huge.lab.test"
type = "TXT"
value = "7yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy"

[[service]]
host = "cloud.lab.test"
backends = ["http://10.0.20.11"]
allow = ["lab"]

[[service]]
host = "home.lab.test"
backends = ["http://10.0.20.13:8123"]
allow = ["lab", "iot", "vpn"]
"#;

fn start(cfg: &ConfigDir) -> (Labgate, u16, u16) {
    let lg = cfg.start(CONFIG);
    let (udp, tcp) = dns_ports(&lg);
    (lg, udp, tcp)
}

#[test]
fn each_network_gets_its_own_answer_for_a_service() {
    let cfg = ConfigDir::new();
    let (lg, udp, tcp) = start(&cfg);
    // dig sends a COOKIE option: the general path. Without options, or without EDNS, the
    // fast path answers, and the answers are the same.
    let fast = "labgate_dns_fast_path_answers_total";
    assert_eq!(lg.metric(fast), 0);
    for shape in [&["+nocookie"][..], &["+noedns"][..]] {
        let mut args = shape.to_vec();
        args.extend(["cloud.lab.test", "A"]);
        let a = dig(udp, "127.0.0.1", &args);
        assert_eq!(
            a.answer,
            ["cloud.lab.test. 300 IN A 10.0.10.2"],
            "{}",
            a.raw
        );
        assert!(a.flags.split(' ').any(|f| f == "aa"), "{}", a.raw);
    }
    assert_eq!(lg.metric(fast), 2);
    let lab = dig(udp, "127.0.0.1", &["cloud.lab.test", "A"]);
    assert_eq!(lab.status, "NOERROR");
    assert!(
        lab.flags.split(' ').any(|f| f == "aa"),
        "authoritative: {}",
        lab.flags
    );
    assert_eq!(lab.answer, ["cloud.lab.test. 300 IN A 10.0.10.2"]);
    let lab6 = dig(tcp, "127.0.0.1", &["+tcp", "cloud.lab.test", "AAAA"]);
    assert_eq!(lab6.answer, ["cloud.lab.test. 300 IN AAAA fd00:10::2"]);
    // IoT may use Home Assistant (its own address) but not the cloud.
    let iot = dig(udp, "127.0.0.3", &["home.lab.test", "A"]);
    assert_eq!(iot.answer, ["home.lab.test. 300 IN A 10.0.40.2"]);
    let hidden = dig(udp, "127.0.0.3", &["cloud.lab.test", "A"]);
    assert_eq!(hidden.status, "NXDOMAIN");
    assert_eq!(hidden.authority.len(), 1, "SOA in authority");
    assert!(
        hidden.authority[0].starts_with("lab.test. 60 IN SOA ns.lab.test. hostmaster.lab.test."),
        "{:?}",
        hidden.authority
    );
}

#[test]
fn guests_see_nothing_and_strangers_are_refused() {
    let cfg = ConfigDir::new();
    let (lg, udp, tcp) = start(&cfg);
    for name in ["cloud.lab.test", "nas.lab.test", "lab.test"] {
        assert_eq!(
            dig(udp, "127.0.0.2", &[name, "A"]).status,
            "NXDOMAIN",
            "{name}"
        );
    }
    // 127.0.0.9 is in no network: REFUSED for every name, over UDP and TCP.
    assert_eq!(dig(udp, "127.0.0.9", &["cloud.lab.test"]).status, "REFUSED");
    assert_eq!(
        dig(tcp, "127.0.0.9", &["+tcp", "example.com"]).status,
        "REFUSED"
    );
    let refused = r#"labgate_dns_queries_total{network="none",qtype="A",rcode="REFUSED"}"#;
    assert_eq!(lg.metric(refused), 2);
    let hidden = r#"labgate_dns_queries_total{network="guest",qtype="A",rcode="NXDOMAIN"}"#;
    assert_eq!(lg.metric(hidden), 3);
}

#[test]
fn nodata_cname_chains_and_case_are_right() {
    let cfg = ConfigDir::new();
    let (_lg, udp, _tcp) = start(&cfg);
    // home.lab.test exists for IoT but has no IPv6 there: NODATA with the SOA.
    let nodata = dig(udp, "127.0.0.3", &["home.lab.test", "AAAA"]);
    assert_eq!(nodata.status, "NOERROR");
    assert!(nodata.answer.is_empty());
    assert_eq!(nodata.authority.len(), 1);
    // Reverse names of private addresses are answered from the view's own records.
    assert_eq!(
        dig(udp, "127.0.0.1", &["-x", "10.0.20.10"]).answer,
        ["10.20.0.10.in-addr.arpa. 300 IN PTR nas.lab.test."]
    );
    assert_eq!(
        dig(udp, "127.0.0.3", &["-x", "10.0.20.10"]).status,
        "NXDOMAIN"
    );
    // RFC 6604: a chain ending at a missing name is NXDOMAIN, with the CNAME and the SOA.
    let dangling = dig(udp, "127.0.0.1", &["old.lab.test", "A"]);
    assert_eq!(dangling.status, "NXDOMAIN", "{}", dangling.raw);
    assert_eq!(
        dangling.answer,
        ["old.lab.test. 300 IN CNAME gone.lab.test."]
    );
    assert_eq!(dangling.authority.len(), 1, "{}", dangling.raw);
    let chain = dig(udp, "127.0.0.1", &["FILES.Lab.Test", "A"]);
    assert_eq!(
        chain.answer,
        [
            "files.lab.test. 300 IN CNAME nas.lab.test.",
            "nas.lab.test. 300 IN A 10.0.20.10"
        ]
    );
}

#[test]
fn answers_follow_a_reload() {
    let cfg = ConfigDir::new();
    let (lg, udp, _tcp) = start(&cfg);
    assert_eq!(
        dig(udp, "127.0.0.3", &["cloud.lab.test"]).status,
        "NXDOMAIN"
    );
    cfg.write(
        "labgate.toml",
        &CONFIG.replace("allow = [\"lab\"]", "allow = [\"lab\", \"iot\"]"),
    );
    lg.wait_config("generation 2", |c| support::generation(c) == 2);
    assert_eq!(
        dig(udp, "127.0.0.3", &["cloud.lab.test"]).answer,
        ["cloud.lab.test. 300 IN A 10.0.40.2"]
    );
}

#[test]
fn protocol_edges_get_the_proper_answer_and_junk_never_stops_the_server() {
    let cfg = ConfigDir::new();
    let (_lg, udp, tcp) = start(&cfg);
    // EDNS: DO echoed, payload capped at 1232, BADVERS for version 1.
    let d = dig(
        udp,
        "127.0.0.1",
        &["+dnssec", "+bufsize=4096", "cloud.lab.test"],
    );
    assert!(
        d.edns.contains("flags: do;") && d.edns.contains("udp: 1232"),
        "{}",
        d.edns
    );
    assert_eq!(
        dig(
            udp,
            "127.0.0.1",
            &["+edns=1", "+noednsnegotiation", "cloud.lab.test"]
        )
        .status,
        "BADVERS"
    );
    // Other opcodes are not implemented; unknown types are NODATA; ANY is answered minimally.
    assert_eq!(
        dig(udp, "127.0.0.1", &["+opcode=notify", "lab.test", "SOA"]).status,
        "NOTIMP"
    );
    let unknown = dig(udp, "127.0.0.1", &["cloud.lab.test", "TYPE65000"]);
    assert_eq!(
        (unknown.status.as_str(), unknown.answer.len()),
        ("NOERROR", 0)
    );
    // dig sends ANY over TCP unless told otherwise.
    let any = dig(udp, "127.0.0.1", &["+notcp", "cloud.lab.test", "ANY"]);
    assert_eq!(
        any.answer,
        ["cloud.lab.test. 300 IN A 10.0.10.2"],
        "{}",
        any.raw
    );

    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(std::time::Duration::from_millis(500)))
        .expect("timeout");
    let server = ("127.0.0.1", udp);
    // A response (QR=1) is dropped, never answered: answering would let two servers loop.
    let mut response = dig_query_bytes();
    response[2] |= 0x80;
    sock.send_to(&response, server).expect("send");
    let mut buf = [0u8; 1500];
    assert!(
        sock.recv_from(&mut buf).is_err(),
        "a QR=1 packet was answered"
    );
    // Junk of every length, then a liveness query over UDP and TCP.
    for len in [0usize, 1, 5, 11, 12, 13, 40, 512] {
        let junk: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
        sock.send_to(&junk, server).expect("send junk");
    }
    let mut truncated = dig_query_bytes();
    truncated.truncate(20);
    sock.send_to(&truncated, server).expect("send truncated");
    assert_eq!(dig(udp, "127.0.0.1", &["cloud.lab.test"]).status, "NOERROR");
    assert_eq!(
        dig(tcp, "127.0.0.1", &["+tcp", "cloud.lab.test"]).status,
        "NOERROR"
    );
}

/// A well-formed query for `cloud.lab.test A`, RD set.
fn dig_query_bytes() -> Vec<u8> {
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in ["cloud", "lab", "test"] {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// Issue 9: queries in flight during reloads are all answered. A client keeps sending
/// queries while the configuration is rewritten five times, each time until the new
/// generation is serving; every query must get its answer, from the old snapshot or the new.
#[test]
fn no_query_is_lost_during_repeated_reloads() {
    let cfg = ConfigDir::new();
    let (lg, udp, _tcp) = start(&cfg);
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(std::time::Duration::from_secs(3)))
        .expect("timeout");
    let mut query = dig_query_bytes();
    let mut buf = [0u8; 1500];
    let mut id: u16 = 0;
    let mut ask = || {
        id = id.wrapping_add(1);
        query[0..2].copy_from_slice(&id.to_be_bytes());
        sock.send_to(&query, ("127.0.0.1", udp)).expect("send");
        let (n, _) = sock
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("query {id} lost: {e}"));
        assert!(
            n >= 12 && buf[0..2] == id.to_be_bytes(),
            "query {id}: wrong reply"
        );
        assert_eq!(buf[3] & 0x0f, 0, "query {id}: rcode {}", buf[3] & 0x0f);
        assert_eq!(
            u16::from_be_bytes([buf[6], buf[7]]),
            1,
            "query {id}: no answer"
        );
    };
    let mut sent = 0;
    for round in 1..=5u64 {
        let extra = format!(
            "\n[[record]]\nname = \"r{round}.lab.test\"\ntype = \"TXT\"\nvalue = \"round {round}\"\n"
        );
        cfg.write("labgate.toml", &format!("{CONFIG}{extra}"));
        let deadline = std::time::Instant::now() + support::RELOAD_TIMEOUT;
        loop {
            for _ in 0..20 {
                ask();
                sent += 1;
            }
            if support::generation(&lg.config()) == round + 1 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "reload {round} never served"
            );
        }
        // A few more on the new snapshot before the next edit.
        for _ in 0..20 {
            ask();
            sent += 1;
        }
    }
    assert!(sent >= 200, "only {sent} queries");
}

#[test]
fn a_truncated_udp_answer_keeps_its_opt_record_and_tcp_has_it_all() {
    let cfg = ConfigDir::new();
    let (_lg, udp, tcp) = start(&cfg);
    // Eight 227-byte TXT records do not fit in 1232 bytes. Sizes chosen so that the records
    // that fit leave less room than an OPT record (compressed or not): RFC 6891 §7 still
    // wants the OPT. (hickory's encoder keeps it; this guards that.)
    let truncated = dig(
        udp,
        "127.0.0.1",
        &["+notcp", "+ignore", "+bufsize=1232", "big.lab.test", "TXT"],
    );
    assert!(
        truncated.flags.split_whitespace().any(|f| f == "tc"),
        "{}",
        truncated.raw
    );
    assert!(
        truncated.edns.starts_with("; EDNS: version: 0"),
        "OPT kept (RFC 6891 §7): {}",
        truncated.raw
    );
    // 274-byte values: four uncompressed records fill 1232 bytes to within 11.
    let huge = dig(
        udp,
        "127.0.0.1",
        &["+notcp", "+ignore", "+bufsize=1232", "huge.lab.test", "TXT"],
    );
    assert!(
        huge.flags.split_whitespace().any(|f| f == "tc"),
        "{}",
        huge.raw
    );
    assert!(
        huge.edns.starts_with("; EDNS: version: 0"),
        "OPT kept: {}",
        huge.raw
    );
    let full = dig(tcp, "127.0.0.1", &["+tcp", "big.lab.test", "TXT"]);
    assert_eq!(full.answer.len(), 8, "{}", full.raw);
    let small = dig(
        udp,
        "127.0.0.1",
        &["+notcp", "+bufsize=1232", "nas.lab.test"],
    );
    assert!(!small.flags.contains("tc"), "{}", small.raw);
}

#[test]
fn hickory_and_kdig_clients_from_a_vpn_address_get_the_vpn_view() {
    let cfg = ConfigDir::new();
    let (_lg, udp, tcp) = start(&cfg);
    // hickory's own client, over UDP and TCP, bound to 127.0.0.4 (the vpn network).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let ask = |port: u16, name: &str, tcp: bool| {
        rt.block_on(async {
            tokio::time::timeout(
                std::time::Duration::from_secs(10),
                support::hickory_query(port, "127.0.0.4", name, tcp),
            )
            .await
            .expect("an answer within 10 s")
        })
    };
    for over_tcp in [false, true] {
        let port = if over_tcp { tcp } else { udp };
        let home = ask(port, "home.lab.test.", over_tcp);
        assert_eq!(home.rcode, "NoError", "{home:?}");
        assert!(home.authoritative, "{home:?}");
        assert_eq!(home.answers, ["10.0.60.2"], "the vpn view's address");
        let cloud = ask(port, "cloud.lab.test.", over_tcp);
        assert_eq!(cloud.rcode, "NXDomain", "not allowed to vpn: {cloud:?}");
    }
    // kdig (Knot's client) from the same address.
    let out = std::process::Command::new("kdig")
        .args(["@127.0.0.1", "-p", &udp.to_string(), "-b", "127.0.0.4"])
        .args(["+short", "+timeout=5", "+retry=0", "home.lab.test", "A"])
        .output()
        .expect("kdig is needed: apt-get install knot-dnsutils (scripts/test.sh does)");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "10.0.60.2",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_wildcard_listener_answers_from_the_address_the_client_asked() {
    let cfg = ConfigDir::new();
    cfg.write("labgate.toml", CONFIG);
    let lg = Labgate::start(
        &[
            "--config",
            cfg.path("labgate.toml").to_str().expect("utf-8"),
            "--dns",
            "0.0.0.0:0",
        ],
        &cfg.path("state"),
    );
    let port = (lg.stdout.iter())
        .find_map(|l| l.strip_prefix("labgate: dns listening on udp 0.0.0.0:"))
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or_else(|| panic!("no wildcard udp line in {:#?}", lg.stdout));
    // Asked at 127.0.0.2, the kernel alone would answer from 127.0.0.1, and dig drops that
    // ("reply from unexpected source"). Plain: the fast path; DO set: the general path.
    for server in ["@127.0.0.1", "@127.0.0.2"] {
        for extra in ["+nodnssec", "+dnssec"] {
            let out = std::process::Command::new("dig")
                .args([server, "-p", &port.to_string(), "-b", "127.0.0.1"])
                .args([
                    "+time=5",
                    "+tries=1",
                    "+notcp",
                    extra,
                    "cloud.lab.test",
                    "A",
                ])
                .output()
                .expect("dig is needed: apt-get install dnsutils (scripts/test.sh does)");
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(text.contains("status: NOERROR"), "{server} {extra}: {text}");
            assert!(
                !text.contains("unexpected source"),
                "{server} {extra}: {text}"
            );
        }
    }
}

#[test]
fn dns_over_tls_answers_each_network_with_the_served_certificate() {
    let cfg = ConfigDir::new();
    let config = CONFIG.replacen(
        "dns = [\"127.0.0.1:0\"]\n",
        "dns = [\"127.0.0.1:0\"]\ndns_tls = [\"127.0.0.1:0\"]\n",
        1,
    ) + "\n[tls]\ndefault_name = \"dns.lab.test\"\n";
    assert!(config.contains("dns_tls"), "the listener is configured");
    let lg = cfg.start(&config);
    let port = lg
        .stdout
        .iter()
        .find_map(|l| l.strip_prefix("labgate: dns listening on tls 127.0.0.1:"))
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or_else(|| panic!("no tls dns line in {:#?}", lg.stdout));
    let ca = cfg.path("state").join("local-ca/ca.pem");
    // kdig verifies the chain against labgate's local CA and the name against the default
    // certificate's.
    let kdig = |from: &str, short: bool| {
        let out = std::process::Command::new("kdig")
            .args(["@127.0.0.1", "-p", &port.to_string(), "-b", from, "+tls"])
            .arg(format!("+tls-ca={}", ca.display()))
            .args(["+tls-hostname=dns.lab.test", "+timeout=5", "+retry=0"])
            .args(if short { &["+short"][..] } else { &[][..] })
            .args(["home.lab.test", "A"])
            .output()
            .expect("kdig is needed: apt-get install knot-dnsutils (scripts/test.sh does)");
        (
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (lab, why) = kdig("127.0.0.1", true);
    assert_eq!(lab, "10.0.10.2", "the lab view over TLS: {why}");
    let (vpn, why) = kdig("127.0.0.4", true);
    assert_eq!(vpn, "10.0.60.2", "the vpn view over TLS: {why}");
    let (stranger, why) = kdig("127.0.0.9", false);
    assert!(
        stranger.contains("status: REFUSED"),
        "no network, no answer: {stranger} {why}"
    );
}

#[test]
fn tcp_answers_pipelined_queries_and_closes_a_silent_connection() {
    use std::io::{Read, Write};
    let cfg = ConfigDir::new();
    let (_lg, _udp, tcp) = start(&cfg);
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", tcp)).expect("connect");
    conn.set_read_timeout(Some(std::time::Duration::from_secs(40)))
        .expect("timeout");
    // Three queries in one write (RFC 7766 pipelining), IDs 1, 2 and 3.
    let mut burst = Vec::new();
    for id in 1u16..=3 {
        let mut q = dig_query_bytes();
        q[..2].copy_from_slice(&id.to_be_bytes());
        burst.extend_from_slice(&u16::try_from(q.len()).expect("short").to_be_bytes());
        burst.extend_from_slice(&q);
    }
    conn.write_all(&burst).expect("send");
    let mut ids = Vec::new();
    for _ in 0..3 {
        let mut len = [0u8; 2];
        conn.read_exact(&mut len).expect("an answer's length");
        let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
        conn.read_exact(&mut answer).expect("an answer");
        assert_eq!(answer[3] & 0x0F, 0, "NOERROR");
        ids.push(u16::from_be_bytes([answer[0], answer[1]]));
    }
    ids.sort_unstable();
    assert_eq!(ids, [1, 2, 3], "each query answered once");
    // Then silence: the server closes the connection after its idle time.
    let started = std::time::Instant::now();
    let mut rest = [0u8; 1];
    let n = conn.read(&mut rest).expect("closed, not timed out");
    assert_eq!(n, 0, "nothing more, then the end of the stream");
    let idle = started.elapsed();
    assert!(
        idle >= std::time::Duration::from_secs(5) && idle < std::time::Duration::from_secs(30),
        "closed after {idle:?} (the idle time is {:?})",
        std::time::Duration::from_secs(10)
    );
}

#[test]
fn a_tcp_client_that_never_reads_its_answers_is_cut_off() {
    use std::io::Write;
    let cfg = ConfigDir::new();
    let (_lg, _udp, tcp) = start(&cfg);
    // A small receive window, so labgate's answers back up quickly.
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], tcp).into();
    socket.connect(&addr.into()).expect("connect");
    let mut conn: std::net::TcpStream = socket.into();
    conn.set_write_timeout(Some(std::time::Duration::from_secs(5)))
        .expect("timeout");
    let q = dig_query_bytes();
    let mut framed = u16::try_from(q.len())
        .expect("short")
        .to_be_bytes()
        .to_vec();
    framed.extend_from_slice(&q);
    let batch: Vec<u8> = framed.repeat(64);
    // Queries and never a read: labgate stops reading when its answers cannot leave, then,
    // after its write bound, drops the connection (a reset, with queries unread).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let ended = loop {
        match conn.write_all(&batch) {
            Ok(()) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => break e,
        }
        assert!(
            std::time::Instant::now() < deadline,
            "labgate kept a connection whose client reads nothing"
        );
    };
    assert!(
        matches!(
            ended.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
        ),
        "the connection ended by labgate: {ended}"
    );
}

/// A message that parses as a DNS header but not past it (here two OPT records, RFC 6891
/// §6.1.1) gets FORMERR with its ID, over UDP and over TCP, and the TCP connection goes on.
#[test]
fn a_message_that_does_not_parse_gets_formerr_over_udp_and_tcp() {
    use std::io::{Read, Write};
    use support::wire::{self, Client};
    let cfg = ConfigDir::new();
    let (_lg, udp, tcp) = start(&cfg);
    let mut two_opts = wire::query(0x4242, "cloud.lab.test", wire::A, Some(1232));
    two_opts[11] = 2;
    two_opts.extend_from_slice(&wire::opt(1232));
    // A question whose name runs past the end.
    let mut cut = wire::query(0x4343, "cloud.lab.test", wire::A, None);
    cut.truncate(20);
    // Two questions and a readable OPT: FORMERR, with an OPT back (RFC 6891 §7).
    let mut two_questions = wire::query(0x4444, "cloud.lab.test", wire::A, None);
    two_questions[5] = 2;
    two_questions.extend_from_within(12..);
    two_questions[11] = 1;
    two_questions.extend_from_slice(&wire::opt(1232));
    let client = Client::from("127.0.0.1");
    for (query, id, opt) in [
        (&two_opts, 0x4242, false),
        (&cut, 0x4343, false),
        (&two_questions, 0x4444, true),
    ] {
        let reply = client
            .ask(udp, query, std::time::Duration::from_secs(3))
            .unwrap_or_else(|| panic!("no answer over UDP to query {id:#x}"));
        let w = wire::walk(&reply).expect("a whole message");
        assert_eq!((w.id, w.rcode), (id, 1), "FORMERR over UDP: {w:?}");
        assert_eq!(w.opt.is_some(), opt, "OPT back iff readable: {w:?}");
    }
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", tcp)).expect("connect");
    conn.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .expect("timeout");
    let mut framed = |q: &[u8]| {
        let mut f = u16::try_from(q.len())
            .expect("length")
            .to_be_bytes()
            .to_vec();
        f.extend_from_slice(q);
        conn.write_all(&f).expect("write");
        let mut len = [0u8; 2];
        conn.read_exact(&mut len).expect("an answer over TCP");
        let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
        conn.read_exact(&mut reply).expect("the whole answer");
        wire::walk(&reply).expect("a whole message")
    };
    let w = framed(&two_opts);
    assert_eq!((w.id, w.rcode), (0x4242, 1), "FORMERR over TCP: {w:?}");
    let fine = framed(&wire::query(7, "cloud.lab.test", wire::A, None));
    assert_eq!(
        (fine.id, fine.rcode, fine.answers),
        (7, 0, 1),
        "and then an answer"
    );
}

/// Truncation at every client size from 512 to 1232 bytes and without EDNS: the response is
/// one whole message within the size, TC set when records were left out, and an EDNS query
/// gets its OPT back (RFC 6891 §7). dig checks the same for a 40-record set.
#[test]
fn truncated_answers_are_whole_messages_with_their_opt_at_every_size() {
    use support::wire::{self, Client};
    let cfg = ConfigDir::new();
    let many: String = (1..=40)
        .map(|i| {
            format!(
                "\n[[record]]\nname = \"mid.lab.test\"\ntype = \"A\"\nvalue = \"10.0.30.{i}\"\n"
            )
        })
        .collect();
    let lg = cfg.start(&format!("{CONFIG}{many}"));
    let (udp, _) = dns_ports(&lg);
    let client = Client::from("127.0.0.1");
    let mut sizes: Vec<Option<u16>> = vec![None];
    sizes.extend((512..=1232).step_by(24).map(Some));
    sizes.extend([Some(513), Some(1231), Some(1232), Some(4096)]);
    let mut id = 0u16;
    for (name, qtype, whole) in [
        ("mid.lab.test", wire::A, 40),
        ("big.lab.test", wire::TXT, 8),
        ("huge.lab.test", wire::TXT, 8),
        ("nas.lab.test", wire::A, 1),
    ] {
        for size in &sizes {
            // Twice: the second may come from the fast path.
            for _ in 0..2 {
                id += 1;
                let q = wire::query(id, name, qtype, *size);
                let reply = client
                    .ask(udp, &q, std::time::Duration::from_secs(3))
                    .unwrap_or_else(|| panic!("{name} at {size:?}: no answer"));
                let at = format!("{name} at {size:?}: {} bytes", reply.len());
                let w = wire::walk(&reply).unwrap_or_else(|e| panic!("{at}: {e}"));
                let limit = size.map_or(512, |s| s.min(1232));
                assert!(reply.len() <= usize::from(limit), "{at}: over {limit}");
                assert_eq!((w.id, w.rcode, w.questions), (id, 0, 1), "{at}");
                assert_eq!(
                    w.truncated,
                    w.answers < whole,
                    "{at}: TC iff records left out {w:?}"
                );
                assert_eq!(
                    w.opt.is_some(),
                    size.is_some(),
                    "{at}: OPT back iff asked {w:?}"
                );
            }
        }
    }
    for args in [
        ["+noedns", "+ignore", "mid.lab.test", "A"],
        ["+bufsize=512", "+ignore", "mid.lab.test", "A"],
        ["+noedns", "+ignore", "big.lab.test", "TXT"],
    ] {
        let d = dig(udp, "127.0.0.1", &args);
        assert!(
            !d.raw.contains("extra bytes"),
            "dig {args:?} read extra bytes: {}",
            d.raw
        );
        assert!(d.flags.split_whitespace().any(|f| f == "tc"), "{}", d.raw);
        assert_eq!(d.status, "NOERROR", "{}", d.raw);
        assert_eq!(
            d.edns.is_empty(),
            args[0] == "+noedns",
            "OPT iff EDNS: {}",
            d.raw
        );
    }
}
