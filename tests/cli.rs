//! End-to-end: `check`, `explain`, `version` and the built-in demo, as a user runs them.
#![allow(
    clippy::disallowed_macros,
    clippy::disallowed_methods,
    reason = "drives a real labgate from outside: deadlines on the wall clock, polls until they pass, prints what it saw"
)]

mod support;

use support::{ConfigDir, Labgate, bin, config_with_services};

#[test]
fn check_accepts_every_example_and_binds_nothing() {
    let examples: Vec<_> = std::fs::read_dir("deploy/examples")
        .expect("examples")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    assert!(examples.len() >= 2);
    let out = bin()
        .arg("check")
        .args(&examples)
        .output()
        .expect("run check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.matches(": ok:").count(), examples.len(), "{stdout}");
}

#[test]
fn check_exits_64_with_every_error_located() {
    let cfg = ConfigDir::new();
    cfg.write("good.toml", &config_with_services(&["app"]));
    let bad = config_with_services(&["app", "app"])
        .replace("cidrs = [\"10.1.0.0/16\"]", "cidrs = [\"10.1.0.1/16\"]");
    cfg.write("bad.toml", &bad);
    let out = bin()
        .arg("check")
        .arg(cfg.path("good.toml"))
        .arg(cfg.path("bad.toml"))
        .output()
        .expect("run check");
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "bad.toml:3:10: error: `network[0].cidrs[0]`: `10.1.0.1/16` has host bits set"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("is already served by service `app`"),
        "{stderr}"
    );
    assert!(stderr.contains("2 errors in the configuration"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("good.toml: ok") && stdout.contains("bad.toml: invalid"),
        "{stdout}"
    );
}

#[test]
fn check_of_a_missing_path_says_so() {
    let out = bin()
        .args(["check", "/nonexistent/labgate.toml"])
        .output()
        .expect("run check");
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/labgate.toml"));
}

fn explain_json(args: &[&str]) -> serde_json::Value {
    let out = bin()
        .arg("explain")
        .args(args)
        .arg("--json")
        .output()
        .expect("run explain");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("explain --json is JSON")
}

#[test]
fn explain_shows_the_whole_decision_chain() {
    let homelab = ["--config", "deploy/examples/homelab.toml"];
    let e = explain_json(
        &[
            &[
                "--from",
                "10.0.30.5",
                "https://Cloud.Lab.Example.com:443/apps/files",
            ][..],
            &homelab[..],
        ]
        .concat(),
    );
    assert_eq!(e["network"]["name"], "clients");
    assert_eq!(e["network"]["prefix"], "10.0.30.0/24");
    assert_eq!(e["host"], "cloud.lab.example.com");
    assert_eq!(e["path"], "/apps/files");
    assert_eq!(e["dns"]["outcome"], "answer");
    assert!(
        e["dns"]["details"].to_string().contains("10.0.30.2"),
        "{e:#}"
    );
    assert_eq!(e["route"]["outcome"], "service");
    assert_eq!(e["route"]["details"][0], "http://10.0.20.11:80");
    assert_eq!(e["policy"]["outcome"], "allow");
    assert_eq!(e["certificate"]["outcome"], "acme");

    let guest = explain_json(
        &[
            &["--from", "10.0.50.7", "cloud.lab.example.com"][..],
            &homelab[..],
        ]
        .concat(),
    );
    assert_eq!(guest["dns"]["outcome"], "nxdomain");
    assert_eq!(guest["policy"]["outcome"], "deny");

    let stranger = explain_json(
        &[
            &["--from", "192.0.2.1", "cloud.lab.example.com"][..],
            &homelab[..],
        ]
        .concat(),
    );
    assert!(stranger["network"].is_null());
    assert_eq!(stranger["dns"]["outcome"], "refused");
    assert_eq!(stranger["policy"]["outcome"], "deny");

    let outside = explain_json(&[&["--from", "10.0.30.5", "fritz.box"][..], &homelab[..]].concat());
    assert_eq!(outside["dns"]["outcome"], "forward");
    assert_eq!(outside["dns"]["details"][0], "udp://10.0.20.1:53");
    assert_eq!(outside["route"]["outcome"], "unknown_host");
    assert_eq!(outside["certificate"]["outcome"], "none");
}

#[test]
fn explain_text_defaults_to_the_demo() {
    let out = bin()
        .args(["explain", "--from", "127.0.0.3", "app.demo.test"])
        .output()
        .expect("run explain");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains("network   iot (longest matching prefix 127.0.0.3/32)"),
        "{text}"
    );
    assert!(
        text.contains("policy    DENY: `iot` is not in allow = [lab]: 403"),
        "{text}"
    );
    let bad = bin()
        .args(["explain", "--from", "127.0.0.1", "http://exa mple/"])
        .output()
        .expect("run explain");
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("has no valid host name"));
}

#[test]
fn version_names_the_stack() {
    let out = bin().arg("version").output().expect("run version");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(&format!("labgate {}", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
}

#[test]
fn the_demo_runs_with_its_local_ca_and_says_what_to_try() {
    let state = tempfile::tempdir().expect("tempdir");
    let lg = Labgate::start(&[], state.path());
    let out = lg.stdout.join("\n");
    assert!(out.contains("local CA certificate at"), "{out}");
    let ca = state.path().join("local-ca/ca.pem");
    assert!(
        std::fs::read_to_string(&ca)
            .expect("CA written")
            .contains("BEGIN CERTIFICATE")
    );
    // The readiness check makes no TLS connection: nothing to count as a failed handshake.
    let (_, metrics) = lg.admin("GET", "/metrics");
    let failures: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("labgate_tls_handshake_failures_total{"))
        .collect();
    assert!(
        failures.len() == 3 && failures.iter().all(|l| l.ends_with("} 0")),
        "{metrics}"
    );
    let c = lg.config();
    assert_eq!(c["services"], serde_json::json!(["app", "home-assistant"]));
    let (code, body) = lg.admin("POST", "/reload");
    assert_eq!(code, 200, "{body}");
    // HTTPS with a local-CA certificate that curl verifies. The app's backend is the admin
    // endpoint at its demo port, which this test moved: labgate answers 502 itself.
    let lab = support::https::curl_https(lg.https, "app.demo.test", "/healthz", &ca, &[]);
    assert_eq!(lab.status, 502, "{lab:?}");
    assert!(lab.body.contains("backend"), "{lab:?}");
    let guest = support::https::curl_https(
        lg.https,
        "app.demo.test",
        "/",
        &ca,
        &["--interface", "127.0.0.2"],
    );
    assert_eq!(guest.status, 403, "{guest:?}");
    assert!(guest.body.contains("network guest"), "{guest:?}");
}

/// Runs `labgate run` (the demo) with `args` and waits for it to exit: its status and stderr.
/// Panics if it still runs at the start deadline.
fn run_until_exit(
    args: &[&str],
    state_dir: &std::path::Path,
) -> (std::process::ExitStatus, String) {
    use std::io::Read as _;
    let mut child = bin()
        .arg("run")
        .args(args)
        .args(["--admin", "127.0.0.1:0", "--dns", "127.0.0.1:0"])
        .arg("--state-dir")
        .arg(state_dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start labgate");
    let deadline = std::time::Instant::now() + support::START_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("labgate was still running at the deadline");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("stderr text");
    (status, err)
}

#[test]
fn a_port_another_program_holds_stops_the_start_and_names_the_cause() {
    let state = tempfile::tempdir().expect("tempdir");
    // Listening, so that a connect probe would succeed: labgate must not take it for its own.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = holder.local_addr().expect("addr").port();
    let https = format!("127.0.0.1:{port}");
    let (status, err) = run_until_exit(&["--https", &https, "--http", "127.0.0.1:0"], state.path());
    assert!(!status.success(), "{err}");
    assert!(
        err.contains(&format!("cannot bind tcp {https} (listen.https)")),
        "{err}"
    );
    assert!(err.contains("another program listens there"), "{err}");
}

#[test]
fn the_default_dual_stack_addresses_both_serve_https() {
    // A port free on IPv4 and IPv6 alike: a dual-stack socket found it.
    let port = {
        let s = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::STREAM, None)
            .expect("IPv6 socket (the loopback needs ::1)");
        s.set_only_v6(false).expect("dual stack");
        s.bind(
            &"[::]:0"
                .parse::<std::net::SocketAddr>()
                .expect("addr")
                .into(),
        )
        .expect("bind");
        s.local_addr()
            .expect("addr")
            .as_socket()
            .expect("inet")
            .port()
    };
    let state = tempfile::tempdir().expect("tempdir");
    let v4 = format!("0.0.0.0:{port}");
    let v6 = format!("[::]:{port}");
    let _lg = Labgate::start(&["--https", &v4, "--https", &v6], state.path());
    let ca = state.path().join("local-ca/ca.pem");
    for at in ["127.0.0.1", "[::1]"] {
        let out = std::process::Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "30",
            ])
            .arg("--cacert")
            .arg(&ca)
            .args(["--resolve", &format!("app.demo.test:{port}:{at}")])
            .arg(format!("https://app.demo.test:{port}/"))
            .output()
            .expect("curl");
        let code = String::from_utf8_lossy(&out.stdout).into_owned();
        // The demo's answer (its backend or labgate's own page): TLS with labgate's CA worked.
        assert!(code.starts_with(['2', '3', '4', '5']), "{at}: {code}");
    }
}

#[test]
fn the_open_file_limit_is_raised_to_the_hard_limit() {
    let state = tempfile::tempdir().expect("tempdir");
    // prlimit (util-linux) sets the limits and then runs labgate in its own process.
    let lg = Labgate::start_under(&["prlimit", "--nofile=256:4096"], &[], state.path());
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", lg.pid())).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("the open files line");
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[3..5], ["4096", "4096"], "{line}");
}

/// A `[pair]` this machine is not in (or a `--node` that is not one of its nodes) stops the
/// start with exit 64 and what to do, before anything is bound.
#[test]
fn a_pair_this_machine_is_not_in_stops_the_start_with_the_fix() {
    let cfg = ConfigDir::new();
    cfg.write(
        "labgate.toml",
        "[[network]]\nname = \"lab\"\ncidrs = [\"127.0.0.0/8\"]\n\
         [pair]\nnodes = [\"192.0.2.11\", \"192.0.2.12\"]\nkey_file = \"key.pem\"\ntsig_file = \"pair.tsig\"\n",
    );
    cfg.write("key.pem", "unused\n");
    cfg.write("pair.tsig", "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0IQ==\n");
    let config = cfg.path("labgate.toml");
    let config = config.to_str().expect("utf-8");
    // (extra arguments, what the error says)
    let cases = [
        (
            &[][..],
            "neither of `[pair] nodes` (192.0.2.11, 192.0.2.12) is this machine's: say which node this is with `--node ADDRESS`",
        ),
        (
            &["--node", "192.0.2.13"][..],
            "`--node 192.0.2.13` is not one of `[pair] nodes` (192.0.2.11, 192.0.2.12): give one of them",
        ),
    ];
    for (extra, says) in cases {
        let args = [&["--config", config][..], extra].concat();
        let (status, err) = run_until_exit(&args, &cfg.path("state"));
        assert_eq!(status.code(), Some(64), "{err}");
        assert!(err.contains(says), "{err}");
    }
}
