//! End-to-end tests of the HTTPS entrypoint: the real binary, real backends on loopback,
//! curl (HTTP/1.1 and HTTP/2) and raw TLS connections for byte-exact requests.
#![allow(
    clippy::disallowed_macros,
    clippy::disallowed_methods,
    reason = "drives a real labgate from outside: deadlines on the wall clock, polls until they pass, prints what it saw"
)]

mod support;

use std::path::PathBuf;

use support::backend::Backend;
use support::https::{Tls, curl_https, raw};
use support::tls_backend::{TestCa, TlsBackend};
use support::{ConfigDir, Labgate, bin, free_port};

/// Two loopback networks, a service per behaviour under test.
fn config(a: &Backend, b: &Backend, dead: u16) -> String {
    format!(
        r#"
[[network]]
name = "lab"
cidrs = ["127.0.0.1/32"]
addresses = ["127.0.0.1"]

[[network]]
name = "iot"
cidrs = ["127.0.0.3/32"]
addresses = ["127.0.0.3"]

[[zone]]
name = "lab.test"

[[service]]
host = "app.lab.test"
backends = ["http://127.0.0.1:{a}", "http://127.0.0.1:{b}"]
allow = ["lab"]

[[service]]
host = "api.lab.test"
paths = ["/api"]
backends = ["http://127.0.0.1:{a}"]
allow = ["lab", "iot"]

[[record]]
name = "backend.lab.test"
type = "A"
value = "127.0.0.1"
networks = ["lab"]

[[service]]
host = "named.lab.test"
backends = ["http://backend.lab.test:{a}"]
allow = ["lab"]

[[service]]
host = "limits.lab.test"
backends = ["http://127.0.0.1:{a}"]
allow = ["lab"]
max_body = "8"
host_header = "internal.backend"
health_check = {{ path = "/limits-health", interval = "200ms" }}

[[service]]
host = "checked.lab.test"
backends = ["http://127.0.0.1:{a}", "http://127.0.0.1:{dead}"]
allow = ["lab"]
health_check = {{ path = "/health", interval = "200ms", timeout = "1s", fall = 1, rise = 1 }}

[[service]]
host = "plain.lab.test"
backends = ["http://127.0.0.1:{a}"]
allow = ["lab"]
plain_http = true

[[service]]
name = "site"
host = "split.lab.test"
backends = ["http://127.0.0.1:{a}"]
allow = ["lab", "iot"]

[[service]]
name = "site-admin"
host = "split.lab.test"
paths = ["/admin"]
backends = ["http://127.0.0.1:{a}"]
allow = ["lab"]

[[service]]
host = "least.lab.test"
backends = ["http://127.0.0.1:{a}", "http://127.0.0.1:{b}"]
allow = ["lab"]
balance = "least_connections"

[[service]]
host = "nows.lab.test"
backends = ["http://127.0.0.1:{a}"]
allow = ["lab"]
websockets = false

[[service]]
host = "dead.lab.test"
backends = ["http://127.0.0.1:{dead}"]
allow = ["lab"]
connect_timeout = "2s"
"#,
        a = a.port,
        b = b.port
    )
}

struct Setup {
    lg: Labgate,
    /// A port nothing listens on (the dead backend).
    dead: u16,
    a: Backend,
    b: Backend,
    ca: PathBuf,
    _dir: ConfigDir,
}

fn setup() -> Setup {
    setup_with("")
}

/// The test configuration plus extra TOML.
fn setup_with(extra: &str) -> Setup {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let dir = ConfigDir::new();
    let dead = free_port();
    let lg = dir.start(&format!("{extra}\n{}", config(&a, &b, dead)));
    let ca = dir.path("state/local-ca/ca.pem");
    Setup {
        lg,
        dead,
        a,
        b,
        ca,
        _dir: dir,
    }
}

#[test]
fn routes_by_host_over_http1_and_http2_with_forwarding_headers() {
    let s = setup();
    for version in ["--http1.1", "--http2"] {
        let r = curl_https(
            s.lg.https,
            "app.lab.test",
            "/hello?x=1",
            &s.ca,
            &[
                version,
                "-H",
                "X-Forwarded-For: 6.6.6.6",
                "-H",
                "Forwarded: for=6.6.6.6",
            ],
        );
        assert_eq!(r.status, 200, "{version}: {r:?}");
        let expect_version = if version == "--http2" {
            "HTTP/2"
        } else {
            "HTTP/1.1"
        };
        assert_eq!(r.version, expect_version);
        assert!(r.body.contains("\"path\":\"/hello?x=1\""), "{}", r.body);
        assert!(
            r.header("server").is_none(),
            "labgate adds no Server header"
        );
    }
    let seen: Vec<_> = s.a.seen().into_iter().chain(s.b.seen()).collect();
    assert_eq!(seen.len(), 2, "{seen:#?}");
    for req in &seen {
        assert_eq!(
            req.header("x-forwarded-for"),
            ["127.0.0.1"],
            "client copy dropped"
        );
        assert_eq!(req.header("x-forwarded-proto"), ["https"]);
        assert_eq!(
            req.header("x-forwarded-host"),
            ["app.lab.test:".to_owned() + &s.lg.https.to_string()]
        );
        assert_eq!(req.header("forwarded").len(), 1);
        assert!(req.header("forwarded")[0].starts_with("for=127.0.0.1;proto=https"));
        assert_eq!(req.header("host").len(), 1);
    }
    // Round robin: the two requests went to both backends.
    assert_eq!((s.a.seen().len(), s.b.seen().len()), (1, 1));
}

#[test]
fn policy_unknown_names_and_sni_mismatch_are_refused_and_explain_agrees() {
    let s = setup();
    let denied = curl_https(
        s.lg.https,
        "app.lab.test",
        "/",
        &s.ca,
        &["--interface", "127.0.0.3"],
    );
    assert_eq!(denied.status, 403, "{denied:?}");
    assert!(
        denied
            .body
            .contains("network iot may not reach service app"),
        "{}",
        denied.body
    );
    let allowed = curl_https(
        s.lg.https,
        "api.lab.test",
        "/api/v1",
        &s.ca,
        &["--interface", "127.0.0.3", "--http1.1"],
    );
    assert_eq!(allowed.status, 200, "{allowed:?}");
    let no_path = curl_https(s.lg.https, "api.lab.test", "/other", &s.ca, &[]);
    assert_eq!(no_path.status, 404);
    let misdirected = curl_https(
        s.lg.https,
        "app.lab.test",
        "/",
        &s.ca,
        &["--http1.1", "-H", "Host: api.lab.test"],
    );
    assert_eq!(misdirected.status, 421, "{misdirected:?}");
    assert!(
        s.a.seen().iter().all(|r| r.path.starts_with("/api")),
        "refused requests never reach a backend"
    );
    assert_eq!(
        s.lg.metric("labgate_http_denied_total{service=\"app\",network=\"iot\"}"),
        1
    );
    // `explain` computes the same decision from the same configuration.
    let cfg = s._dir.path("labgate.toml");
    for (from, target, allowed) in [
        ("127.0.0.3", "https://app.lab.test/", false),
        ("127.0.0.3", "https://api.lab.test/api/v1", true),
        ("127.0.0.1", "https://app.lab.test/", true),
    ] {
        let out = bin()
            .args(["explain", "--json", "--from", from, target, "--config"])
            .arg(&cfg)
            .output()
            .expect("explain");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        let verdict = v["policy"]["outcome"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert_eq!(verdict == "allow", allowed, "{from} {target}: {v:#}");
    }
}

#[test]
fn bodies_pass_with_every_framing() {
    let s = setup();
    let big = curl_https(s.lg.https, "app.lab.test", "/big", &s.ca, &["--http1.1"]);
    assert_eq!((big.status, big.body.len()), (200, 100 * 1024));
    let chunked = curl_https(
        s.lg.https,
        "app.lab.test",
        "/chunked",
        &s.ca,
        &["--http1.1"],
    );
    assert_eq!(
        (chunked.status, chunked.body.as_str()),
        (200, "hello world")
    );
    let close = curl_https(s.lg.https, "app.lab.test", "/close", &s.ca, &["--http1.1"]);
    assert_eq!((close.status, close.body.as_str()), (200, "until close"));
    let head = curl_https(
        s.lg.https,
        "app.lab.test",
        "/h",
        &s.ca,
        &["--http1.1", "-I"],
    );
    assert_eq!(head.status, 200);
    let post = curl_https(
        s.lg.https,
        "app.lab.test",
        "/upload",
        &s.ca,
        &["--http1.1", "--data-binary", "0123456789"],
    );
    assert!(post.body.contains("\"body_len\":10"), "{post:?}");
    // Chunked upload: handed to pingora's session, same answer.
    let chunked_up = curl_https(
        s.lg.https,
        "app.lab.test",
        "/upload",
        &s.ca,
        &[
            "--http1.1",
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            "abcdef",
        ],
    );
    assert!(chunked_up.body.contains("\"body_len\":6"), "{chunked_up:?}");
    // Keep-alive and pipelining on one connection: three requests, three answers.
    let mut c = Tls::connect(s.lg.https, "app.lab.test", &s.ca);
    c.send(
        b"GET /1 HTTP/1.1\r\nHost: app.lab.test\r\n\r\nGET /2 HTTP/1.1\r\nHost: app.lab.test\r\n\r\nGET /3 HTTP/1.1\r\nHost: app.lab.test\r\nConnection: close\r\n\r\n",
    );
    let all = String::from_utf8_lossy(&c.read_to_close()).into_owned();
    assert_eq!(all.matches("HTTP/1.1 200 OK").count(), 3, "{all}");
    for p in ["/1", "/2", "/3"] {
        assert!(all.contains(&format!("\"path\":\"{p}\"")), "{all}");
    }
    // One connection, both paths in turn: a chunked upload (pingora's session), a GET (the
    // fast path), another chunked upload pipelined with a last GET.
    let mut c = Tls::connect(s.lg.https, "app.lab.test", &s.ca);
    let until_json_end = |b: &[u8]| b.ends_with(b"}");
    c.send(b"POST /c1 HTTP/1.1\r\nHost: app.lab.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
    let one = String::from_utf8_lossy(&c.read_until(until_json_end)).into_owned();
    assert!(
        one.starts_with("HTTP/1.1 200") && one.contains("\"path\":\"/c1\""),
        "{one}"
    );
    c.send(b"GET /g1 HTTP/1.1\r\nHost: app.lab.test\r\n\r\n");
    let two = String::from_utf8_lossy(&c.read_until(until_json_end)).into_owned();
    assert!(
        two.starts_with("HTTP/1.1 200") && two.contains("\"path\":\"/g1\""),
        "{two}"
    );
    c.send(b"POST /c2 HTTP/1.1\r\nHost: app.lab.test\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\nGET /g2 HTTP/1.1\r\nHost: app.lab.test\r\nConnection: close\r\n\r\n");
    let rest = String::from_utf8_lossy(&c.read_to_close()).into_owned();
    assert_eq!(rest.matches("HTTP/1.1 200 OK").count(), 2, "{rest}");
    assert!(
        rest.find("\"path\":\"/c2\"") < rest.find("\"path\":\"/g2\""),
        "{rest}"
    );
    assert!(rest.contains("\"path\":\"/g2\""), "{rest}");
}

#[test]
fn a_keep_alive_connection_idle_past_the_buffer_release_serves_its_next_requests_whole() {
    let s = setup();
    let mut c = Tls::connect(s.lg.https, "app.lab.test", &s.ca);
    let whole_big = |b: &[u8]| {
        let at = b.windows(4).position(|w| w == b"\r\n\r\n");
        at.is_some_and(|at| b.len() - at - 4 >= 100 * 1024)
    };
    c.send(b"GET /big HTTP/1.1\r\nHost: app.lab.test\r\n\r\n");
    assert!(whole_big(&c.read_until(whole_big)));
    // Idle longer than the fast path keeps its buffers (2 s): they are given back.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    // A head larger than the buffer an idle connection keeps, then a large response again.
    let pad = "p".repeat(3000);
    c.send(
        format!("GET /after-idle HTTP/1.1\r\nHost: app.lab.test\r\nX-Pad: {pad}\r\n\r\nGET /big HTTP/1.1\r\nHost: app.lab.test\r\n\r\n")
            .as_bytes(),
    );
    let both = c.read_until(|b| {
        let text = String::from_utf8_lossy(b);
        text.find("}HTTP/1.1 200")
            .is_some_and(|at| whole_big(&b[at + 1..]))
    });
    let text = String::from_utf8_lossy(&both);
    assert!(
        text.starts_with("HTTP/1.1 200") && text.contains("\"path\":\"/after-idle\""),
        "{}",
        &text[..text.len().min(400)]
    );
    let seen: Vec<_> = s.a.seen().into_iter().chain(s.b.seen()).collect();
    let after = seen
        .iter()
        .find(|r| r.path == "/after-idle")
        .expect("the backend got the request");
    assert_eq!(after.header("x-pad"), [pad.as_str()]);
}

#[test]
fn smuggling_shapes_and_oversized_heads_are_refused_before_any_backend() {
    let s = setup();
    let cases: [(&str, &str); 9] = [
        (
            "CL+TE",
            "POST / HTTP/1.1\r\nHost: app.lab.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "duplicate CL",
            "POST / HTTP/1.1\r\nHost: app.lab.test\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        ),
        (
            "invalid CL",
            "POST / HTTP/1.1\r\nHost: app.lab.test\r\nContent-Length: 0x10\r\n\r\n",
        ),
        (
            "obfuscated TE",
            "POST / HTTP/1.1\r\nHost: app.lab.test\r\nTransfer-Encoding: xchunked\r\n\r\n",
        ),
        (
            "obs-fold",
            "GET / HTTP/1.1\r\nHost: app.lab.test\r\nX-A: 1\r\n 2\r\n\r\n",
        ),
        ("bare LF", "GET / HTTP/1.1\nHost: app.lab.test\n\n"),
        (
            "bare CR",
            "GET / HTTP/1.1\r\nHost: app.lab.test\rX: 1\r\n\r\n",
        ),
        (
            "NUL",
            "GET / HTTP/1.1\r\nHost: app.lab.test\r\nX: a\0b\r\n\r\n",
        ),
        (
            "fragment",
            "GET /a#/../admin HTTP/1.1\r\nHost: app.lab.test\r\n\r\n",
        ),
    ];
    for (what, req) in cases {
        let got = raw(s.lg.https, "app.lab.test", &s.ca, req.as_bytes());
        assert!(got.starts_with("HTTP/1.1 400 "), "{what}: {got:?}");
        assert!(got.contains("connection: close"), "{what}: {got:?}");
    }
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: app.lab.test\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let got = raw(s.lg.https, "app.lab.test", &s.ca, huge.as_bytes());
    assert!(got.starts_with("HTTP/1.1 431 "), "{got:?}");
    assert!(
        s.a.seen().is_empty() && s.b.seen().is_empty(),
        "no backend saw any of them"
    );
}

#[test]
fn hop_by_hop_headers_are_removed() {
    let s = setup();
    let got = raw(
        s.lg.https,
        "app.lab.test",
        &s.ca,
        b"GET /hop HTTP/1.1\r\nHost: app.lab.test\r\nConnection: close, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nProxy-Authorization: x\r\nX-Kept: yes\r\n\r\n",
    );
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    let seen: Vec<_> = s.a.seen().into_iter().chain(s.b.seen()).collect();
    let req = &seen[0];
    for gone in [
        "connection",
        "x-secret",
        "keep-alive",
        "te",
        "proxy-authorization",
    ] {
        assert!(
            req.header(gone).is_empty(),
            "{gone} reached the backend: {req:?}"
        );
    }
    assert_eq!(req.header("x-kept"), ["yes"]);
}

#[test]
fn a_path_prefix_policy_holds_for_every_spelling_of_the_path() {
    let s = setup();
    // `/admin` is for `lab` only; `/` is for `iot` too. Spellings a backend may read as
    // `/admin` (decoded, `..` resolved, `;` parameters dropped, other case) must never
    // pass under `/`'s policy, and spellings of `/` must not under `/admin`'s: the plain
    // ones are denied, the ones that read as the other service are refused. On both paths
    // (HTTP/1.1 fast, HTTP/2 pingora's).
    for version in ["--http1.1", "--http2"] {
        for (path, status) in [
            ("/admin", 403),
            ("/admin/x", 403),
            ("/admin;jsessionid=1", 403),
            ("/admin/./x", 403),
            ("/%61dmin", 400),
            ("//admin", 400),
            ("/x/../admin", 400),
            ("/./admin", 400),
            ("/%2e%2e/admin", 400),
            ("/public/..;/admin", 400),
            ("/ADMIN", 403),
            ("/%41dmin", 400),
            ("/admin/x/..%2F..", 400),
            ("/admin/files/../..", 400),
            ("/administrator", 200),
            ("/Public/x", 200),
        ] {
            let r = curl_https(
                s.lg.https,
                "split.lab.test",
                path,
                &s.ca,
                &["--interface", "127.0.0.3", "--path-as-is", version],
            );
            assert_eq!(r.status, status, "{version} {path}: {r:?}");
        }
    }
    // The backend gets the path as the client wrote it.
    let r = curl_https(
        s.lg.https,
        "split.lab.test",
        "/admin/./x",
        &s.ca,
        &["--path-as-is"],
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(s.a.seen().iter().any(|q| q.path == "/admin/./x"));
}

#[test]
fn cookies_an_http2_client_splits_reach_an_http1_backend_as_one_field() {
    let s = setup();
    let r = support::h2c::post_h2(
        s.lg.https,
        "app.lab.test",
        "/cookies",
        &s.ca,
        "",
        &[("cookie", "a=1"), ("cookie", "b=2"), ("te", "trailers")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let seen: Vec<_> = s.a.seen().into_iter().chain(s.b.seen()).collect();
    let req = seen
        .iter()
        .find(|r| r.path == "/cookies")
        .expect("the request reached a backend");
    assert_eq!(req.header("cookie"), ["a=1; b=2"], "{req:?}");
    assert!(
        req.header("te").is_empty(),
        "TE is hop-by-hop for HTTP/1.1: {req:?}"
    );
}

/// A WebSocket to `host`'s `/ws` (the test backend echoes on it), its 101 read.
fn open_websocket(s: &Setup, host: &str) -> Tls {
    let mut ws = Tls::connect(s.lg.https, host, &s.ca);
    ws.send(format!("GET /ws HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").as_bytes());
    let head = ws.read_until(|b| b.windows(4).any(|w| w == b"\r\n\r\n"));
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    ws
}

#[test]
fn websocket_upgrade_becomes_a_pipe() {
    let s = setup();
    let mut c = open_websocket(&s, "app.lab.test");
    for msg in ["one", "two", "three"] {
        c.send(msg.as_bytes());
        let echo = c.read_until(|b| b.len() >= msg.len());
        assert_eq!(String::from_utf8_lossy(&echo), msg);
    }
}

#[test]
fn least_connections_counts_an_open_websocket() {
    let s = setup();
    let mut ws = open_websocket(&s, "least.lab.test");
    let holds = |b: &Backend| b.seen().iter().any(|r| r.path == "/ws");
    let (holder, other) = if holds(&s.a) {
        (&s.a, &s.b)
    } else {
        (&s.b, &s.a)
    };
    assert!(holds(holder));
    // One request at a time: each goes to the backend with nothing in flight.
    for i in 0..4 {
        let got = raw(
            s.lg.https,
            "least.lab.test",
            &s.ca,
            format!("GET /least/{i} HTTP/1.1\r\nHost: least.lab.test\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
        assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    }
    let count = |b: &Backend| {
        b.seen()
            .iter()
            .filter(|r| r.path.starts_with("/least/"))
            .count()
    };
    assert_eq!((count(holder), count(other)), (0, 4));
    ws.send(b"still open");
    assert_eq!(ws.read_until(|b| b.len() >= 10), b"still open");
}

#[test]
fn backends_named_by_host_resolve_from_labgate_records() {
    let s = setup();
    let r = curl_https(s.lg.https, "named.lab.test", "/n", &s.ca, &["--http1.1"]);
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        s.a.seen()
            .iter()
            .any(|q| q.path == "/n"
                && q.header("host") == [format!("named.lab.test:{}", s.lg.https)])
    );
}

#[test]
fn a_dead_backend_gets_a_clear_502_and_http_redirects() {
    let s = setup();
    let r = curl_https(s.lg.https, "dead.lab.test", "/", &s.ca, &["--http1.1"]);
    assert_eq!(r.status, 502, "{r:?}");
    assert!(r.body.contains("backend"), "{}", r.body);
    let r2 = curl_https(s.lg.https, "dead.lab.test", "/", &s.ca, &["--http2"]);
    assert_eq!(r2.status, 502, "{r2:?}");
    let r = curl_plain(s.lg.http, "app.lab.test", "/path?q=1", &[]);
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location"),
        Some(format!("https://app.lab.test:{}/path?q=1", s.lg.https).as_str())
    );
    assert_eq!(
        curl_plain(s.lg.http, "app.lab.test", "/form", &["-X", "POST"]).status,
        308
    );
}

/// `curl` over plain HTTP to labgate's HTTP listener: the raw reply text.
fn curl_plain(port: u16, host: &str, path: &str, extra: &[&str]) -> support::https::Reply {
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-i",
            "--max-time",
            "10",
            "-H",
            &format!("Host: {host}"),
        ])
        .args(extra)
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("curl");
    support::https::parse_reply(&String::from_utf8_lossy(&out.stdout))
}

#[test]
fn plain_http_serves_only_services_that_ask_and_keeps_the_policy() {
    let s = setup();
    let r = curl_plain(s.lg.http, "plain.lab.test", "/over-http", &[]);
    assert_eq!(r.status, 200, "{r:?}");
    let seen = s.a.seen();
    let req = seen
        .iter()
        .find(|q| q.path == "/over-http")
        .expect("the backend got the request");
    assert_eq!(req.header("x-forwarded-proto"), ["http"]);
    assert_eq!(req.header("x-forwarded-for"), ["127.0.0.1"]);
    // A chunked upload goes through pingora's session on the same listener.
    let r = curl_plain(
        s.lg.http,
        "plain.lab.test",
        "/chunked-over-http",
        &["-H", "Transfer-Encoding: chunked", "--data-binary", "abc"],
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(s.a.seen().iter().any(|q| q.path == "/chunked-over-http"));
    // HTTP/2 with prior knowledge (h2c) on the same listener: pingora's h2 server.
    let r = curl_plain(
        s.lg.http,
        "plain.lab.test",
        "/h2c",
        &["--http2-prior-knowledge"],
    );
    assert_eq!((r.status, r.version.as_str()), (200, "HTTP/2"), "{r:?}");
    let seen = s.a.seen();
    let req = seen.iter().find(|q| q.path == "/h2c").expect("h2c request");
    assert_eq!(req.header("x-forwarded-proto"), ["http"]);
    // Not routed: 404, not a redirect to a name labgate does not serve.
    assert_eq!(
        curl_plain(s.lg.http, "nowhere.lab.test", "/", &[]).status,
        404
    );
    // Denied networks get the 403 at once, on either path.
    for extra in [
        &[][..],
        &["-H", "Transfer-Encoding: chunked", "--data-binary", "x"][..],
    ] {
        let mut args = vec!["--interface", "127.0.0.3"];
        args.extend_from_slice(extra);
        assert_eq!(
            curl_plain(s.lg.http, "app.lab.test", "/", &args).status,
            403
        );
    }
    // A service without plain_http is redirected on the handed-over path too.
    let r = curl_plain(
        s.lg.http,
        "app.lab.test",
        "/up",
        &["-H", "Transfer-Encoding: chunked", "--data-binary", "abc"],
    );
    assert_eq!(r.status, 308, "{r:?}");
    assert_eq!(
        r.header("location"),
        Some(format!("https://app.lab.test:{}/up", s.lg.https).as_str())
    );
}

#[test]
fn reloads_apply_to_the_next_request_and_keep_open_websockets() {
    let s = setup();
    let mut ws = open_websocket(&s, "app.lab.test");
    let mut keep = Tls::connect(s.lg.https, "app.lab.test", &s.ca);
    let until_json_end = |b: &[u8]| b.ends_with(b"}");
    keep.send(b"GET /before HTTP/1.1\r\nHost: app.lab.test\r\n\r\n");
    let first = String::from_utf8_lossy(&keep.read_until(until_json_end)).into_owned();
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    let generation = support::generation(&s.lg.config());
    // The app is now for the iot network only.
    let cfg = config(&s.a, &s.b, s.dead).replacen(
        "allow = [\"lab\"]\n\n[[service]]\nhost = \"api",
        "allow = [\"iot\"]\n\n[[service]]\nhost = \"api",
        1,
    );
    assert!(cfg.contains("allow = [\"iot\"]"));
    s._dir.write("labgate.toml", &cfg);
    s.lg.wait_config("the reload", |c| support::generation(c) > generation);
    keep.send(b"GET /after HTTP/1.1\r\nHost: app.lab.test\r\nConnection: close\r\n\r\n");
    let second = String::from_utf8_lossy(&keep.read_to_close()).into_owned();
    assert!(second.starts_with("HTTP/1.1 403"), "{second}");
    // The WebSocket opened before the reload still echoes.
    ws.send(b"still here");
    assert_eq!(ws.read_until(|b| b.len() >= 10), b"still here");
}

#[test]
fn max_body_host_rewrite_and_trusted_proxies() {
    let s = setup_with("[server]\ntrusted_proxies = [\"127.0.0.1\"]\n");
    for version in ["--http1.1", "--http2"] {
        let small = curl_https(
            s.lg.https,
            "limits.lab.test",
            "/small",
            &s.ca,
            &[
                version,
                "--data-binary",
                "12345678",
                "-H",
                "X-Forwarded-For: 6.6.6.6",
            ],
        );
        assert_eq!(small.status, 200, "{version}: {small:?}");
        let big = curl_https(
            s.lg.https,
            "limits.lab.test",
            "/big-upload",
            &s.ca,
            &[version, "--data-binary", "123456789"],
        );
        assert_eq!(big.status, 413, "{version}: {big:?}");
        assert!(big.body.contains("max_body"), "{big:?}");
    }
    let seen = s.a.seen();
    assert!(
        seen.iter().all(|r| r.path == "/small"),
        "a refused body never reaches the backend: {seen:#?}"
    );
    for r in &seen {
        assert_eq!(
            r.header("host"),
            ["internal.backend"],
            "host_header rewrites Host"
        );
        // The peer (127.0.0.1) is a trusted proxy: its chain is kept and the peer appended.
        assert_eq!(
            r.header("x-forwarded-for"),
            ["6.6.6.6", "127.0.0.1"],
            "{r:?}"
        );
    }
}

#[test]
fn active_health_checks_take_a_dead_backend_out() {
    let s = setup();
    let url = |port: &str| {
        format!(
            "labgate_http_backend_up{{service=\"checked\",backend=\"http://127.0.0.1:{port}\"}}"
        )
    };
    let dead = s.dead.to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let (_, body) = loop {
        let (code, body) = s.lg.admin("GET", "/metrics");
        if body.contains(&format!("{} 0", url(&dead))) || std::time::Instant::now() > deadline {
            break (code, body);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(
        body.contains(&format!("{} 0", url(&dead))),
        "dead backend still up:\n{body}"
    );
    assert!(
        body.contains(&format!("{} 1", url(&s.a.port.to_string()))),
        "{body}"
    );
    let checks_of = |path: &str| loop {
        let checks: Vec<_> =
            s.a.all_seen()
                .into_iter()
                .filter(|r| r.path == path)
                .collect();
        if !checks.is_empty() || std::time::Instant::now() > deadline {
            break checks;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let checks = checks_of("/health");
    assert!(!checks.is_empty(), "the live backend was never checked");
    assert_eq!(checks[0].header("user-agent"), ["labgate-health-check"]);
    assert_eq!(checks[0].header("host"), ["checked.lab.test"]);
    // A service that sends its backends another Host checks them with it too.
    let checks = checks_of("/limits-health");
    assert!(!checks.is_empty(), "the limits backend was never checked");
    assert_eq!(checks[0].header("host"), ["internal.backend"]);
}

#[test]
fn failed_handshakes_are_counted_and_requests_logged() {
    let s = setup();
    // Access log: on by default, one line per request, off by `server.access_log = false`.
    let r = curl_https(s.lg.https, "app.lab.test", "/logged", &s.ca, &["--http1.1"]);
    assert_eq!(r.status, 200);
    let line = format!("127.0.0.1 app GET app.lab.test:{}/logged 200", s.lg.https);
    s.lg.wait_log("the access log line", |l| l.contains(&line));
    let generation = support::generation(&s.lg.config());
    let cfg = format!(
        "[server]\naccess_log = false\n{}",
        config(&s.a, &s.b, s.dead)
    );
    s._dir.write("labgate.toml", &cfg);
    s.lg.wait_config("the reload", |c| support::generation(c) > generation);
    let r = curl_https(s.lg.https, "app.lab.test", "/unlogged", &s.ca, &["--http2"]);
    assert_eq!(r.status, 200);
    let generation = support::generation(&s.lg.config());
    s._dir.write("labgate.toml", &config(&s.a, &s.b, s.dead));
    s.lg.wait_config("the reload", |c| support::generation(c) > generation);
    let r = curl_https(s.lg.https, "app.lab.test", "/marker", &s.ca, &["--http2"]);
    assert_eq!(r.status, 200);
    // Lines leave in order: once the marker is there, the unlogged one would be too.
    s.lg.wait_log("the marker line", |l| l.contains("/marker 200"));
    assert!(
        !s.lg.log_text().contains("/unlogged"),
        "{}",
        s.lg.log_text()
    );
    // No certificate covers this name: the handshake fails.
    let r = curl_https(s.lg.https, "nothing.lab.test", "/", &s.ca, &[]);
    assert_eq!(r.status, 0, "{r:?}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while s
        .lg
        .metric("labgate_tls_handshake_failures_total{reason=\"unrecognized_name\"}")
        == 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "handshake failure not counted"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Counted, not printed: a scanner would fill the journal.
    assert!(
        !s.lg.log_text().contains("Downstream handshake error"),
        "{}",
        s.lg.log_text()
    );
}

#[test]
fn h2c_backends_get_http2_and_their_trailers_reach_the_client() {
    let grpc = support::h2c::H2cBackend::start();
    let s = setup_with(&format!(
        "[[service]]\nhost = \"grpc.lab.test\"\nbackends = [\"h2c://127.0.0.1:{}\"]\nallow = [\"lab\"]\nhealth_check = {{ path = \"/health\", interval = \"200ms\" }}\n",
        grpc.port
    ));
    // As a gRPC client does: `te: trailers`, which gRPC servers require.
    let r = support::h2c::post_h2(
        s.lg.https,
        "grpc.lab.test",
        "/pkg.Svc/Call",
        &s.ca,
        "12345",
        &[("te", "trailers")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.ends_with(" te=trailers"), "{}", r.body);
    assert!(
        r.body.starts_with("h2c HTTP/2.0 POST /pkg.Svc/Call"),
        "{}",
        r.body
    );
    assert!(
        r.body.contains("body=5") && r.body.contains("xfp=https"),
        "{}",
        r.body
    );
    assert!(
        r.body
            .contains(&format!("authority=grpc.lab.test:{}", s.lg.https)),
        "{}",
        r.body
    );
    assert_eq!(
        r.trailers.get("grpc-status").map(|v| v.as_bytes()),
        Some(&b"0"[..]),
        "the trailer is relayed"
    );
    // An HTTP/1.1 client reaches the same backend through pingora's session.
    let r = curl_https(s.lg.https, "grpc.lab.test", "/plain", &s.ca, &["--http1.1"]);
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.starts_with("h2c HTTP/2.0 GET /plain"), "{r:?}");
    // Its health checks speak HTTP/2 too: more than `fall` (3) of them, and it stays up.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while grpc.checks() < 5 {
        assert!(std::time::Instant::now() < deadline, "no h2 health checks");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let up = format!(
        "labgate_http_backend_up{{service=\"grpc\",backend=\"h2c://127.0.0.1:{}\"}}",
        grpc.port
    );
    assert_eq!(s.lg.metric(&up), 1);
}

#[test]
fn request_bodies_flow_while_the_response_streams() {
    // A backend that answers after the first piece of the body and reads the rest later.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        let Ok((mut c, _)) = listener.accept() else {
            return;
        };
        let _ = c.set_read_timeout(Some(std::time::Duration::from_secs(15)));
        let mut got = Vec::new();
        let mut read_until = |c: &mut std::net::TcpStream, what: &[u8]| {
            let mut buf = [0u8; 4096];
            while !got.windows(what.len()).any(|w| w == what) {
                match c.read(&mut buf) {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            true
        };
        if !read_until(&mut c, b"first") {
            return;
        }
        let _ = c.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nearly\r\n");
        if read_until(&mut c, b"0\r\n\r\n") {
            let _ = c.write_all(b"4\r\nlate\r\n0\r\n\r\n");
        }
    });
    let s = setup_with(&format!(
        "[[service]]\nhost = \"duplex.lab.test\"\nbackends = [\"http://127.0.0.1:{port}\"]\nallow = [\"lab\"]\n"
    ));
    let mut c = Tls::connect(s.lg.https, "duplex.lab.test", &s.ca);
    c.send(b"POST /stream HTTP/1.1\r\nHost: duplex.lab.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n");
    let head = String::from_utf8_lossy(&c.read_until(|b| b.windows(5).any(|w| w == b"early")))
        .into_owned();
    assert!(
        head.starts_with("HTTP/1.1 200"),
        "the answer comes before the body ends: {head}"
    );
    assert!(head.contains("early"), "{head}");
    c.send(b"0\r\n\r\n");
    let rest = String::from_utf8_lossy(&c.read_until(|b| b.ends_with(b"0\r\n\r\n"))).into_owned();
    assert!(rest.contains("late"), "{rest}");
}

/// A backend that reads a request, sends `answer` and then keeps every connection open
/// without another byte.
fn stalling_backend(answer: &'static [u8]) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { break };
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(answer);
            held.push(conn);
        }
    });
    port
}

#[test]
fn a_stalling_backend_gets_504_or_a_cut_response_within_the_service_timeout() {
    use std::time::{Duration, Instant};
    let silent = stalling_backend(b"");
    let midway = stalling_backend(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
    let s = setup_with(&format!(
        r#"
[[service]]
host = "silent.lab.test"
backends = ["http://127.0.0.1:{silent}"]
allow = ["lab"]
timeout = "1s"

[[service]]
host = "midway.lab.test"
backends = ["http://127.0.0.1:{midway}"]
allow = ["lab"]
timeout = "1s"
"#
    ));
    for (host, head, tail) in [
        (
            "silent.lab.test",
            "HTTP/1.1 504 ",
            "504 Gateway Timeout: the backend of service silent did not answer in time.",
        ),
        ("midway.lab.test", "HTTP/1.1 200 ", "\r\n\r\n0123456789"),
    ] {
        let mut c = Tls::connect(s.lg.https, host, &s.ca);
        let started = Instant::now();
        c.send(format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes());
        let got = String::from_utf8_lossy(&c.read_to_close()).into_owned();
        let took = started.elapsed();
        assert!(got.starts_with(head), "{host}: {got}");
        assert!(got.trim_end().ends_with(tail.trim_end()), "{host}: {got}");
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(5),
            "{host}: {took:?}"
        );
    }
}

/// labgate serving one service, `host`, from one backend that nothing else uses.
struct OneService {
    lg: Labgate,
    ca: PathBuf,
    _dir: ConfigDir,
}

impl OneService {
    fn start(host: &str, backend: &Backend) -> Self {
        let dir = ConfigDir::new();
        let lg = dir.start(&format!(
            "[[network]]\nname = \"lab\"\ncidrs = [\"127.0.0.1/32\"]\naddresses = [\"127.0.0.1\"]\n\n\
             [[zone]]\nname = \"lab.test\"\n\n\
             [[service]]\nhost = \"{host}\"\nbackends = [\"http://127.0.0.1:{}\"]\nallow = [\"lab\"]\n",
            backend.port
        ));
        let ca = dir.path("state/local-ca/ca.pem");
        Self { lg, ca, _dir: dir }
    }
}

#[test]
fn the_streams_of_an_http2_connection_reuse_backend_connections() {
    // One client connection, 1000 requests, at most 100 streams at once (labgate's
    // SETTINGS_MAX_CONCURRENT_STREAMS): a backend connection freed by one stream serves the
    // next, so the backend sees about as many connections as streams ever ran at once.
    const REQUESTS: usize = 1000;
    let backend = Backend::start("burst");
    let one = OneService::start("burst.lab.test", &backend);
    let out = std::process::Command::new("h2load")
        .args(["-n", &REQUESTS.to_string(), "-c", "1", "-m", "100"])
        .args(["--connect-to", &format!("127.0.0.1:{}", one.lg.https)])
        .arg("https://burst.lab.test/reuse")
        .output()
        .expect("h2load runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains(&format!("{REQUESTS} succeeded, 0 failed, 0 errored")),
        "every request answered: {text}"
    );
    assert!(
        text.contains("Application protocol: h2"),
        "spoken over HTTP/2: {text}"
    );
    let opened = backend.connections();
    assert!(
        (1..=110).contains(&opened),
        "{REQUESTS} requests over one HTTP/2 connection opened {opened} backend connections"
    );
}

#[test]
fn backend_connections_outlive_client_connections_and_closed_ones_are_not_reused() {
    let backend = Backend::start("kept");
    let one = OneService::start("kept.lab.test", &backend);
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let ask = |request: &str| raw(one.lg.https, "kept.lab.test", &one.ca, request.as_bytes());
    // One request per client connection: the backend connection stays for the next client
    // (kept by the labgate thread that served it, so at most one per thread).
    let before = backend.connections();
    for i in 0..6 {
        let got = ask(&format!(
            "GET /one/{i} HTTP/1.1\r\nHost: kept.lab.test\r\nConnection: close\r\n\r\n"
        ));
        assert!(got.starts_with("HTTP/1.1 200 "), "{got}");
    }
    let opened = backend.connections() - before;
    assert!(
        opened <= threads,
        "{opened} backend connections for 6 client connections on {threads} threads"
    );
    // The backend closes the connection after each `/bye`, as at its keep-alive timeout. The
    // last one on each labgate thread stays kept, closed.
    for i in 0..8 {
        let got = ask(&format!(
            "GET /bye HTTP/1.1\r\nHost: kept.lab.test\r\nX-Try: {i}\r\nConnection: close\r\n\r\n"
        ));
        assert!(got.starts_with("HTTP/1.1 200 "), "{got}");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let closed = |n: usize| {
        while backend.byes() < n || !backend.byes_reached_clients() {
            assert!(
                std::time::Instant::now() < deadline,
                "the backend closed {} of {n}",
                backend.byes()
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    };
    closed(8);
    // A POST is never retried (its body is sent): on a closed connection it would get 502.
    // First on the client connection whose backend connection was closed while it idled.
    let mut keep = Tls::connect(one.lg.https, "kept.lab.test", &one.ca);
    keep.send(b"GET /bye HTTP/1.1\r\nHost: kept.lab.test\r\n\r\n");
    let got = String::from_utf8_lossy(&keep.read_until(|b| b.ends_with(b"}"))).into_owned();
    assert!(got.starts_with("HTTP/1.1 200 "), "{got}");
    closed(9);
    keep.send(b"POST /pinned HTTP/1.1\r\nHost: kept.lab.test\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello");
    let got = String::from_utf8_lossy(&keep.read_to_close()).into_owned();
    assert!(
        got.starts_with("HTTP/1.1 200 "),
        "POST on the same client connection: {got}"
    );
    // Then on new client connections, from the connections kept idle.
    for i in 0..4 {
        let got = ask(&format!(
            "POST /after/{i} HTTP/1.1\r\nHost: kept.lab.test\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
        ));
        assert!(got.starts_with("HTTP/1.1 200 "), "POST {i}: {got}");
    }
    let posts = backend
        .seen()
        .into_iter()
        .filter(|r| r.method == "POST" && r.body == b"hello")
        .count();
    assert_eq!(posts, 5);
}

#[test]
fn https_backends_are_verified_by_address_or_name_against_the_roots_each_service_trusts() {
    let (ca, other_ca) = (
        TestCa::new("labgate test: backend CA"),
        TestCa::new("labgate test: another CA"),
    );
    let backend = TlsBackend::start("verified", &ca, &["tls.lab.test"]);
    let dir = ConfigDir::new();
    let (ca_file, other_file) = (
        ca.write(&dir.path(""), "backend-ca.pem"),
        other_ca.write(&dir.path(""), "other-ca.pem"),
    );
    let by_address = format!("https://127.0.0.1:{}", backend.port);
    let service = |host: &str, backend: &str, extra: &str| {
        format!(
            "[[service]]\nhost = \"{host}\"\nbackends = [\"{backend}\"]\nallow = [\"lab\"]\n{extra}\n"
        )
    };
    let pinned = format!("backend_ca_file = \"{}\"", ca_file.display());
    let config = [
        "[[network]]\nname = \"lab\"\ncidrs = [\"127.0.0.1/32\"]\naddresses = [\"127.0.0.1\"]\n\n[[zone]]\nname = \"lab.test\"\n".to_owned(),
        "[[record]]\nname = \"tls.lab.test\"\ntype = \"A\"\nvalue = \"127.0.0.1\"\n".to_owned(),
        "[[record]]\nname = \"wrong.lab.test\"\ntype = \"A\"\nvalue = \"127.0.0.1\"\n".to_owned(),
        service("public.lab.test", &by_address, ""),
        service("pinned.lab.test", &by_address, &pinned),
        service("other.lab.test", &by_address, &format!("backend_ca_file = \"{}\"", other_file.display())),
        service("named.lab.test", &format!("https://tls.lab.test:{}", backend.port), &pinned),
        service("wrong.lab.test", &format!("https://wrong.lab.test:{}", backend.port), &pinned),
        service("insecure.lab.test", &by_address, "danger_accept_invalid_backend_certs = true"),
    ]
    .concat();
    let lg = dir.start(&config);
    let local_ca = dir.path("state/local-ca/ca.pem");
    let get = |host: &str| {
        raw(
            lg.https,
            host,
            &local_ca,
            format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
    };
    let refused = |host: &str| {
        let got = get(host);
        assert!(
            got.starts_with("HTTP/1.1 502 ") && got.contains("TLS handshake"),
            "{host}: {got}"
        );
    };
    // A backend by address is checked against its certificate's IP addresses, with the
    // service's pinned CA; by name, against its names.
    for host in ["pinned.lab.test", "named.lab.test", "insecure.lab.test"] {
        let got = get(host);
        assert!(
            got.starts_with("HTTP/1.1 200 ") && got.ends_with("verified"),
            "{host}: {got}"
        );
    }
    refused("public.lab.test");
    refused("wrong.lab.test");
    // Connections verified for `pinned` are kept idle (one per labgate thread). Services
    // that trust other roots, or the public ones, must not be handed one of them.
    for _ in 0..8 {
        assert!(get("pinned.lab.test").starts_with("HTTP/1.1 200 "));
    }
    for _ in 0..8 {
        refused("other.lab.test");
        refused("public.lab.test");
    }
    // pingora's path (HTTP/2) says the same.
    let r = curl_https(lg.https, "public.lab.test", "/", &local_ca, &["--http2"]);
    assert_eq!((r.status, r.version.as_str()), (502, "HTTP/2"), "{r:?}");
    assert!(r.body.contains("TLS handshake"), "{r:?}");
    assert!(backend.handshakes() >= 3, "{}", backend.handshakes());
}

/// Every request both backends saw with this path.
fn seen_at(s: &Setup, path: &str) -> Vec<support::backend::Seen> {
    (s.a.seen().into_iter().chain(s.b.seen()))
        .filter(|r| r.path == path)
        .collect()
}

#[test]
fn r21_an_h2c_upgrade_is_a_plain_request_whose_upgrade_fields_never_reach_the_backend() {
    let s = setup();
    // app allows WebSockets, nows does not; the fast path takes the GET, pingora's session
    // the chunked POST.
    for host in ["app.lab.test", "nows.lab.test"] {
        for (method, framing, body) in [
            ("GET", "", ""),
            (
                "POST",
                "Transfer-Encoding: chunked\r\n",
                "5\r\nhello\r\n0\r\n\r\n",
            ),
        ] {
            let path = format!("/h2c/{host}/{method}");
            let req = format!(
                "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade, HTTP2-Settings\r\n\
                 Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n{framing}\r\n{body}"
            );
            let mut c = Tls::connect(s.lg.https, host, &s.ca);
            c.send(req.as_bytes());
            let got = c.read_until(|b| b.windows(4).any(|w| w == b"\r\n\r\n"));
            let got = String::from_utf8_lossy(&got);
            assert!(got.starts_with("HTTP/1.1 200 "), "{host} {method}: {got}");
            let seen = seen_at(&s, &path);
            assert_eq!(seen.len(), 1, "{host} {method}: {seen:#?}");
            for gone in ["upgrade", "http2-settings", "connection"] {
                assert!(
                    seen[0].header(gone).is_empty(),
                    "{host} {method}: {gone} reached the backend: {:?}",
                    seen[0]
                );
            }
            assert_eq!(seen[0].body.len(), body.len().min(5));
        }
    }
}

#[test]
fn r21_a_space_in_the_request_target_is_a_bad_request() {
    let s = setup();
    for (line, status) in [
        ("GET /a-x b HTTP/1.1", "400"),
        ("GET / HTTP/1.1 extra", "400"),
        ("GET / HTTP/2.0", "505"),
    ] {
        let req = format!("{line}\r\nHost: app.lab.test\r\n\r\n");
        let got = raw(s.lg.https, "app.lab.test", &s.ca, req.as_bytes());
        assert!(
            got.starts_with(&format!("HTTP/1.1 {status} ")),
            "{line}: {got:?}"
        );
    }
    assert!(s.a.seen().is_empty() && s.b.seen().is_empty());
}

#[test]
fn r21_a_bad_chunk_size_gets_400_and_the_log_records_only_what_was_sent() {
    // A backend of its own: its connection count says when labgate forwards.
    let cut = Backend::start("cut");
    let s = setup_with(&format!(
        "[[service]]\nhost = \"cut.lab.test\"\nbackends = [\"http://127.0.0.1:{}\"]\nallow = [\"lab\"]\n",
        cut.port
    ));
    for (i, size) in ["zz", "-1", "1ffffffffffffffff"].into_iter().enumerate() {
        let req = format!(
            "POST /chunk/{i} HTTP/1.1\r\nHost: api.lab.test\r\nTransfer-Encoding: chunked\r\n\r\n\
             5\r\nhello\r\n{size}\r\nworld\r\n0\r\n\r\n"
        );
        let mut c = Tls::connect(s.lg.https, "api.lab.test", &s.ca);
        c.send(req.replace("/chunk", "/api/chunk").as_bytes());
        let got = String::from_utf8_lossy(&c.read_to_close()).into_owned();
        assert!(got.starts_with("HTTP/1.1 400 "), "{size}: {got:?}");
        assert!(got.contains("chunked encoding is invalid"), "{size}: {got}");
        s.lg.wait_log("the access log line", |l| {
            l.contains(&format!("/api/chunk/{i} 400 "))
        });
    }
    // A client that resets the connection mid-body gets nothing: nothing is logged as sent.
    let tcp = std::net::TcpStream::connect(("127.0.0.1", s.lg.https)).expect("connect");
    let mut c = Tls::over(tcp.try_clone().expect("clone"), "cut.lab.test", &s.ca);
    c.send(
        b"POST /reset HTTP/1.1\r\nHost: cut.lab.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    // labgate connects to the backend before it reads the body.
    while cut.connections() == 0 {
        assert!(std::time::Instant::now() < deadline, "never forwarded");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    socket2::SockRef::from(&tcp)
        .set_linger(Some(std::time::Duration::ZERO))
        .expect("linger");
    drop((c, tcp));
    s.lg.wait_log("the line of the reset request", |l| l.contains("/reset - "));
    s.lg.wait_metric(
        "labgate_http_requests_total{service=\"cut\",class=\"none\"}",
        1,
        "the reset request was not counted as answered by nothing",
    );
}

#[test]
fn r21_pages_say_what_was_refused_and_why_and_the_log_has_what_they_promise() {
    let s = setup();
    let mut ws = Tls::connect(s.lg.https, "nows.lab.test", &s.ca);
    ws.send(b"GET /ws HTTP/1.1\r\nHost: nows.lab.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n");
    let got = String::from_utf8_lossy(&ws.read_to_close()).into_owned();
    assert!(got.starts_with("HTTP/1.1 403 "), "{got}");
    assert!(
        got.ends_with(
            "\r\n\r\n403 Forbidden: service nows does not accept WebSocket connections (websockets = false).\n"
        ),
        "{got}"
    );
    assert!(seen_at(&s, "/ws").is_empty(), "the backend never saw it");
    let got = raw(
        s.lg.https,
        "app.lab.test",
        &s.ca,
        b"GET / HTTP/1.1\r\nHost: app.lab.test\r\nX: a\0b\r\n\r\n",
    );
    assert!(
        got.ends_with(
            "400 Bad Request: the request head was refused: control character in the head.\n"
        ),
        "{got}"
    );
    // A page that sends the reader to the log: the log has the error.
    let r = curl_https(s.lg.https, "dead.lab.test", "/", &s.ca, &["--http1.1"]);
    assert_eq!(
        r.body,
        "502 Bad Gateway: the backend of service dead refused the connection or is unreachable (labgate's log has the error).\n"
    );
    s.lg.wait_log("the connect error", |l| {
        l.contains("cannot connect") && l.contains(&format!("127.0.0.1:{}", s.dead))
    });
}

/// A TCP connection to 127.0.0.1:`port` from the loopback address `from`.
fn connect_from(from: &str, port: u16) -> std::net::TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let local: std::net::SocketAddr = format!("{from}:0").parse().expect("address");
    socket.bind(&local.into()).expect("bind");
    let to: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    socket.connect(&to.into()).expect("connect");
    socket.into()
}

/// A TLS connection from `from` that has done one request and stays open, idle.
fn held(s: &Setup, from: &str) -> Tls {
    let mut c = Tls::over(connect_from(from, s.lg.https), "api.lab.test", &s.ca);
    c.send(b"HEAD /api/held HTTP/1.1\r\nHost: api.lab.test\r\n\r\n");
    let head = c.read_until(|b| b.windows(4).any(|w| w == b"\r\n\r\n"));
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    c
}

/// Whether labgate closes a new connection from `from` at once, before its handshake.
fn closed_at_accept(port: u16, from: &str) -> bool {
    use std::io::Read;
    let mut tcp = connect_from(from, port);
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .expect("timeout");
    // The handshake bound is 10 s: an EOF within 5 s is the refusal.
    matches!(tcp.read(&mut [0u8; 16]), Ok(0))
}

#[test]
fn r21_connections_beyond_the_bounds_of_an_address_or_a_listener_are_closed_at_accept() {
    let s = setup_with("[server]\nmax_connections = 6\nmax_connections_per_address = 4\n");
    let open = |n: u64| {
        s.lg.wait_metric(
            "labgate_http_connections_open{listener=\"https\"}",
            n,
            "the open connections were not counted",
        );
    };
    let mut lab: Vec<Tls> = (0..4).map(|_| held(&s, "127.0.0.1")).collect();
    open(4);
    assert!(
        closed_at_accept(s.lg.https, "127.0.0.1"),
        "a fifth from one address"
    );
    // Another address is still served, and may hold connections of its own.
    let r = curl_https(
        s.lg.https,
        "api.lab.test",
        "/api/other",
        &s.ca,
        &["--interface", "127.0.0.3"],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let _iot: Vec<Tls> = (0..2).map(|_| held(&s, "127.0.0.3")).collect();
    open(6);
    assert!(
        closed_at_accept(s.lg.https, "127.0.0.3"),
        "a seventh on the listener"
    );
    let refused = |why: &str| {
        s.lg.metric(&format!(
            "labgate_http_connections_refused_total{{listener=\"https\",reason=\"{why}\"}}"
        ))
    };
    assert_eq!((refused("address"), refused("listener")), (1, 1));
    // A closed connection frees its place.
    drop(lab.pop());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while s
        .lg
        .metric("labgate_http_connections_open{listener=\"https\"}")
        > 5
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the close was not counted"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let r = curl_https(s.lg.https, "api.lab.test", "/api/again", &s.ca, &[]);
    assert_eq!(r.status, 200, "{r:?}");
}

#[test]
fn every_executor_sends_the_backend_the_same_head_and_gives_the_same_refusal() {
    // The same requests through the HTTP/1.1 fast path, pingora's session (HTTP/1.0 goes
    // there) and the HTTP/2 path: the backend sees the same fields (modulo the body's framing
    // and the order of distinct names), and a refusal is the same page.
    let backend = Backend::start("diff");
    let one = OneService::start("diff.lab.test", &backend);
    // (curl offers ALPN "http/1.0" for HTTP/1.0, which labgate does not speak: no ALPN.)
    let executors = [
        (&["--http1.1"][..], "fast"),
        (&["--http1.0", "--no-alpn"][..], "session"),
        (&["--http2"][..], "h2"),
    ];
    let extra = [
        "-H",
        "X-Test: one",
        "-H",
        "X-Forwarded-For: 6.6.6.6",
        "-H",
        "Cf-Ray: forged",
        "-H",
        "Cookie: a=1; b=2",
        "-H",
        "Accept: text/plain",
    ];
    let mut seen = Vec::new();
    for (flags, name) in executors {
        for (path, body) in [
            ("/diff/get?x=1", None),
            ("/diff/post", Some("twelve bytes")),
        ] {
            let mut args = flags.to_vec();
            args.extend_from_slice(&extra);
            if let Some(b) = body {
                args.extend_from_slice(&["--data-binary", b]);
            }
            let r = curl_https(one.lg.https, "diff.lab.test", path, &one.ca, &args);
            assert_eq!(r.status, 200, "{name} {path}: {}", r.body);
            let got = backend
                .seen()
                .into_iter()
                .rfind(|s| s.path == path)
                .unwrap_or_else(|| panic!("{name} {path} reached the backend"));
            let mut fields: Vec<(String, String)> = got
                .headers
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
                .filter(|(n, _)| !matches!(n.as_str(), "content-length" | "transfer-encoding"))
                .collect();
            fields.sort();
            seen.push((name, path, got.method, fields, got.body));
        }
    }
    for (name, path, method, fields, body) in &seen[2..] {
        let (_, _, m, f, b) = seen
            .iter()
            .find(|s| s.0 == "fast" && s.1 == *path)
            .expect("the fast path's");
        assert_eq!(
            (method, fields, body),
            (m, f, b),
            "{name} {path} against the fast path"
        );
    }
    // A refusal (a Host the connection's certificate does not cover) is the same page
    // everywhere.
    let pages: Vec<(u16, String)> = executors
        .iter()
        .map(|(flags, _)| {
            let mut args = flags.to_vec();
            args.extend_from_slice(&["-H", "Host: nope.lab.test"]);
            let r = curl_https(one.lg.https, "diff.lab.test", "/", &one.ca, &args);
            (r.status, r.body)
        })
        .collect();
    assert_eq!(pages[0].0, 421, "{pages:?}");
    assert!(
        pages.iter().all(|p| *p == pages[0]),
        "the same refusal: {pages:?}"
    );
}
