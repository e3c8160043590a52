//! End-to-end: the DNS query log. dig asks from loopback addresses standing in for VLANs, over
//! UDP (the fast path and the general path) and TCP; Debian's `sqlite3` reads the database
//! while labgate writes it, across restarts, and after retention dropped a block.
#![allow(
    clippy::disallowed_macros,
    clippy::disallowed_methods,
    reason = "drives a real labgate from outside: deadlines on the wall clock, polls until they pass, prints what it saw"
)]

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{ConfigDir, Labgate, dig, dns_ports};

const CONFIG: &str = r#"
[[network]]
name = "lab"
cidrs = ["127.0.0.1/32"]
addresses = ["10.0.10.2"]
blocklists = ["ads"]

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

[[record]]
name = "nas.lab.test"
type = "AAAA"
value = "fd00:20::10"

[[record]]
name = "files.lab.test"
type = "CNAME"
value = "nas.lab.test"

[[blocklist]]
name = "ads"
file = "ads.txt"

[query_log]
exclude_clients = ["127.0.0.4"]
"#;

fn start(cfg: &ConfigDir, extra: &str) -> (Labgate, u16) {
    cfg.write("ads.txt", "ads.example.com\n");
    let lg = cfg.start(&format!("{CONFIG}{extra}"));
    let (udp, _) = dns_ports(&lg);
    (lg, udp)
}

/// What `sqlite3` prints for `sql` on the state directory's query log (read-only), one row a
/// line, `|` between columns.
fn sqlite(state: &Path, sql: &str) -> Vec<String> {
    let out = Command::new("sqlite3")
        .arg("-readonly")
        .arg(state.join("querylog.sqlite"))
        .arg(sql)
        .output()
        .expect("sqlite3 is needed: apt-get install sqlite3 (scripts/test.sh does)");
    assert!(
        out.status.success(),
        "sqlite3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Polls `sqlite` until `sql` prints `want`, or panics at the deadline.
fn wait_rows(state: &Path, sql: &str, want: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rows = sqlite(state, sql);
        if rows == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "`{sql}` gave {rows:#?}, expected {want:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn every_query_is_logged_as_its_network_allows_and_sqlite3_reads_it() {
    let cfg = ConfigDir::new();
    let (lg, udp) = start(&cfg, "");
    let (_, tcp) = dns_ports(&lg);
    let tcp_port = tcp.to_string();
    // UDP without EDNS: the fast path; with dig's EDNS cookie: the general path.
    for (from, args) in [
        ("127.0.0.1", &["nas.lab.test", "+noedns"][..]),
        ("127.0.0.1", &["files.lab.test", "+dnssec"][..]),
        (
            "127.0.0.1",
            &["nas.lab.test", "AAAA", "+tcp", "-p", &tcp_port][..],
        ),
        ("127.0.0.1", &["ads.example.com"][..]),
        ("127.0.0.1", &["nope.lab.test"][..]),
        ("127.0.0.2", &["nas.lab.test"][..]),
        ("127.0.0.3", &["nas.lab.test"][..]),
        ("127.0.0.4", &["nas.lab.test"][..]),
        ("127.0.0.9", &["nas.lab.test"][..]),
    ] {
        let d = dig(udp, from, args);
        assert!(!d.status.is_empty(), "no answer from {from}: {}", d.raw);
    }
    lg.wait_metric("labgate_querylog_written_total", 7, "seven queries written");
    let state = cfg.path("state");
    let mut rows = sqlite(
        &state,
        "SELECT ifnull(client, '-'), ifnull(network, '-'), name, type, class, transport, rcode, \
         source, ifnull(detail, '-'), answer, dnssec_ok, latency_us > 0, \
         abs(time_us / 1000000 - strftime('%s', 'now')) < 600 FROM queries",
    );
    rows.sort();
    let mut want = vec![
        "127.0.0.1|lab|nas.lab.test|A|IN|udp|NOERROR|internal|-|10.0.20.10|0|1|1",
        "127.0.0.1|lab|files.lab.test|A|IN|udp|NOERROR|internal|-|10.0.20.10|1|1|1",
        "127.0.0.1|lab|nas.lab.test|AAAA|IN|tcp|NOERROR|internal|-|fd00:20::10|0|1|1",
        "127.0.0.1|lab|ads.example.com|A|IN|udp|NXDOMAIN|blocklist|ads||0|1|1",
        "127.0.0.1|lab|nope.lab.test|A|IN|udp|NXDOMAIN|internal|-||0|1|1",
        // Anonymous: no client address.
        "-|guest|nas.lab.test|A|IN|udp|NOERROR|internal|-|10.0.20.10|0|1|1",
        // A client in no network: refused, and logged with no network.
        "127.0.0.9|-|nas.lab.test|A|IN|udp|REFUSED|refused|-||0|1|1",
    ];
    want.sort_unstable();
    assert_eq!(rows, want);
    assert_eq!(
        lg.metric("labgate_querylog_dropped_total{reason=\"full\"}"),
        0
    );
    assert_eq!(
        lg.metric("labgate_querylog_dropped_total{reason=\"error\"}"),
        0
    );
}

#[test]
fn the_log_survives_restarts_and_old_blocks_are_dropped() {
    let cfg = ConfigDir::new();
    let state = cfg.path("state");
    let count = "SELECT count(*) FROM queries";
    let (lg, udp) = start(&cfg, "");
    for name in ["one.lab.test", "two.lab.test"] {
        dig(udp, "127.0.0.1", &[name]);
    }
    // Written at shutdown at the latest.
    assert!(lg.terminate(), "labgate exited with an error");
    wait_rows(&state, count, &["2"]);

    // The rows are a month old now; a 40-day limit keeps them, and a restart appends.
    let month = 30 * 24 * 3600 * 1_000_000_i64;
    let age = format!(
        "UPDATE q1 SET time_us = time_us - {month}; \
         UPDATE blocks SET first_us = first_us - {month}, last_us = last_us - {month}"
    );
    let out = Command::new("sqlite3")
        .arg(state.join("querylog.sqlite"))
        .arg(&age)
        .output()
        .expect("sqlite3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (lg, udp) = start(&cfg, "max_age = \"40d\"\n");
    dig(udp, "127.0.0.1", &["three.lab.test"]);
    lg.wait_metric(
        "labgate_querylog_written_total",
        1,
        "a query after the restart",
    );
    wait_rows(&state, count, &["3"]);
    assert!(lg.terminate(), "labgate exited with an error");

    // The month-old block was sealed (it was open longer than a block may be) and `three`
    // went to a new one. With the default 7 days, the old block goes at start-up.
    let (lg, udp) = start(&cfg, "");
    wait_rows(&state, "SELECT name FROM queries", &["three.lab.test"]);
    dig(udp, "127.0.0.1", &["four.lab.test"]);
    wait_rows(
        &state,
        "SELECT name FROM queries ORDER BY time_us",
        &["three.lab.test", "four.lab.test"],
    );
    wait_rows(&state, "SELECT id FROM blocks", &["2"]);
    drop(lg);
}

#[test]
fn the_switch_stops_capture_and_a_reload_turns_the_log_on() {
    let cfg = ConfigDir::new();
    let state = cfg.path("state");
    let (lg, udp) = start(&cfg, "enabled = false\n");
    dig(udp, "127.0.0.1", &["off.lab.test"]);
    // Nothing captured, nothing dropped, no database made.
    let (_, metrics) = lg.admin("GET", "/metrics");
    assert!(
        metrics.contains("labgate_querylog_written_total 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("labgate_querylog_dropped_total{reason=\"error\"} 0"),
        "{metrics}"
    );
    assert!(!state.join("querylog.sqlite").exists());
    cfg.rename_replace("labgate.toml", &format!("{CONFIG}enabled = true\n"));
    lg.wait_config("the log turned on", |c| support::generation(c) == 2);
    // The writer opens the database within seconds; a query asked meanwhile may be lost
    // (counted), so ask until one is written.
    let deadline = Instant::now() + Duration::from_secs(20);
    while lg.metric("labgate_querylog_written_total") == 0 {
        assert!(Instant::now() < deadline, "the log never came on");
        dig(udp, "127.0.0.1", &["on.lab.test"]);
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_rows(
        &state,
        "SELECT DISTINCT name FROM queries WHERE name = 'on.lab.test'",
        &["on.lab.test"],
    );
    wait_rows(
        &state,
        "SELECT count(*) FROM queries WHERE name = 'off.lab.test'",
        &["0"],
    );
}

/// A state directory inside a watched configuration directory: the log's writes every 100 ms
/// are not changes to the configuration.
#[test]
fn the_log_in_a_state_directory_inside_the_configuration_triggers_no_reload() {
    let cfg = ConfigDir::new();
    cfg.write("conf/ads.txt", "ads.example.com\n");
    cfg.write("conf/labgate.toml", CONFIG);
    let conf = cfg.path("conf");
    let lg = Labgate::start(
        &["--config", conf.to_str().expect("utf-8")],
        &conf.join("state"),
    );
    let (udp, _) = dns_ports(&lg);
    // Three seconds of queries: the writer writes every 100 ms, the watcher's debounce waits
    // 300 ms of quiet (2 s at most); a reload it started would show as `unchanged`.
    let until = Instant::now() + Duration::from_secs(3);
    let mut asked = 0;
    while Instant::now() < until {
        dig(udp, "127.0.0.1", &["nas.lab.test"]);
        asked += 1;
    }
    // Every query written, or dropped by the writer's CPU budget (a debug build on a loaded
    // host can meet it): the writer was at work all along.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let written = lg.metric("labgate_querylog_written_total");
        let dropped = ["full", "over_budget", "error"]
            .map(|r| lg.metric(&format!("labgate_querylog_dropped_total{{reason=\"{r}\"}}")));
        if written + dropped.iter().sum::<u64>() >= asked {
            assert!(written > 0, "nothing written: dropped {dropped:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{asked} queries, {written} written, dropped (full, over_budget, error) {dropped:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        lg.metric("labgate_config_reloads_total{result=\"unchanged\"}"),
        0,
        "the query log's writes started reloads"
    );
    // The watch still sees the configuration itself.
    cfg.write("conf/.edit.swp", &format!("{CONFIG}max_age = \"3d\"\n"));
    std::fs::rename(cfg.path("conf/.edit.swp"), cfg.path("conf/labgate.toml")).expect("rename");
    lg.wait_config("the edit", |c| support::generation(c) == 2);
}
