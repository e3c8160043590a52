//! The status page end to end: clients on a lab and a guest VLAN (addresses on `lo`, root as
//! on CI) ask the real binary's DNS with dig, then read the pages with curl: the query just
//! made is in the log and its search, the explanation of its name follows the decision chain,
//! every page is whole HTML, and the guest network gets 403 and no client address. The
//! history (requests, denials by network, certificate events) survives a restart.
#![allow(
    clippy::disallowed_macros,
    clippy::disallowed_methods,
    reason = "drives a real labgate from outside: deadlines on the wall clock, polls until they pass"
)]

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use support::acme::{Pebble, wait_certificate};
use support::backend::Backend;
use support::https::{Reply, parse_reply};
use support::{ConfigDir, Labgate, LoopbackAddrs, dig, dns_ports, free_port};

const LAB: &str = "10.25.10.7";
const GUEST: &str = "10.25.50.7";

const CONFIG: &str = r#"
[[network]]
name = "lab"
cidrs = ["10.25.10.0/24"]
addresses = ["10.25.10.2"]
blocklists = ["ads"]

[[network]]
name = "guest"
cidrs = ["10.25.50.0/24"]
addresses = ["10.25.50.2"]
query_log = "anonymous"

[[zone]]
name = "lab.test"

[[record]]
name = "nas.lab.test"
type = "A"
value = "10.25.20.10"

[[service]]
host = "app.lab.test"
backends = ["http://127.0.0.1:9"]
allow = ["lab"]

[[blocklist]]
name = "ads"
file = "ads.txt"

[admin]
allow = ["lab"]
"#;

/// GET `path` on the admin endpoint from `from`.
fn get(admin: SocketAddr, from: &str, path: &str) -> Reply {
    let out = Command::new("curl")
        .args(["-s", "-i", "--max-time", "30", "--interface", from])
        .arg(format!("http://{admin}{path}"))
        .output()
        .expect("curl is needed: apt-get install curl (scripts/test.sh does)");
    parse_reply(&String::from_utf8_lossy(&out.stdout))
}

#[test]
fn the_status_page_shows_what_labgate_did_to_its_networks_and_nothing_to_a_guest() {
    let _addrs = LoopbackAddrs::add(&[LAB, GUEST]);
    let cfg = ConfigDir::new();
    cfg.write("ads.txt", "ads.example.com\n");
    let lg = cfg.start(CONFIG);
    let admin = lg.admin;
    let (udp, _) = dns_ports(&lg);
    for (from, name) in [
        (LAB, "nas.lab.test"),
        (LAB, "ads.example.com"),
        (GUEST, "nas.lab.test"),
    ] {
        let d = dig(udp, from, &[name]);
        assert!(!d.status.is_empty(), "{}", d.raw);
    }
    lg.wait_metric("labgate_querylog_written_total", 3, "three queries logged");

    // Every page: whole HTML, no error, the navigation, labelled plots and forms.
    for path in [
        "/",
        "/ui/networks",
        "/ui/services",
        "/ui/certificates",
        "/ui/dns",
        "/ui/queries",
        "/ui/explain",
    ] {
        let r = get(admin, LAB, path);
        assert_eq!(r.status, 200, "{path}: {r:?}");
        assert!(
            r.body.starts_with("<!doctype html>") && r.body.ends_with("</html>"),
            "{path}: {}",
            r.body
        );
        assert!(!r.body.contains("cannot be read"), "{path}: {}", r.body);
        assert!(r.body.contains("<nav aria-label=\"labgate\">"), "{path}");
        assert_eq!(
            r.body.matches("<input id=").count(),
            r.body.matches("<label for=").count(),
            "{path}: an input without its label"
        );
        let csp = r.header("content-security-policy");
        assert!(
            csp.is_some_and(|c| c.contains("default-src 'none'")),
            "{path}: {csp:?}"
        );
    }

    // The query log shows the lab client's query, and its search finds it by client.
    let page = get(admin, LAB, &format!("/ui/queries?client={LAB}")).body;
    assert!(
        page.contains("nas.lab.test") && page.contains("10.25.20.10"),
        "{page}"
    );
    assert!(
        page.contains("ads.example.com") && page.contains("blocklist (ads)"),
        "{page}"
    );
    assert!(
        !page.contains(GUEST),
        "the guest's address is anonymous: {page}"
    );
    // The guest's query is there, its client hidden.
    let guest_rows = get(admin, LAB, "/ui/queries?network=guest").body;
    assert!(
        guest_rows.contains("nas.lab.test") && guest_rows.contains(">hidden<"),
        "{guest_rows}"
    );
    let none = get(admin, LAB, "/ui/queries?client=10.25.10.99").body;
    assert!(!none.contains("nas.lab.test"), "{none}");
    // A query's name opens its decision chain.
    let explain = get(
        admin,
        LAB,
        &format!("/ui/explain?client={LAB}&name=app.lab.test"),
    )
    .body;
    assert!(explain.contains("lab (by 10.25.10.0/24)"), "{explain}");
    assert!(explain.contains("allow"), "{explain}");
    // The live tail: nothing newer than the newest row, then the next query.
    let newest = page
        .split("data-at=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a row position")
        .to_owned();
    let tail = format!("/ui/queries/rows?client={LAB}&after={newest}");
    assert_eq!(get(admin, LAB, &tail).body, "");
    dig(udp, LAB, &["later.lab.test"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let body = get(admin, LAB, &tail).body;
        if body.contains("later.lab.test") {
            assert!(!body.contains("nas.lab.test"), "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the tail never showed the new query"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // HTTP: a request the dead backend fails (502) and one the policy denies, counted per
    // service at once (the minute's sample is not waited for), with the rule.
    for (from, want) in [(LAB, "502"), (GUEST, "403")] {
        let out = Command::new("curl")
            .args([
                "-sk",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--interface",
                from,
            ])
            .arg("--resolve")
            .arg(format!("app.lab.test:{}:127.0.0.1", lg.https))
            .arg(format!("https://app.lab.test:{}/", lg.https))
            .output()
            .expect("curl");
        assert_eq!(String::from_utf8_lossy(&out.stdout), want, "from {from}");
    }
    let services = get(admin, LAB, "/ui/services").body;
    assert!(
        services.contains(
            "<td class=\"num\">1</td><td class=\"num\">0</td><td class=\"num\">1 (rule: allow = [lab])</td>"
        ),
        "{services}"
    );
    assert!(
        services.contains("app: requests per ten minutes"),
        "{services}"
    );
    // Statistics: the DNS page counts the queries and names the blocked one.
    let stats = get(admin, LAB, "/ui/dns").body;
    assert!(stats.contains("Most blocked names"), "{stats}");
    let networks = get(admin, LAB, "/ui/networks").body;
    assert!(networks.contains("anonymous"), "{networks}");

    // The guest network: 403 everywhere, and no client address in the answer.
    for path in [
        "/",
        "/ui/queries",
        "/ui/queries/rows",
        "/ui/dns",
        "/ui/explain",
    ] {
        let r = get(admin, GUEST, path);
        assert_eq!(r.status, 403, "guest {path}: {r:?}");
        assert!(!r.body.contains(LAB), "guest {path}: {}", r.body);
    }
}

const HISTORY_LAB: &str = "10.26.10.7";
const HISTORY_GUEST: &str = "10.26.50.7";

/// A lab and a guest network, one service for the lab with a certificate from Pebble, and
/// no query log: the history does not depend on it.
fn history_config(pebble: &Pebble, backend: u16) -> String {
    format!(
        r#"
[[network]]
name = "lab"
cidrs = ["10.26.10.0/24", "127.0.0.0/8"]
addresses = ["10.26.10.2"]

[[network]]
name = "guest"
cidrs = ["10.26.50.0/24"]
addresses = ["10.26.50.2"]

[[zone]]
name = "lab.example.test"

[[service]]
host = "app.lab.example.test"
backends = ["http://127.0.0.1:{backend}"]
allow = ["lab"]

[admin]
allow = ["lab"]

[query_log]
enabled = false

[acme]
email = "admin@example.test"
directory = "{directory}"
directory_ca_file = "{ca}"
provider = "dns"

[[dns_provider]]
name = "dns"
kind = "builtin"
"#,
        directory = pebble.directory,
        ca = pebble.tls_ca.display(),
    )
}

/// The HTTP status `from` gets for the service's page.
fn request(lg: &Labgate, from: &str) -> String {
    let out = Command::new("curl")
        .args([
            "-sk",
            "--max-time",
            "30",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--interface",
            from,
        ])
        .arg("--resolve")
        .arg(format!("app.lab.example.test:{}:127.0.0.1", lg.https))
        .arg(format!("https://app.lab.example.test:{}/", lg.https))
        .output()
        .expect("curl is needed: apt-get install curl (scripts/test.sh does)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_history_of_requests_denials_and_certificates_survives_a_restart() {
    let _addrs = LoopbackAddrs::add(&[HISTORY_LAB, HISTORY_GUEST]);
    let backend = Backend::start("app");
    // Pebble asks labgate's DNS, on a port chosen before labgate starts, for the challenge.
    let dns = free_port();
    let pebble = Pebble::start(&format!("127.0.0.1:{dns}"));
    let cfg = ConfigDir::new();
    cfg.write("labgate.toml", &history_config(&pebble, backend.port));
    let path = cfg.path("labgate.toml");
    let dns_arg = format!("127.0.0.1:{dns}");
    let args = ["--config", path.to_str().expect("utf-8"), "--dns", &dns_arg];
    let lg = Labgate::start(&args, &cfg.path("state"));
    wait_certificate(&lg);
    assert_eq!(request(&lg, HISTORY_LAB), "200");
    assert_eq!(request(&lg, HISTORY_GUEST), "403");
    lg.wait_metric(
        "labgate_http_denied_total{service=\"app\",network=\"guest\"}",
        1,
        "the guest's denial counted by network",
    );
    // No minute is waited for: stopping takes a last sample and writes it.
    assert!(lg.terminate(), "labgate did not exit 0 on SIGTERM");
    let file = cfg.path("state/history.sqlite");
    let mode = std::fs::metadata(&file)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()))
        .expect("the history file");
    assert_eq!(mode & 0o777, 0o600, "{}", file.display());

    let lg = Labgate::start(&args, &cfg.path("state"));
    let admin = lg.admin;
    // The services page: the allowed request (2xx) and the denial, from before the restart.
    let want = "<td class=\"num\">0</td><td class=\"num\">1</td><td class=\"num\">0</td>\
                <td class=\"num\">0</td><td class=\"num\">0</td><td class=\"num\">0</td>\
                <td class=\"num\">1 (rule: allow = [lab])</td>";
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let services = get(admin, HISTORY_LAB, "/ui/services").body;
        if services.contains(want) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the services page lost the history: {services}\n{}",
            lg.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The networks page: the denial by the client's network, with the service and its rule.
    let networks = get(admin, HISTORY_LAB, "/ui/networks").body;
    assert!(
        networks.contains(
            "<td>guest</td><td class=\"num\">1</td><td>app: 1 (rule: allow = [lab])</td>"
        ),
        "{networks}"
    );
    assert!(
        networks.contains("guest: requests denied per ten minutes"),
        "{networks}"
    );
    assert!(
        !networks.contains("<td>lab</td><td class=\"num\">"),
        "{networks}"
    );
    // The certificates page: Pebble's certificate in the host's timeline, and its validity.
    let certs = get(admin, HISTORY_LAB, "/ui/certificates").body;
    let timeline = certs
        .split("app.lab.example.test: certificate events")
        .nth(1)
        .unwrap_or_default();
    let pebble_event = timeline.split("<tr>").any(|row| {
        (row.contains("<td>issued</td>") || row.contains("<td>replaced</td>"))
            && row.contains("Pebble")
    });
    assert!(pebble_event, "no event for Pebble's certificate: {certs}");
    assert!(
        certs.contains("app.lab.example.test: valid from"),
        "{certs}"
    );
    assert_eq!(lg.metric("labgate_history_write_failures_total"), 0);

    // A file that is not a database stops nothing: said, counted, the history in memory.
    assert!(lg.terminate(), "labgate did not exit 0 on SIGTERM");
    std::fs::write(&file, vec![0x5a; 8192]).expect("corrupt the history file");
    let lg = Labgate::start(&args, &cfg.path("state"));
    lg.wait_metric(
        "labgate_history_write_failures_total",
        1,
        "the unusable history file was not counted",
    );
    lg.wait_log("the unusable history file said", |log| {
        log.contains("history file") && log.contains("kept in memory only")
    });
    assert_eq!(request(&lg, HISTORY_GUEST), "403");
    let services = get(lg.admin, HISTORY_LAB, "/ui/services");
    assert_eq!(services.status, 200, "{services:?}");
    assert!(
        services
            .body
            .contains("<td class=\"num\">1 (rule: allow = [lab])</td>"),
        "the minute under way is shown: {}",
        services.body
    );
}
