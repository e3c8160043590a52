//! End-to-end: HTTP/2 on the HTTPS listener (TLS, ALPN h2), the real binary against raw frames
//! and real clients. The conformance and security set that any HTTP/2 executor behind labgate's
//! :443 must pass: today pingora's v2 session (the h2 crate), soon labgate's own.
//!
//! - Raw frames (`tests/h2/frames.py`, Debian's python3-h2 for HPACK): the cases h2spec walks
//!   through RFC 9113 and RFC 7541, plus what a reverse proxy must refuse or bound: malformed
//!   requests never reach the backend, header section limits answer 431 as HTTP/1.1 does,
//!   floods (rapid reset, CONTINUATION, HPACK bomb, SETTINGS, PING, WINDOW_UPDATE, empty DATA)
//!   are cut off or leave memory bounded while another client is served, a client stopping
//!   half way is held no longer than an HTTP/1.1 one, a slow reader does not stall its
//!   connection's other streams. And every response ends (`exchange`): labgate's page to a
//!   request whose body still comes gives the window back and resets the stream after a
//!   drain, a HEAD page has no body, a backend failing before its head gets a page and after
//!   it a reset, a request dropped on a reused backend connection is retried only when
//!   idempotent.
//! - Real clients: h2load, nghttp and curl over one connection (a browser-like mix of sizes),
//!   uploads streamed through, a reload while HTTP/2 connections are open (hyper), and a body
//!   the backend ends by closing reaching a slow reader whole (hyper).
//!
//! Cases today's labgate fails are in [`EXPECTED_FAILURES_TODAY`], each with what it does
//! instead; a case there must fail exactly so, and a case that starts passing must leave it.
#![allow(
    clippy::disallowed_macros,
    clippy::disallowed_methods,
    reason = "drives a real labgate from outside: deadlines on the wall clock, polls until they pass, prints what it saw"
)]

mod support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;

use support::backend::Backend;
use support::{ConfigDir, Labgate};

/// The service every case talks to.
const HOST: &str = "app.lab.test";

/// Debian's interpreter: python3-h2 installs into its dist-packages, which another `python3`
/// first on PATH (pyenv, a venv) does not see.
const PYTHON: &str = "/usr/bin/python3";

/// Longest a run of `frames.py` may take (its cases wait 5 s at most each; floods 10 s).
const FRAMES_TIMEOUT: Duration = Duration::from_secs(150);

/// Cases that today's labgate (its own HTTP/2 path, `proxy/src/h2_path` on `proxy/src/h2`)
/// fails, each with what it does instead, as `frames.py` reports it. A case listed here must
/// fail exactly so; when one is fixed, the test fails until the line goes. Every other case
/// must pass. None is left: against pingora's v2 session, which served h2 before, 32 cases
/// failed (HPACK errors as PROTOCOL_ERROR, frame sizes, closed streams, no 431, no bound on
/// a client stopping half way).
const EXPECTED_FAILURES_TODAY: &[(&str, &str)] = &[];

/// labgate with one service, `app.lab.test`, on `backend`.
struct Setup {
    lg: Labgate,
    ca: PathBuf,
    dir: ConfigDir,
}

fn config(backend: &Backend) -> String {
    format!(
        "[[network]]\nname = \"lab\"\ncidrs = [\"127.0.0.1/32\"]\naddresses = [\"127.0.0.1\"]\n\n\
         [[zone]]\nname = \"lab.test\"\n\n\
         [[service]]\nhost = \"{HOST}\"\nbackends = [\"http://127.0.0.1:{}\"]\nallow = [\"lab\"]\n",
        backend.port
    )
}

fn setup(backend: &Backend) -> Setup {
    let dir = ConfigDir::new();
    let lg = dir.start(&config(backend));
    let ca = dir.path("state/local-ca/ca.pem");
    Setup { lg, ca, dir }
}

/// `frames.py`, failing loudly when python3-h2 is missing.
fn frames_py() -> Command {
    let ok = Command::new(PYTHON)
        .args(["-c", "import h2, hpack"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{PYTHON} with python3-h2 is needed: apt-get install python3-h2 (scripts/test.sh does)"
    );
    let mut c = Command::new(PYTHON);
    c.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/h2/frames.py"));
    c
}

/// One case's outcome, as `frames.py` printed it.
#[derive(Debug)]
struct Outcome {
    case: String,
    group: String,
    pass: bool,
    observed: String,
    /// The `:path` its requests carry, and the `x-case` field's value.
    path: String,
    slug: String,
    /// False when its header section alone makes the request malformed.
    forwardable: bool,
    numbers: Value,
}

/// Runs the cases of `groups` against `s` and returns every outcome, one per listed case.
fn run_frames(s: &Setup, groups: &[&str], jobs: usize) -> Vec<Outcome> {
    let group_args: Vec<&str> = groups.iter().flat_map(|g| ["--group", g]).collect();
    let listed = frames_py()
        .args(["--port", "0", "--ca", "-", "--host", HOST, "--list"])
        .args(&group_args)
        .output()
        .expect("frames.py --list");
    let listed: BTreeSet<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(!listed.is_empty(), "frames.py lists no case for {groups:?}");
    let mut child = frames_py()
        .args(["--port", &s.lg.https.to_string(), "--ca"])
        .arg(&s.ca)
        .args(["--host", HOST, "--jobs", &jobs.to_string()])
        .args(["--pid", &s.lg.pid().to_string()])
        .args(&group_args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run frames.py");
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + FRAMES_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "frames.py ran past {FRAMES_TIMEOUT:?}; it printed:\n{}",
                reader.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = reader.join().expect("reader");
    assert!(status.success(), "frames.py failed ({status}):\n{text}");
    let outcomes: Vec<Outcome> = text
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            let field = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
            Outcome {
                case: field("case"),
                group: field("group"),
                pass: v["pass"].as_bool().unwrap_or(false),
                observed: field("observed"),
                path: field("path"),
                slug: field("slug"),
                forwardable: v["forwardable"].as_bool().unwrap_or(true),
                numbers: v["numbers"].clone(),
            }
        })
        .collect();
    let ran: BTreeSet<String> = outcomes.iter().map(|o| o.case.clone()).collect();
    assert_eq!(ran, listed, "every listed case reports once");
    assert_eq!(
        outcomes.len(),
        listed.len(),
        "every listed case reports once"
    );
    outcomes
}

/// Asserts every outcome: a pass, or the failure [`EXPECTED_FAILURES_TODAY`] lists. A case
/// whose request must never reach the backend fails when `backend` saw it.
fn assert_outcomes(mut outcomes: Vec<Outcome>, backend: &Backend) {
    let seen = backend.all_seen();
    let heads = backend.heads();
    outcomes.sort_by(|a, b| a.case.cmp(&b.case));
    let mut problems = Vec::new();
    for o in &mut outcomes {
        let forwarded = seen
            .iter()
            .any(|q| q.path == o.path || q.header("x-case") == [o.slug.as_str()]);
        if !o.forwardable && forwarded {
            o.pass = false;
            o.observed.push_str(" (reached the backend)");
        }
        if o.group == "security" {
            // What a flood cost the backend: the requests labgate forwarded (reset or not).
            let forwarded = heads.iter().filter(|p| **p == o.path).count();
            o.numbers["backend_requests"] = forwarded.into();
        }
        eprintln!(
            "{} {}: {}{}",
            if o.pass { "pass" } else { "FAIL" },
            o.case,
            o.observed,
            if o.numbers.as_object().is_some_and(|n| !n.is_empty()) {
                format!(" {}", o.numbers)
            } else {
                String::new()
            }
        );
        match EXPECTED_FAILURES_TODAY.iter().find(|(c, _)| *c == o.case) {
            Some(_) if o.pass => problems.push(format!(
                "{}: passes now; take it out of EXPECTED_FAILURES_TODAY",
                o.case
            )),
            Some((_, today)) if o.observed != *today => problems.push(format!(
                "{}: expected to fail with {today:?}, failed with {:?}",
                o.case, o.observed
            )),
            Some(_) => {}
            None if !o.pass => problems.push(format!("{}: {}", o.case, o.observed)),
            None => {}
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {} cases not as expected:\n{}",
        problems.len(),
        outcomes.len(),
        problems.join("\n")
    );
}

/// The listed failures of cases in `groups` that did not run: a renamed case must be renamed
/// in the list too.
fn assert_listed_cases_exist(groups: &[&str], outcomes: &[Outcome]) {
    for (case, _) in EXPECTED_FAILURES_TODAY {
        if groups.contains(&group_of(case)) {
            assert!(
                outcomes.iter().any(|o| o.case == *case),
                "EXPECTED_FAILURES_TODAY names {case:?}, which no longer exists"
            );
        }
    }
}

/// The `frames.py` group of a case, by its name.
fn group_of(case: &str) -> &str {
    match case.split('/').next().unwrap_or_default() {
        "9113" | "7541" => "conformance",
        other => other,
    }
}

/// Runs the groups' cases and checks their outcomes; labgate stays up for more checks. Also
/// how many cases saw labgate's GOAWAY of a connection error: of ENHANCE_YOUR_CALM (or were
/// floods to be cut off), and of any other code.
fn check_groups(groups: &[&str], jobs: usize) -> (Setup, u64, u64) {
    let backend = Backend::start("a");
    let s = setup(&backend);
    let outcomes = run_frames(&s, groups, jobs);
    assert_listed_cases_exist(groups, &outcomes);
    let goaway = |calm: bool| {
        let seen = outcomes.iter().filter(|o| {
            // A flood's outcome is its verdict (how soon it was cut off), not the GOAWAY.
            (calm && o.group == "security" && o.case.contains("-> cut off"))
                || o.observed
                    .strip_prefix("GOAWAY ")
                    .is_some_and(|code| code != "NO_ERROR" && (code == "ENHANCE_YOUR_CALM") == calm)
        });
        seen.count() as u64
    };
    let (calm, other) = (goaway(true), goaway(false));
    assert_outcomes(outcomes, &backend);
    (s, calm, other)
}

/// The connections that ended for `reason`.
fn ended(reason: &str) -> String {
    format!("labgate_http2_connections_ended_total{{reason=\"{reason}\"}}")
}

#[test]
fn every_response_ends_pages_while_a_body_comes_backend_failures_and_retries() {
    let backend = Backend::start("a");
    // The retry case's backend: its idle connections are for that case alone (the cases run
    // at once, and another request could take the pooled connection it means to reuse).
    let dropping = Backend::start("r");
    // A closed port: the service at /down gets its connections refused, labgate answers 502.
    let refusing = support::free_port();
    let service = |name: &str, path: &str, port: u16, extra: &str| {
        format!(
            "\n[[service]]\nname = \"{name}\"\nhost = \"{HOST}\"\npaths = [\"{path}\"]\n\
             backends = [\"http://127.0.0.1:{port}\"]\nallow = [\"lab\"]\n{extra}"
        )
    };
    let dir = ConfigDir::new();
    let lg = dir.start(&format!(
        "{}{}{}{}",
        config(&backend),
        service("down", "/down", refusing, ""),
        service(
            "limited",
            "/answer-first",
            backend.port,
            "max_body = \"64K\"\n"
        ),
        service("dropping", "/drop-if-reused", dropping.port, ""),
    ));
    let ca = dir.path("state/local-ca/ca.pem");
    let s = Setup { lg, ca, dir };
    let groups = ["exchange"];
    let outcomes = run_frames(&s, &groups, 8);
    assert_listed_cases_exist(&groups, &outcomes);
    assert_outcomes(outcomes, &backend);
    // The retry case: the GET reached the backend twice (dropped on the reused connection,
    // answered on a new one), the POST once (it may have had a side effect).
    let times = |path: &str| dropping.seen().iter().filter(|q| q.path == path).count();
    assert_eq!(
        dropping.closes("/drop-if-reused/get"),
        1,
        "the GET went over a reused backend connection, which the backend dropped"
    );
    assert_eq!(
        times("/drop-if-reused/get"),
        2,
        "an idempotent request is retried"
    );
    assert_eq!(
        times("/drop-if-reused/post"),
        1,
        "a POST is never sent twice: {:#?}",
        dropping.seen()
    );
}

#[test]
fn conformance_rfc9113_and_rfc7541_cases_and_header_limits() {
    let (s, calm, other) = check_groups(&["conformance", "limits"], 16);
    // Every connection error a client saw is counted, by kind (a case may see a bare close,
    // which h2spec accepts too, so the counters may be higher).
    assert!(other > 0 && calm > 0, "the cases see both kinds");
    s.lg.wait_metric(
        &ended("protocol_error"),
        other,
        "protocol errors not counted",
    );
    s.lg.wait_metric(&ended("over_limit"), calm, "a limit's GOAWAY not counted");
}

#[test]
fn floods_are_cut_off_or_bounded_and_other_clients_are_served() {
    // One at a time: each measures labgate's memory and CPU.
    let (s, calm, other) = check_groups(&["security"], 1);
    // Each flood cut off with ENHANCE_YOUR_CALM is counted: what an operator under attack
    // looks for; none of them as a protocol error.
    assert!(calm > 0);
    s.lg.wait_metric(&ended("over_limit"), calm, "floods were not counted");
    assert_eq!(s.lg.metric(&ended("protocol_error")), other);
}

#[test]
fn a_client_stopping_half_way_is_held_no_longer_than_an_http1_one() {
    let (s, _, _) = check_groups(&["timeouts"], 8);
    // A client that stops half-way (preface, frame, header block, reading) runs out a bound.
    s.lg.wait_metric(&ended("timeout"), 4, "the timeouts were not counted");
}

/// Runs `command` to its end within `limit`, or kills it and panics.
fn output_within(mut command: Command, limit: Duration) -> std::process::Output {
    let what = format!("{command:?}");
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let (mut out, mut err) = (
        child.stdout.take().expect("stdout"),
        child.stderr.take().expect("stderr"),
    );
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} ran past {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    std::process::Output {
        status,
        stdout: out.join().expect("stdout"),
        stderr: err.join().expect("stderr"),
    }
}

/// A client program from nghttp2-client, failing loudly when it is missing.
fn nghttp2_tool(name: &str) -> Command {
    let found = Command::new(name)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{name} is needed: apt-get install nghttp2-client (scripts/test.sh does)"
    );
    Command::new(name)
}

/// Response sizes of a page's worth of requests, 100 KiB and more among them.
const MIX: [usize; 6] = [200, 4096, 16_384, 102_400, 262_144, 1 << 20];

#[test]
fn real_clients_multiplex_a_browser_like_mix_over_one_connection() {
    let backend = Backend::start("a");
    let s = setup(&backend);
    let port = s.lg.https;

    // h2load: 60 requests of the mix, 30 streams at a time on one connection.
    let uris = s.dir.path("uris.txt");
    let list: String = MIX
        .iter()
        .map(|n| format!("https://{HOST}:{port}/bytes/{n}\n"))
        .collect();
    std::fs::write(&uris, list).expect("uris");
    let mut h2load = nghttp2_tool("h2load");
    h2load
        .args(["-n", "60", "-c", "1", "-m", "30", "-i"])
        .arg(&uris)
        .arg(format!("--connect-to=127.0.0.1:{port}"));
    let out = output_within(h2load, Duration::from_secs(60));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "h2load: {text}");
    assert!(
        text.contains("requests: 60 total, 60 started, 60 done, 60 succeeded, 0 failed"),
        "{text}"
    );
    assert!(text.contains("status codes: 60 2xx"), "{text}");
    let data = 10 * MIX.iter().sum::<usize>();
    assert!(
        text.contains(&format!("({data}) data")),
        "h2load got every body whole ({data} octets): {text}"
    );

    // nghttp: the mix twice, every URI at once on one connection; its HAR has what came.
    let har = s.dir.path("mix.har");
    let mut nghttp = nghttp2_tool("nghttp");
    nghttp
        .args(["-n", "-m", "2", "-H"])
        .arg(format!(":authority: {HOST}:{port}"))
        .arg(format!("--har={}", har.display()))
        .args(
            MIX.iter()
                .map(|n| format!("https://127.0.0.1:{port}/bytes/{n}")),
        );
    let out = output_within(nghttp, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "nghttp: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let har: Value = serde_json::from_slice(&std::fs::read(&har).expect("har")).expect("HAR");
    let mut got: Vec<(u64, u64)> = har["log"]["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            (
                e["response"]["status"].as_u64().unwrap_or(0),
                e["response"]["content"]["size"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    got.sort_unstable();
    let mut want: Vec<(u64, u64)> = MIX.iter().flat_map(|n| [(200, *n as u64); 2]).collect();
    want.sort_unstable();
    assert_eq!(got, want, "nghttp: every stream 200 with its whole body");

    // curl: the mix in parallel, multiplexed.
    let mut curl = Command::new("curl");
    curl.args(["-s", "--http2", "--parallel", "--parallel-max", "16"])
        .args(["--max-time", "60", "--cacert"])
        .arg(&s.ca)
        .args(["--resolve", &format!("{HOST}:{port}:127.0.0.1")])
        .args([
            "-w",
            "%{http_code} %{http_version} %{size_download} %{num_connects}\n",
        ]);
    for n in MIX {
        curl.args([
            "-o",
            "/dev/null",
            &format!("https://{HOST}:{port}/bytes/{n}"),
        ]);
    }
    let out = output_within(curl, Duration::from_secs(60));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut got: Vec<&str> = text
        .lines()
        .map(|l| l.rsplit_once(' ').map_or(l, |(a, _)| a))
        .collect();
    got.sort_unstable();
    let mut want: Vec<String> = MIX.iter().map(|n| format!("200 2 {n}")).collect();
    want.sort();
    assert_eq!(got, want, "curl --http2 --parallel: {text}");
    let connects: u32 = text
        .lines()
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u32>().ok())
        .sum();
    assert_eq!(
        connects, 1,
        "curl multiplexed every transfer on one connection: {text}"
    );

    // Raw frames: a stream its client does not read (no WINDOW_UPDATE) stalls no other.
    let outcomes = run_frames(&s, &["flow"], 1);
    assert_outcomes(outcomes, &backend);
}

#[test]
fn uploads_stream_through_over_http2() {
    let backend = Backend::start("a");
    let s = setup(&backend);
    let port = s.lg.https;
    let file = s.dir.path("upload.bin");
    let size = 8 << 20;
    std::fs::write(&file, vec![b'u'; size]).expect("upload file");
    let body_len = |reply: &str| -> u64 {
        let v: Value = serde_json::from_str(reply).unwrap_or_else(|e| panic!("{e}: {reply}"));
        v["body_len"].as_u64().unwrap_or(0)
    };
    let curl = |extra: &[&str], path: &str| {
        let mut c = Command::new("curl");
        c.args(["-s", "--http2", "--max-time", "60", "--cacert"])
            .arg(&s.ca)
            .args(["--resolve", &format!("{HOST}:{port}:127.0.0.1")])
            .args(["-w", "\n%{http_code} %{http_version}"])
            .args(extra)
            .arg(format!("https://{HOST}:{port}{path}"));
        c
    };

    // 8 MiB with a content-length: far past the 64 KiB windows, so labgate must open them as
    // it forwards.
    let at = format!("@{}", file.display());
    let out = output_within(
        curl(&["--data-binary", &at], "/upload/sized"),
        Duration::from_secs(60),
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (reply, status) = text.rsplit_once('\n').unwrap_or_default();
    assert_eq!(status, "200 2", "{text}");
    assert_eq!(body_len(reply), size as u64, "{reply}");

    // 4 MiB of unknown length, written to curl as it sends (no content-length).
    let mut c = curl(&["-T", "-"], "/upload/streamed");
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl");
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || {
        for _ in 0..64 {
            stdin.write_all(&[b's'; 64 * 1024]).expect("feed curl");
        }
    });
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    writer.join().expect("writer");
    let text = reader.join().expect("reader");
    assert!(child.wait().expect("curl").success(), "{text}");
    let (reply, status) = text.rsplit_once('\n').unwrap_or_default();
    assert_eq!(status, "200 2", "{text}");
    assert_eq!(body_len(reply), 4 << 20, "{reply}");
    let streamed = backend
        .seen()
        .into_iter()
        .find(|q| q.path == "/upload/streamed")
        .expect("the streamed upload reached the backend");
    assert_eq!(streamed.method, "PUT");
    assert!(streamed.body.iter().all(|b| *b == b's'));

    // h2load: eight 1 MiB uploads at once on one connection.
    let small = s.dir.path("one.bin");
    std::fs::write(&small, vec![b'h'; 1 << 20]).expect("file");
    let mut h2load = nghttp2_tool("h2load");
    h2load
        .args(["-n", "8", "-c", "1", "-m", "8", "-d"])
        .arg(&small)
        .arg(format!("--connect-to=127.0.0.1:{port}"))
        .arg(format!("https://{HOST}:{port}/upload/h2load"));
    let out = output_within(h2load, Duration::from_secs(60));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("status codes: 8 2xx"), "{text}");
    let uploads: Vec<usize> = backend
        .seen()
        .into_iter()
        .filter(|q| q.path == "/upload/h2load")
        .map(|q| q.body.len())
        .collect();
    assert_eq!(uploads, [1 << 20; 8], "every upload whole at the backend");
}

/// The bodies of this file's hyper requests.
type Body = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

/// A request body fed through a channel, for an upload still going when something happens.
struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

/// An HTTP/2 connection to labgate (hyper over rustls, ALPN h2).
async fn h2_connect(s: &Setup) -> hyper::client::conn::http2::SendRequest<Body> {
    h2_connect_with(
        s,
        &hyper::client::conn::http2::Builder::new(TokioExecutor::new()),
    )
    .await
}

/// [`h2_connect`] with hyper's HTTP/2 settings in `builder` (windows, say).
async fn h2_connect_with(
    s: &Setup,
    builder: &hyper::client::conn::http2::Builder<TokioExecutor>,
) -> hyper::client::conn::http2::SendRequest<Body> {
    let mut config = support::https::client_config(&s.ca);
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", s.lg.https))
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from(HOST).expect("name");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (send, conn) = builder
        .handshake(TokioIo::new(tls))
        .await
        .expect("h2 handshake");
    tokio::spawn(conn);
    send
}

/// Sends a request and reads the whole answer: (status, body as JSON).
async fn exchange(
    mut send: hyper::client::conn::http2::SendRequest<Body>,
    port: u16,
    method: &str,
    path: &str,
    body: Body,
) -> (u16, Value) {
    let request = hyper::Request::builder()
        .method(method)
        .uri(format!("https://{HOST}:{port}{path}"))
        .body(body)
        .expect("request");
    let response = send.send_request(request).await.expect("response");
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, json)
}

fn empty() -> Body {
    http_body_util::Empty::new().boxed()
}

#[test]
fn a_reload_with_http2_connections_open_routes_new_streams_anew_and_lets_old_ones_finish() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let s = setup(&a);
    let port = s.lg.https;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let wait_for_head = |backend: &Backend, path: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !backend.heads().iter().any(|p| p == path) {
            assert!(
                Instant::now() < deadline,
                "{path} never reached the backend"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let send = rt.block_on(h2_connect(&s));
    // In flight across the reload: a request the backend holds (until a second request of its
    // gate comes), and an upload of which only the first part is sent.
    let held = rt.spawn(exchange(
        send.clone(),
        port,
        "GET",
        "/gate/reload/2",
        empty(),
    ));
    let (feed, rx) = tokio::sync::mpsc::channel(4);
    let upload = rt.spawn(exchange(
        send.clone(),
        port,
        "POST",
        "/upload/across",
        ChannelBody(rx).boxed(),
    ));
    rt.block_on(feed.send(Bytes::from(vec![b'1'; 256 * 1024])))
        .expect("first part");
    wait_for_head(&a, "/gate/reload/2");
    wait_for_head(&a, "/upload/across");

    s.dir.write("labgate.toml", &config(&b));
    s.lg.wait_config("the reload", |c| support::generation(c) == 2);

    let (after, new_conn) = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(30), async {
            let after = exchange(send.clone(), port, "GET", "/after", empty()).await;
            let new_conn = exchange(h2_connect(&s).await, port, "GET", "/new", empty()).await;
            (after, new_conn)
        })
        .await
        .expect("answers within 30 s")
    });
    assert_eq!(after.0, 200, "{after:?}");
    assert_eq!(
        after.1["backend"], "b",
        "a new stream on the open connection takes the new route: {after:?}"
    );
    assert_eq!(new_conn.1["backend"], "b", "{new_conn:?}");

    // The upload goes on to its end, to the backend it began with.
    rt.block_on(async {
        for _ in 0..7 {
            feed.send(Bytes::from(vec![b'2'; 256 * 1024]))
                .await
                .expect("more");
        }
    });
    drop(feed);
    // The second request of the gate, straight to backend a, releases the held one.
    let mut direct = std::net::TcpStream::connect(("127.0.0.1", a.port)).expect("backend a");
    direct
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    direct
        .write_all(b"GET /gate/reload/2 HTTP/1.1\r\nHost: a\r\n\r\n")
        .expect("release");
    // Its answer is JSON: read to the closing brace (the backend keeps the connection).
    let mut released = Vec::new();
    let mut buf = [0u8; 4096];
    while !released.ends_with(b"}") {
        match direct.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => released.extend_from_slice(&buf[..n]),
        }
    }
    let released = String::from_utf8_lossy(&released);
    assert!(released.starts_with("HTTP/1.1 200"), "{released}");
    let (held, upload) = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(30), async {
            (held.await.expect("held"), upload.await.expect("upload"))
        })
        .await
        .expect("the in-flight streams end within 30 s")
    });
    assert_eq!(held.0, 200, "{held:?}");
    assert_eq!(
        held.1["backend"], "a",
        "the held stream finishes where it began: {held:?}"
    );
    assert_eq!(upload.0, 200, "{upload:?}");
    assert_eq!(upload.1["backend"], "a", "{upload:?}");
    assert_eq!(
        upload.1["body_len"],
        2 << 20,
        "the whole upload: {upload:?}"
    );
    // And the connection still serves.
    let last = rt.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(30),
            exchange(send.clone(), port, "GET", "/still", empty()),
        )
        .await
        .expect("within 30 s")
    });
    assert_eq!((last.0, last.1["backend"].as_str()), (200, Some("b")));
}

#[test]
fn a_body_ended_by_the_backend_closing_reaches_a_slow_reader_whole() {
    // Each body is a little over the client's stream window: labgate reads all of it, and the
    // backend's close, while the last bytes wait for the client to read. Before the fix the
    // close ended the stream at once: a close-delimited body went out cut short (END_STREAM
    // after 65 535 octets), a sized one was reset as "closed mid-answer".
    let backend = Backend::start("a");
    let s = setup(&backend);
    let port = s.lg.https;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut slow = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
    slow.initial_stream_window_size(65_535)
        .initial_connection_window_size(1 << 20)
        .adaptive_window(false);
    for (path, len) in [("/close/70000", 70_000), ("/close-sized/70535", 70_535)] {
        rt.block_on(async {
            let mut send = h2_connect_with(&s, &slow).await;
            let request = hyper::Request::get(format!("https://{HOST}:{port}{path}"))
                .body(empty())
                .expect("request");
            let response =
                tokio::time::timeout(Duration::from_secs(30), send.send_request(request))
                    .await
                    .unwrap_or_else(|_| panic!("{path}: no response head within 30 s"))
                    .expect("response");
            assert_eq!(response.status(), 200, "{path}");
            // The client reads nothing (hyper opens the window only as the body is read)
            // until labgate holds the rest and has the close in front of it.
            let deadline = Instant::now() + Duration::from_secs(20);
            while !backend.closed_after_and_read(path) {
                assert!(
                    Instant::now() < deadline,
                    "{path}: labgate did not read the backend's bytes and close within 20 s"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // Now it reads, frame by frame: the window opens in steps.
            let mut body = response.into_body();
            let mut got = 0;
            loop {
                let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
                    .await
                    .unwrap_or_else(|_| panic!("{path}: the body stalled after {got} octets"));
                match frame {
                    None => break,
                    Some(Ok(f)) => got += f.data_ref().map_or(0, Bytes::len),
                    Some(Err(e)) => panic!("{path}: the body failed after {got} octets: {e:?}"),
                }
            }
            assert_eq!(got, len, "{path}: the whole body, then its end");
        });
    }
}
