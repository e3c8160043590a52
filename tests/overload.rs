//! End-to-end: DNS under overload. A scripted upstream on loopback that answers late or not at
//! all, clients on 127.0.0.x addresses of one network, raw UDP queries. Equal questions go
//! upstream once; a silent upstream is known as such and its queries fail fast until a probe
//! is answered; one client cannot take every place; a flood of never-repeated names leaves
//! memory bounded and internal names and cache hits answered.
#![allow(
    clippy::disallowed_macros,
    clippy::disallowed_methods,
    reason = "drives a real labgate from outside: deadlines on the wall clock, polls until they pass, prints what it saw"
)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::upstream::{ANSWER, Scripted};
use support::wire::{self, Client};
use support::{ConfigDir, Labgate, dns_ports};

/// One network of every 127.0.0.x, an internal name, an upstream and the bounds (else the
/// defaults).
fn config(upstream: u16, bounds: Option<(usize, usize)>) -> String {
    let bounds = bounds.map_or_else(String::new, |(total, per_client)| {
        format!("max_in_flight = {total}\nmax_in_flight_per_client = {per_client}\n")
    });
    format!(
        r#"
[listen]
dns = ["127.0.0.1:0"]

[dns]
upstreams = ["udp://127.0.0.1:{upstream}"]
{bounds}
[[network]]
name = "lab"
cidrs = ["127.0.0.0/24"]
addresses = ["127.0.0.1"]

[[zone]]
name = "lab.test"

[[record]]
name = "nas.lab.test"
type = "A"
value = "10.0.20.10"
"#
    )
}

fn start(cfg: &ConfigDir, upstream: &Scripted, bounds: Option<(usize, usize)>) -> (Labgate, u16) {
    let lg = cfg.start(&config(upstream.port, bounds));
    let (udp, _) = dns_ports(&lg);
    (lg, udp)
}

/// The A record's address of an answer, if it has one (answers here carry one record).
fn address(reply: &[u8]) -> Option<[u8; 4]> {
    let w = wire::walk(reply).ok()?;
    (w.answers == 1).then(|| reply[reply.len() - 4..].try_into().ok())?
}

fn rcode(reply: &[u8]) -> u8 {
    wire::walk(reply).map_or(255, |w| w.rcode)
}

#[test]
fn equal_questions_in_flight_go_upstream_once_and_are_answered_together() {
    // Within hickory's first retransmission (333 ms): a second packet would be its, not ours.
    let upstream = Scripted::start(Duration::from_millis(200), true);
    let cfg = ConfigDir::new();
    let (lg, port) = start(&cfg, &upstream, None);
    let client = Client::from("127.0.0.1");
    for id in 1..=20u16 {
        client.send(port, &wire::query(id, "same.example", wire::A, None));
    }
    let mut answered = 0;
    while let Some(reply) = client.recv(Duration::from_secs(5)) {
        assert_eq!(address(&reply), Some(ANSWER), "every asker gets the answer");
        answered += 1;
        if answered == 20 {
            break;
        }
    }
    assert_eq!(answered, 20, "all twenty answered");
    assert_eq!(upstream.seen("same.example."), 1, "asked upstream once");
    assert!(lg.metric("labgate_dns_coalesced_total") >= 1);
}

#[test]
fn a_silent_upstream_fails_fast_until_a_probe_is_answered() {
    let upstream = Scripted::start(Duration::ZERO, false);
    let cfg = ConfigDir::new();
    let (lg, port) = start(&cfg, &upstream, None);
    let client = Client::from("127.0.0.1");
    // Four questions in a row end in silence: the upstream is down.
    for id in 1..=4u16 {
        client.send(
            port,
            &wire::query(id, &format!("q{id}.example"), wire::A, None),
        );
    }
    for _ in 1..=4 {
        let reply = client
            .recv(Duration::from_secs(8))
            .expect("SERVFAIL within the bound");
        assert_eq!(rcode(&reply), 2, "SERVFAIL");
    }
    lg.wait_log("the upstream known down", |l| {
        l.contains("upstreams stopped answering")
    });
    // Now its queries fail at once (the probe is labgate's own question).
    let sent = Instant::now();
    for id in 10..15u16 {
        client.send(
            port,
            &wire::query(id, &format!("q{id}.example"), wire::A, None),
        );
    }
    let mut fast = 0;
    while let Some(reply) = client.recv(Duration::from_secs(1)) {
        assert_eq!(rcode(&reply), 2, "SERVFAIL");
        if sent.elapsed() < Duration::from_secs(1) {
            fast += 1;
        }
    }
    assert_eq!(fast, 5, "only {fast} of 5 failed fast");
    assert!(lg.metric("labgate_dns_upstream_fail_fast_total") >= 5);
    // Back to life: a probe's answer brings it back (probes go at most 8 s apart).
    upstream.set_answering(true);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut id = 100u16;
    loop {
        id += 1;
        let q = wire::query(id, &format!("back{id}.example"), wire::A, None);
        if client
            .ask(port, &q, Duration::from_secs(5))
            .is_some_and(|r| address(&r) == Some(ANSWER))
        {
            break;
        }
        assert!(Instant::now() < deadline, "never probed back to life");
        std::thread::sleep(Duration::from_millis(200));
    }
    lg.wait_log("the upstream back", |l| {
        l.contains("upstreams answer again")
    });
}

#[test]
fn one_client_cannot_take_every_place_and_the_others_are_served() {
    // Answers after 1 s, within one upstream attempt (1.5 s): no retries muddle the count.
    let upstream = Scripted::start(Duration::from_secs(1), true);
    let cfg = ConfigDir::new();
    let (lg, port) = start(&cfg, &upstream, Some((64, 8)));
    let flood = Client::from("127.0.0.9");
    for id in 1..=40u16 {
        flood.send(
            port,
            &wire::query(id, &format!("f{id}.example"), wire::A, None),
        );
    }
    // Past its eight places the flooder is answered SERVFAIL at once.
    let before_upstream = Instant::now() + Duration::from_millis(900);
    let mut refused = 0;
    while refused < 32 {
        let left = before_upstream.saturating_duration_since(Instant::now());
        let reply = (!left.is_zero())
            .then(|| flood.recv(left))
            .flatten()
            .unwrap_or_else(|| panic!("only {refused} of 32 answered before the upstream"));
        assert_eq!(rcode(&reply), 2, "SERVFAIL past the share");
        refused += 1;
    }
    // Another client of the same network is still served by the upstream.
    let other = Client::from("127.0.0.1");
    let reply = other
        .ask(
            port,
            &wire::query(7, "other.example", wire::A, None),
            Duration::from_secs(5),
        )
        .expect("another client's answer");
    assert_eq!(address(&reply), Some(ANSWER));
    // And the flooder's eight get their answers too.
    for _ in 0..8 {
        let reply = flood
            .recv(Duration::from_secs(5))
            .expect("an admitted answer");
        assert_eq!(address(&reply), Some(ANSWER));
    }
    assert_eq!(
        lg.metric("labgate_dns_overload_total{limit=\"client\"}"),
        32
    );
    assert_eq!(
        upstream.seen("f9.example."),
        0,
        "refused names never went upstream"
    );
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// The issue's flood at a rate a 2-core CI machine sustains in a debug build: never-repeated
/// names to an upstream gone silent, from one client, while another asks an internal name
/// and a cached one every 100 ms. Memory stays within twice the idle size plus 16 MiB, every
/// internal and cached question is answered within 1 s, and the flood itself is answered.
#[test]
fn a_flood_of_new_names_to_a_silent_upstream_leaves_memory_bounded_and_local_answers_served() {
    const RATE: usize = 2000;
    const SECONDS: u64 = 12;
    let upstream = Scripted::start(Duration::ZERO, true);
    let cfg = ConfigDir::new();
    let (lg, port) = start(&cfg, &upstream, None);
    let checker = Client::from("127.0.0.1");
    let warm = wire::query(1, "warm.example", wire::A, None);
    let reply = checker
        .ask(port, &warm, Duration::from_secs(5))
        .expect("warm-up");
    assert_eq!(address(&reply), Some(ANSWER));
    upstream.set_answering(false);
    let pid = lg.pid();
    let idle = rss_kib(pid);

    let stop = Arc::new(AtomicBool::new(false));
    let (sent, answered) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let flood = Arc::new(Client::from("127.0.0.9"));
    let reader = {
        let (flood, answered, stop) =
            (Arc::clone(&flood), Arc::clone(&answered), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if flood.recv(Duration::from_millis(200)).is_some() {
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let sender = {
        let (flood, sent) = (Arc::clone(&flood), Arc::clone(&sent));
        std::thread::spawn(move || {
            let start = Instant::now();
            let mut n = 0usize;
            while start.elapsed() < Duration::from_secs(SECONDS) {
                // Paced by the clock: as many as the rate allows by now.
                let due = usize::try_from(start.elapsed().as_millis()).unwrap_or(0) * RATE / 1000;
                while n < due {
                    let name = format!("n{n}.flood.example");
                    flood.send(port, &wire::query(n as u16, &name, wire::A, None)); // IDs wrap
                    n += 1;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            sent.store(n, Ordering::Relaxed);
        })
    };
    let mut peak = idle;
    let mut most_in_flight = 0;
    let mut missed = Vec::new();
    let mut asked = 0;
    let started = Instant::now();
    let mut id = 1000u16;
    while started.elapsed() < Duration::from_secs(SECONDS) {
        for (name, want) in [("nas.lab.test", [10, 0, 20, 10]), ("warm.example", ANSWER)] {
            id += 1;
            asked += 1;
            let reply = checker.ask(
                port,
                &wire::query(id, name, wire::A, None),
                Duration::from_secs(1),
            );
            if reply.as_deref().and_then(address) != Some(want) {
                missed.push(format!("{name} at {:?}", started.elapsed()));
            }
        }
        peak = peak.max(rss_kib(pid));
        most_in_flight = most_in_flight.max(lg.metric("labgate_dns_queries_in_flight"));
        std::thread::sleep(Duration::from_millis(100));
    }
    sender.join().expect("sender");
    // The last answers: read until a quarter second passes without one.
    let mut last = usize::MAX;
    while answered.load(Ordering::Relaxed) != last {
        last = answered.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(250));
    }
    stop.store(true, Ordering::Relaxed);
    reader.join().expect("reader");
    let (sent, answered) = (
        sent.load(Ordering::Relaxed),
        answered.load(Ordering::Relaxed),
    );
    let bound = 2 * idle + 16 * 1024;
    eprintln!(
        "flood: {sent} sent, {answered} answered; RSS idle {idle} KiB, peak {peak} KiB (bound {bound}); {asked} local questions, {} missed",
        missed.len()
    );
    assert!(
        missed.is_empty(),
        "local answers missed during the flood: {missed:?}"
    );
    assert!(
        peak <= bound,
        "peak RSS {peak} KiB over {bound} KiB (idle {idle})"
    );
    assert!(
        answered * 100 >= sent * 95,
        "only {answered} of {sent} flood queries answered"
    );
    assert!(lg.metric("labgate_dns_upstream_fail_fast_total") > 0);
    // One client: its share (128) was all it ever held, and past it, it was told so.
    assert!(lg.metric("labgate_dns_overload_total{limit=\"client\"}") > 0);
    assert!(
        most_in_flight <= 128,
        "{most_in_flight} in flight for one client"
    );
}
