//! End-to-end: the monitoring files in `deploy/` against the real tools. The alert rules pass
//! `promtool check rules` and their own `promtool test rules`; Debian's Prometheus scraping a
//! running labgate (DNS, HTTPS, an ACME certificate from Pebble) has data for every query of
//! the Grafana dashboard and every metric an alert rule reads.
#![allow(
    clippy::disallowed_macros,
    clippy::disallowed_methods,
    reason = "drives real programs from outside: deadlines on the wall clock, polls until they pass, prints what it saw"
)]

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::acme::{Pebble, wait_certificate};
use support::backend::Backend;
use support::{ConfigDir, Labgate, Unbound, dig, free_port};

/// How long Prometheus may take to start and scrape labgate.
const PROMETHEUS_TIMEOUT: Duration = Duration::from_secs(90);
/// How long, after three scrapes, a query may stay empty before the test fails (every series
/// labgate exports is in each scrape; 30 s is 30 more of them).
const DATA_TIMEOUT: Duration = Duration::from_secs(30);

/// Values for the dashboard's template variables in its queries.
const VARIABLES: [(&str, &str); 3] = [
    ("$__rate_interval", "1m"),
    ("${instance}", ".*"),
    ("$instance", ".*"),
];

/// A file under `deploy/`.
fn deploy(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(rel)
}

/// Runs promtool with `args`; panics with its output unless it succeeds.
fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .output()
        .expect("promtool is needed: apt-get install prometheus (scripts/test.sh does)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    let rules = deploy("prometheus/labgate-rules.yml");
    let text = promtool(&["check", "rules", rules.to_str().expect("utf-8")]);
    assert!(text.contains("SUCCESS"), "{text}");
    let tests = deploy("prometheus/labgate-rules.test.yml");
    let text = promtool(&["test", "rules", tests.to_str().expect("utf-8")]);
    assert!(text.contains("SUCCESS"), "{text}");
    // Every alert has test cases: one where it fires and one where it must stay quiet.
    let rules = std::fs::read_to_string(&rules).expect("rules");
    let cases = std::fs::read_to_string(&tests).expect("rule tests");
    let evals: Vec<(&str, bool)> = cases
        .split("- eval_time:")
        .skip(1)
        .filter_map(|case| {
            let alert = case.split("alertname: ").nth(1)?.lines().next()?.trim();
            Some((alert, !case.contains("exp_alerts: []")))
        })
        .collect();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(alerts.len() >= 12, "{alerts:?}");
    for alert in alerts {
        for fires in [true, false] {
            assert!(
                evals.contains(&(alert, fires)),
                "{alert}: no rule test where it {}",
                if fires { "fires" } else { "must stay quiet" }
            );
        }
    }
}

#[test]
fn every_dashboard_query_and_every_rule_metric_has_data_from_a_running_labgate() {
    let upstream = Unbound::start(&["example.test."], &["www.example.test. 60 IN A 192.0.2.1"]);
    let backend = Backend::start("app");
    // Pebble asks labgate's DNS, on a port chosen before labgate starts, for the challenge.
    let dns = free_port();
    let pebble = Pebble::start(&format!("127.0.0.1:{dns}"));
    let cfg = ConfigDir::new();
    cfg.write(
        "labgate.toml",
        &config(&pebble, upstream.port, free_port(), backend.port),
    );
    let path = cfg.path("labgate.toml");
    let dns_arg = format!("127.0.0.1:{dns}");
    let lg = Labgate::start(
        &["--config", path.to_str().expect("utf-8"), "--dns", &dns_arg],
        &cfg.path("state"),
    );
    wait_certificate(&lg);
    traffic(&lg, dns);

    let prometheus = Prometheus::start(lg.admin);
    prometheus.wait_scrapes(3);
    let exported = lg.admin("GET", "/metrics").1;

    // Every query of every panel, with its variables set.
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(deploy("grafana/labgate.json")).expect("dashboard file"),
    )
    .expect("the dashboard is JSON");
    let mut queries = Vec::new();
    collect_queries(&dashboard["panels"], "", &mut queries);
    assert!(queries.len() >= 40, "only {} queries found", queries.len());
    for q in &queries {
        assert!(
            !q.expr.contains('$'),
            "{}: a variable left in {}",
            q.what,
            q.expr
        );
    }
    let mut checked: Vec<Query> = queries;
    // The instance variable's values come from labgate_build_info's instance label.
    let variable = &dashboard["templating"]["list"][1];
    assert_eq!(
        variable["definition"], "label_values(labgate_build_info, instance)",
        "{variable:#}"
    );
    checked.push(Query {
        what: "variable instance".to_owned(),
        expr: "labgate_build_info".to_owned(),
        labels: vec!["instance".to_owned()],
    });

    // Every metric an alert rule reads, from the rules Prometheus loaded.
    let rules = prometheus.rule_expressions();
    assert!(
        rules.len() >= 12,
        "only {} rules loaded: {rules:?}",
        rules.len()
    );
    for (alert, expr) in &rules {
        for metric in metric_names(expr) {
            checked.push(Query {
                what: format!("rule {alert}"),
                expr: format!("group({{__name__=\"{metric}\"}})"),
                labels: Vec::new(),
            });
        }
    }

    let empty = prometheus.wait_all_have_data(&checked);
    assert!(
        empty.is_empty(),
        "no data for {} of {} queries (a metric or label labgate does not export?):\n{}\n\
         labgate's /metrics:\n{exported}",
        empty.len(),
        checked.len(),
        empty.join("\n")
    );
    eprintln!("{} queries had data", checked.len());
}

/// One network on loopback, an internal zone with an ACME certificate (the builtin provider:
/// labgate's own DNS answers Pebble), a service with a real backend, an upstream that answers
/// and a conditional forwarder whose upstream is dead (SERVFAIL, upstream failures).
fn config(pebble: &Pebble, upstream: u16, dead: u16, backend: u16) -> String {
    format!(
        r#"
[dns]
upstreams = ["udp://127.0.0.1:{upstream}"]

[[forward]]
domain = "dead.test"
upstreams = ["udp://127.0.0.1:{dead}"]

[[network]]
name = "lab"
cidrs = ["127.0.0.1/32"]
addresses = ["127.0.0.1"]

[[zone]]
name = "lab.example.test"

[[service]]
host = "app.lab.example.test"
backends = ["http://127.0.0.1:{backend}"]
allow = ["lab"]

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

/// DNS queries (an internal name, a forwarded one twice, one to the dead forwarder) and
/// HTTPS requests, so the DNS and HTTP series have samples.
fn traffic(lg: &Labgate, dns: u16) {
    for _ in 0..3 {
        let d = dig(dns, "127.0.0.1", &["app.lab.example.test", "A"]);
        assert_eq!(d.status, "NOERROR", "{}", d.raw);
    }
    for _ in 0..2 {
        let d = dig(dns, "127.0.0.1", &["www.example.test", "A"]);
        assert_eq!(d.answer.len(), 1, "{}", d.raw);
    }
    let d = dig(dns, "127.0.0.1", &["x.dead.test", "A"]);
    assert_eq!(d.status, "SERVFAIL", "{}", d.raw);
    let resolve = format!("app.lab.example.test:{}:127.0.0.1", lg.https);
    let url = format!("https://app.lab.example.test:{}/", lg.https);
    for _ in 0..3 {
        let out = Command::new("curl")
            .args([
                "-sk",
                "--max-time",
                "30",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ])
            .args(["--resolve", &resolve, &url])
            .output()
            .expect("curl is needed: apt-get install curl (scripts/test.sh does)");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    }
}

/// A query that must have data.
#[derive(Debug)]
struct Query {
    /// The panel or rule it is from.
    what: String,
    /// PromQL, the template variables set.
    expr: String,
    /// Labels every series of the result must have: the ones its legend shows.
    labels: Vec<String>,
}

/// Every `expr` of the panels, rows' panels included, with the labels its legend names.
fn collect_queries(panels: &serde_json::Value, row: &str, out: &mut Vec<Query>) {
    for panel in panels.as_array().into_iter().flatten() {
        let title = format!("{row}{}", panel["title"].as_str().unwrap_or("?"));
        for target in panel["targets"].as_array().into_iter().flatten() {
            let mut expr = target["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("{title}: a target without expr: {target}"))
                .to_owned();
            for (name, value) in VARIABLES {
                expr = expr.replace(name, value);
            }
            let legend = target["legendFormat"].as_str().unwrap_or("");
            let labels = legend
                .split("{{")
                .skip(1)
                .filter_map(|l| Some(l.split_once("}}")?.0.trim().to_owned()))
                .collect();
            out.push(Query {
                what: title.clone(),
                expr,
                labels,
            });
        }
        collect_queries(&panel["panels"], &format!("{title} / "), out);
    }
}

/// The metric names in a PromQL expression: identifiers outside strings and label matchers
/// that are labgate's (`labgate_`), the process's (`process_`), or `up`.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let (mut quoted, mut braces) = (false, 0u32);
    let mut word = String::new();
    for c in expr.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
            continue;
        }
        if !quoted
            && braces == 0
            && (word.starts_with("labgate_") || word.starts_with("process_") || word == "up")
            && !names.contains(&word)
        {
            names.push(word.clone());
        }
        word.clear();
        match c {
            '"' => quoted = !quoted,
            '{' if !quoted => braces += 1,
            '}' if !quoted => braces = braces.saturating_sub(1),
            _ => {}
        }
    }
    names
}

/// Debian's Prometheus on a temporary directory, scraping labgate's admin endpoint every
/// second and loading the alert rules; killed on drop.
struct Prometheus {
    child: Child,
    /// Its HTTP address, from its own log.
    addr: String,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts it on `127.0.0.1:0` (it binds the port itself and logs the one it got, so no
    /// other process can take it in between) and waits until it is ready.
    fn start(admin: std::net::SocketAddr) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {rules}\n\
                 scrape_configs:\n  - job_name: labgate\n    static_configs:\n      - targets: ['{admin}']\n",
                rules = deploy("prometheus/labgate-rules.yml").display()
            ),
        )
        .expect("write prometheus.yml");
        let mut child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg("--web.listen-address=127.0.0.1:0")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("prometheus is needed: apt-get install prometheus (scripts/test.sh does)");
        let stderr = child.stderr.take().expect("stderr");
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let kept = std::sync::Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                // `msg="Listening on" address=127.0.0.1:PORT`: the port it bound.
                if line.contains("msg=\"Listening on\"")
                    && let Some(addr) = line.split("address=").nth(1)
                {
                    let _ = tx.send(addr.trim().to_owned());
                }
                kept.lock().expect("log").push(line);
            }
        });
        let addr = rx.recv_timeout(PROMETHEUS_TIMEOUT).unwrap_or_else(|_| {
            panic!("prometheus did not start: {:#?}", log.lock().expect("log"))
        });
        let prometheus = Self {
            child,
            addr,
            log,
            _dir: dir,
        };
        prometheus.wait_ready();
        prometheus
    }

    /// Waits for `/-/ready`: it listens before its storage is open, answering 503 until then.
    fn wait_ready(&self) {
        let deadline = Instant::now() + PROMETHEUS_TIMEOUT;
        loop {
            let (status, _) = support::curl("GET", &format!("http://{}/-/ready", self.addr));
            if status == 200 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus never ready (last status {status}): {:#?}",
                self.log.lock().expect("log")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `/api/v1/query` of `expr` now: the result vector. Panics unless Prometheus accepts it.
    fn query(&self, expr: &str) -> Vec<serde_json::Value> {
        let body = self.get("/api/v1/query", &[expr]);
        assert_eq!(body["status"], "success", "{expr}: {body:#}");
        body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The alert rules Prometheus loaded, as (name, expression); panics unless every one is
    /// healthy.
    fn rule_expressions(&self) -> Vec<(String, String)> {
        let body = self.get("/api/v1/rules", &[]);
        let mut rules = Vec::new();
        for group in body["data"]["groups"].as_array().into_iter().flatten() {
            for rule in group["rules"].as_array().into_iter().flatten() {
                assert_ne!(rule["health"], "err", "{rule:#}");
                // What every alert must carry: a `for:`, a severity, and what to do next.
                assert!(rule["duration"].as_f64() > Some(0.0), "no for: {rule:#}");
                let severity = rule["labels"]["severity"].as_str().unwrap_or("");
                assert!(
                    ["warning", "critical"].contains(&severity),
                    "no severity: {rule:#}"
                );
                for annotation in ["summary", "description"] {
                    let text = rule["annotations"][annotation].as_str().unwrap_or("");
                    assert!(text.len() > 20, "no {annotation}: {rule:#}");
                }
                rules.push((
                    rule["name"].as_str().unwrap_or("?").to_owned(),
                    rule["query"].as_str().unwrap_or_default().to_owned(),
                ));
            }
        }
        rules
    }

    /// Waits until labgate was scraped successfully `n` times in a row.
    fn wait_scrapes(&self, n: u32) {
        let deadline = Instant::now() + PROMETHEUS_TIMEOUT;
        let expr = format!("sum_over_time(up[1m]) >= {n}");
        while self.query(&expr).is_empty() {
            assert!(
                Instant::now() < deadline,
                "no {n} successful scrapes of labgate; up: {:?}\n{:#?}",
                self.query("up"),
                self.log.lock().expect("log")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Runs each query until all have data (series with the labels their legends show) or
    /// the deadline passes; the ones still without then.
    fn wait_all_have_data(&self, queries: &[Query]) -> Vec<String> {
        let deadline = Instant::now() + DATA_TIMEOUT;
        let mut left: Vec<&Query> = queries.iter().collect();
        loop {
            left.retain(|q| {
                let result = self.query(&q.expr);
                let labelled = |series: &serde_json::Value| {
                    q.labels
                        .iter()
                        .all(|l| series["metric"][l].as_str().is_some_and(|v| !v.is_empty()))
                };
                result.is_empty() || !result.iter().all(labelled)
            });
            if left.is_empty() || Instant::now() > deadline {
                return left
                    .iter()
                    .map(|q| format!("{}: {} (legend labels {:?})", q.what, q.expr, q.labels))
                    .collect();
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// GET `path` with each of `query` as a `query=` parameter, as JSON.
    fn get(&self, path: &str, query: &[&str]) -> serde_json::Value {
        let mut curl = Command::new("curl");
        curl.args(["-sS", "--max-time", "10", "-G"]);
        for q in query {
            curl.arg("--data-urlencode").arg(format!("query={q}"));
        }
        let out = curl
            .arg(format!("http://{}{path}", self.addr))
            .output()
            .expect("curl is needed: apt-get install curl (scripts/test.sh does)");
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{path} {query:?}: not JSON ({e}): {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log.lock().map(|l| l.join("\n")).unwrap_or_default();
            eprintln!("--- prometheus's log ---\n{log}");
        }
    }
}

#[test]
fn metric_names_skip_functions_labels_and_strings() {
    assert_eq!(
        metric_names(
            r#"sum by (job) (rate(labgate_dns_queries_total{rcode="labgate_x",instance=~"a"}[5m])) / on (job) up and process_open_fds"#
        ),
        ["labgate_dns_queries_total", "up", "process_open_fds"]
    );
}
