//! End-to-end: the dnstap stream, read by Debian's dnstap readers. The `dnstap` tool
//! (golang-dnstap) listens on a Unix socket and prints JSON; `fstrm_capture` (libfstrm, the
//! reference Frame Streams library) listens on TCP and writes a file that `dnstap-ldns`
//! decodes. dig asks from loopback addresses standing in for VLANs. A collector that stops
//! reading costs messages, counted, and no answer.
#![allow(
    clippy::disallowed_macros,
    clippy::disallowed_methods,
    reason = "drives a real labgate from outside: deadlines on the wall clock, polls until they pass, prints what it saw"
)]

mod support;

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::wire::{Client, query};
use support::{ConfigDir, RELOAD_TIMEOUT, dig, dns_ports, free_port};

const CONFIG: &str = r#"
[[network]]
name = "lab"
cidrs = ["127.0.0.1/32"]
addresses = ["10.0.10.2"]

[[network]]
name = "guest"
cidrs = ["127.0.0.2/32"]
addresses = ["10.0.50.2"]
query_log = "anonymous"

[[network]]
name = "iot"
cidrs = ["127.0.0.3/32"]
addresses = ["10.0.40.2"]
query_log = "off"

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

[query_log]
# dnstap keeps to the networks' privacy and the excluded clients with the SQLite log off.
enabled = false
exclude_clients = ["127.0.0.4"]
"#;

/// A reader process, killed on drop.
struct Reader(Child);

impl Drop for Reader {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls until `path` exists (a reader made its socket), or panics at the deadline.
fn wait_path(path: &Path, what: &str) {
    let deadline = Instant::now() + RELOAD_TIMEOUT;
    while !path.exists() {
        assert!(Instant::now() < deadline, "{what} never appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The JSON messages the `dnstap` tool printed so far, one a line.
fn printed(out: &Path) -> Vec<Value> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// A message's `message.<key>` as text ("" when absent).
fn field<'a>(m: &'a Value, key: &str) -> &'a str {
    m["message"][key].as_str().unwrap_or("")
}

/// The DNS message a dnstap message carries, as the reader printed it.
fn dns_text(m: &Value) -> &str {
    match field(m, "type") {
        "CLIENT_QUERY" => field(m, "query_message"),
        _ => field(m, "response_message"),
    }
}

#[test]
fn the_dnstap_tool_reads_queries_and_responses_as_each_network_allows() {
    let cfg = ConfigDir::new();
    let socket = cfg.path("tap.sock");
    let out = cfg.path("tap.json");
    let reader = Reader(
        Command::new("dnstap")
            .arg("-u")
            .arg(&socket)
            .arg("-j")
            .stdout(std::fs::File::create(&out).expect("output file"))
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "dnstap is needed: apt-get install golang-github-dnstap-golang-dnstap-cli \
                 (scripts/test.sh does)",
            ),
    );
    wait_path(&socket, "the dnstap tool's socket");
    let lg = cfg.start(&format!(
        "{CONFIG}\n[dnstap]\nsocket = \"{}\"\nidentity = \"gate-1\"\n",
        socket.display()
    ));
    lg.wait_metric("labgate_dnstap_connected", 1, "labgate never connected");
    let (udp, tcp) = dns_ports(&lg);
    let tcp = tcp.to_string();
    // Not streamed: a network whose log is off, an excluded client.
    for from in ["127.0.0.3", "127.0.0.4"] {
        assert_eq!(dig(udp, from, &["nas.lab.test"]).status, "NOERROR");
    }
    // UDP without EDNS (the fast path), with DO (the general path), TCP, the guest network.
    for (from, args) in [
        ("127.0.0.1", &["nas.lab.test", "+noedns"][..]),
        ("127.0.0.1", &["nas.lab.test", "+dnssec"][..]),
        ("127.0.0.1", &["nas.lab.test", "+tcp", "-p", &tcp][..]),
        ("127.0.0.2", &["nas.lab.test"][..]),
    ] {
        let d = dig(udp, from, args);
        assert_eq!(d.answer, ["nas.lab.test. 300 IN A 10.0.20.10"], "{}", d.raw);
    }
    // Eight messages printed: the ones not streamed would have come before the last (the
    // writer takes each lane in turn, all it holds; dig has its answer after its messages
    // were queued).
    let deadline = Instant::now() + RELOAD_TIMEOUT;
    let messages = loop {
        let m = printed(&out);
        if m.len() >= 8 {
            break m;
        }
        assert!(Instant::now() < deadline, "the reader printed only {m:#?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(reader);
    // Each worker's messages come in order, the lanes one after the other: sorted by
    // transport, client and query time, each query is followed by its response.
    let mut messages = messages;
    messages.sort_by_key(|m| {
        let key = |k| field(m, k).to_owned();
        (
            key("socket_protocol"),
            key("query_address"),
            key("query_time"),
            key("type"),
        )
    });
    let seen: Vec<(&str, &str, &str, &str)> = messages
        .iter()
        .map(|m| {
            (
                field(m, "type"),
                field(m, "socket_protocol"),
                field(m, "query_address"),
                field(m, "response_address"),
            )
        })
        .collect();
    let (q, r) = ("CLIENT_QUERY", "CLIENT_RESPONSE");
    let lo = "127.0.0.1";
    assert_eq!(
        seen,
        [
            (q, "TCP", lo, lo),
            (r, "TCP", lo, lo),
            // The guest's: no client address.
            (q, "UDP", "", lo),
            (r, "UDP", "", lo),
            (q, "UDP", lo, lo),
            (r, "UDP", lo, lo),
            (q, "UDP", lo, lo),
            (r, "UDP", lo, lo),
        ],
        "{messages:#?}"
    );
    for pair in messages.chunks(2) {
        let (query, response) = (dns_text(&pair[0]), dns_text(&pair[1]));
        let id = |t: &str| {
            t.split("id: ")
                .nth(1)
                .map(|r| r.split('\n').next().map(str::to_owned))
        };
        assert_eq!(id(query), id(response), "{query}\n{response}");
        assert!(query.contains(";nas.lab.test.\tIN\t A"), "{query}");
        assert!(
            response.contains("nas.lab.test.\t300\tIN\tA\t10.0.20.10"),
            "{response}"
        );
        assert_eq!(pair[0]["identity"], "gate-1");
        assert_eq!(
            pair[0]["version"],
            concat!("labgate ", env!("CARGO_PKG_VERSION"))
        );
        assert!(pair[1]["message"]["response_time"].is_string());
        assert_eq!(
            pair[0]["message"]["query_time"],
            pair[1]["message"]["query_time"]
        );
    }
    // The client's port is the one dig used; labgate's is its listener's.
    for m in &messages[4..] {
        assert_eq!(m["message"]["response_port"], udp);
        assert!(m["message"]["query_port"].as_u64() > Some(0));
    }
    assert!(messages[2]["message"]["query_port"].is_null());
    assert_eq!(lg.metric("labgate_dnstap_sent_total"), 8);
    assert_eq!(
        lg.metric("labgate_dnstap_dropped_total{reason=\"full\"}"),
        0
    );
}

#[test]
fn a_late_collector_over_tcp_gets_the_stream_and_a_reload_ends_it() {
    let cfg = ConfigDir::new();
    let port = free_port();
    let with_tap = format!("{CONFIG}\n[dnstap]\naddress = \"127.0.0.1:{port}\"\n");
    let lg = cfg.start(&with_tap);
    let (udp, _) = dns_ports(&lg);
    // No collector: the answer goes out, its two messages are dropped and counted.
    assert_eq!(dig(udp, "127.0.0.1", &["nas.lab.test"]).status, "NOERROR");
    lg.wait_metric(
        "labgate_dnstap_dropped_total{reason=\"unconnected\"}",
        2,
        "the messages without a collector were not counted",
    );
    assert_eq!(lg.metric("labgate_dnstap_connected"), 0);
    let file = cfg.path("tap.fstrm");
    let mut capture = Reader(
        Command::new("fstrm_capture")
            .args(["-t", "protobuf:dnstap.Dnstap", "-a", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .arg("-w")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("fstrm_capture is needed: apt-get install fstrm-bin (scripts/test.sh does)"),
    );
    // Connecting is tried again after 1 s, 2 s, 4 s...
    lg.wait_metric("labgate_dnstap_connected", 1, "labgate never connected");
    for name in ["nas.lab.test", "nope.lab.test"] {
        dig(udp, "127.0.0.1", &[name]);
    }
    lg.wait_metric("labgate_dnstap_sent_total", 4, "four messages sent");
    // A reload without `[dnstap]` ends the stream (STOP; the collector says FINISH) and
    // streams nothing more; nothing more is counted as dropped either.
    cfg.rename_replace("labgate.toml", CONFIG);
    lg.wait_config("the reload", |c| support::generation(c) == 2);
    let deadline = Instant::now() + RELOAD_TIMEOUT;
    while lg.metric("labgate_dnstap_connected") != 0 {
        assert!(Instant::now() < deadline, "the stream never closed");
        std::thread::sleep(Duration::from_millis(50));
    }
    dig(udp, "127.0.0.1", &["after.lab.test"]);
    // fstrm_capture writes its file out on SIGINT.
    let _ = Command::new("kill")
        .args(["-INT", &capture.0.id().to_string()])
        .status();
    let _ = capture.0.wait();
    let decoded = Command::new("dnstap-ldns")
        .arg("-r")
        .arg(&file)
        .arg("-q")
        .output()
        .expect("dnstap-ldns is needed: apt-get install dnstap-ldns (scripts/test.sh does)");
    let text = String::from_utf8_lossy(&decoded.stdout);
    // `2026-12-06 13:43:06.869824 CQ 127.0.0.1 UDP 30b "nas.lab.test." IN A`: without the
    // time and the size.
    // The two queries may have reached two UDP workers, whose lanes are sent one after the
    // other: sorted by name, each query before its response.
    let mut lines: Vec<Vec<&str>> = text
        .lines()
        .map(|l| {
            let words = l.split_whitespace().skip(2).enumerate();
            words.filter(|(i, _)| *i != 3).map(|(_, w)| w).collect()
        })
        .collect();
    lines.sort_by(|a, b| (a.get(3), a.first()).cmp(&(b.get(3), b.first())));
    let want = |kind, name| vec![kind, "127.0.0.1", "UDP", name, "IN", "A"];
    assert_eq!(
        lines,
        [
            want("CQ", "\"nas.lab.test.\""),
            want("CR", "\"nas.lab.test.\""),
            want("CQ", "\"nope.lab.test.\""),
            want("CR", "\"nope.lab.test.\""),
        ],
        "{text}"
    );
    assert_eq!(lg.metric("labgate_dnstap_sent_total"), 4);
    assert_eq!(
        lg.metric("labgate_dnstap_dropped_total{reason=\"unconnected\"}"),
        2
    );
}

/// A collector that makes the handshake and then never reads: every connection it accepts
/// is held open, unread. labgate's writes block until their timeout, its lanes fill, and
/// messages are dropped; answers go out all the same.
#[test]
fn a_collector_that_stops_reading_costs_messages_never_answers() {
    let cfg = ConfigDir::new();
    let socket = cfg.path("stuck.sock");
    let listener = UnixListener::bind(&socket).expect("bind the collector");
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            // READY, then ACCEPT with the content type, then read START and stop reading.
            let mut ready = [0u8; 42];
            if conn.read_exact(&mut ready).is_err() {
                continue;
            }
            let mut accept = vec![0, 0, 0, 0, 0, 0, 0, 34, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 22];
            accept.extend_from_slice(b"protobuf:dnstap.Dnstap");
            let _ = conn.write_all(&accept);
            held.push(conn);
        }
    });
    let lg = cfg.start(&format!(
        "{CONFIG}\n[dnstap]\nsocket = \"{}\"\n",
        socket.display()
    ));
    lg.wait_metric("labgate_dnstap_connected", 1, "labgate never connected");
    let (udp, _) = dns_ports(&lg);
    let client = Client::from("127.0.0.1");
    // Thirty thousand queries one after the other, about 4 MB of messages: far more than
    // the socket's buffer and the lanes hold.
    let n = 30_000u16;
    let started = Instant::now();
    let mut answered = 0;
    for id in 0..n {
        let q = query(id, "nas.lab.test", 1, None);
        if client.ask(udp, &q, Duration::from_secs(2)).is_some() {
            answered += 1;
        }
    }
    let took = started.elapsed();
    assert_eq!(answered, n, "answers were lost (in {took:?})");
    let dropped = |reason: &str| {
        lg.metric(&format!(
            "labgate_dnstap_dropped_total{{reason=\"{reason}\"}}"
        ))
    };
    // Every message is accounted for once the writer is done with what it holds.
    let messages = 2 * u64::from(n);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (sent, full, error, unconnected) = (
            lg.metric("labgate_dnstap_sent_total"),
            dropped("full"),
            dropped("error"),
            dropped("unconnected"),
        );
        if sent + full + error + unconnected == messages {
            assert!(full + error > 0, "nothing dropped: sent {sent}");
            assert!(sent < messages);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{messages} messages, but sent {sent}, full {full}, error {error}, unconnected {unconnected}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("{n} queries answered in {took:?} with a collector that does not read");
}
