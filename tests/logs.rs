//! `--log-format json`: every line labgate writes on stderr is a JSON object, and an access
//! line carries the request's parts as fields of their own.
#![allow(
    clippy::disallowed_macros,
    clippy::disallowed_methods,
    reason = "drives a real labgate from outside"
)]

mod support;

use support::backend::Backend;
use support::https::curl_https;
use support::{ConfigDir, Labgate, bin};

#[test]
fn json_logs_carry_the_access_line_as_fields() {
    let backend = Backend::start("app");
    let dir = ConfigDir::new();
    dir.write(
        "labgate.toml",
        &format!(
            "[[network]]\nname = \"lab\"\ncidrs = [\"127.0.0.1/32\"]\naddresses = [\"127.0.0.1\"]\n\
             [[zone]]\nname = \"lab.test\"\n\
             [[service]]\nhost = \"app.lab.test\"\nbackends = [\"http://127.0.0.1:{}\"]\nallow = [\"lab\"]\n",
            backend.port
        ),
    );
    let config = dir.path("labgate.toml");
    let lg = Labgate::start(
        &[
            "--config",
            config.to_str().expect("utf-8"),
            "--log-format",
            "json",
        ],
        &dir.path("state"),
    );
    let ca = dir.path("state/local-ca/ca.pem");
    let r = curl_https(lg.https, "app.lab.test", "/logged?q=1", &ca, &["--http1.1"]);
    assert_eq!(r.status, 200, "{r:?}");
    lg.wait_log("the access line", |l| l.contains("/logged?q=1"));

    let lines: Vec<serde_json::Value> = lg
        .log_text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let access = lines
        .iter()
        .find(|l| l["target"] == "labgate::access")
        .expect("an access line");
    assert_eq!(access["level"], "INFO", "{access}");
    assert_eq!(access["client"], "127.0.0.1", "{access}");
    assert_eq!(access["service"], "app", "{access}");
    assert_eq!(access["method"], "GET", "{access}");
    assert_eq!(
        access["host"],
        format!("app.lab.test:{}", lg.https),
        "{access}"
    );
    assert_eq!(access["path"], "/logged?q=1", "{access}");
    assert_eq!(access["status"], 200, "{access}");
    assert!(
        access["took_ms"].as_f64().is_some_and(|t| t >= 0.0),
        "{access}"
    );
    assert!(access.get("ray").is_none(), "no tunnel, no ray: {access}");
    assert!(
        access.get("message").is_none(),
        "fields, not a line: {access}"
    );
    // labgate's own lines too: a message, a level and a target.
    assert!(
        lines.iter().any(|l| l["target"] == "labgate::certs"
            && l["level"] == "INFO"
            && l["message"] == "app.lab.test: serving a certificate from labgate's local CA"),
        "{lines:#?}"
    );
}

#[test]
fn the_log_format_comes_from_the_environment_too() {
    let out = bin()
        .env("LABGATE_LOG_FORMAT", "yaml")
        .arg("version")
        .output()
        .expect("labgate version");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("invalid value 'yaml'") && stderr.contains("--log-format"),
        "{stderr}"
    );
}

#[test]
fn a_start_that_fails_says_why_in_json() {
    let dir = ConfigDir::new();
    dir.write("labgate.toml", "[[network]]\nname = \"lab\"\ncidrs = []\n");
    let out = bin()
        .args(["run", "--log-format", "json", "--config"])
        .arg(dir.path("labgate.toml"))
        .output()
        .expect("labgate run");
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let last = lines.last().expect("a line");
    assert_eq!(last["level"], "ERROR", "{stderr}");
    assert!(
        last["message"]
            .as_str()
            .is_some_and(|m| m.contains("network `lab` has no CIDRs")),
        "{stderr}"
    );
}
