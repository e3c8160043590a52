//! End-to-end: blocklists per network from files (domains and hosts formats), suffix
//! matching, exceptions, NXDOMAIN and null actions with type-correct answers, and a list
//! edit picked up by the watcher.
#![allow(
    clippy::disallowed_macros,
    clippy::disallowed_methods,
    reason = "drives a real labgate from outside: deadlines on the wall clock, polls until they pass, prints what it saw"
)]

mod support;

use support::{ConfigDir, Labgate, Unbound, dig, dns_ports, generation};

fn config(upstream: u16) -> String {
    format!(
        r#"
[listen]
dns = ["127.0.0.1:0"]

[dns]
upstreams = ["udp://127.0.0.1:{upstream}"]

[[network]]
name = "lab"
cidrs = ["127.0.0.1/32"]
addresses = ["127.0.0.1"]
blocklists = ["ads", "trackers"]

[[network]]
name = "iot"
cidrs = ["127.0.0.3/32"]
addresses = ["127.0.0.3"]

[[zone]]
name = "lab.test"

[[blocklist]]
name = "ads"
file = "lists/ads.txt"
except = ["ok.ads.internet.test"]

[[blocklist]]
name = "trackers"
file = "lists/trackers.hosts"
format = "hosts"
action = "null"
"#
    )
}

#[test]
fn lists_block_per_network_and_follow_edits() {
    let up = Unbound::start(
        &["internet.test."],
        &[
            "www.internet.test. 300 IN A 93.184.216.34",
            "ads.internet.test. 300 IN A 93.184.216.1",
            "x.ads.internet.test. 300 IN A 93.184.216.2",
            "ok.ads.internet.test. 300 IN A 93.184.216.3",
            "tracker.internet.test. 300 IN A 93.184.216.4",
            "tracker.internet.test. 300 IN MX 10 mail.internet.test.",
        ],
    );
    let cfg = ConfigDir::new();
    cfg.write("conf/labgate.toml", &config(up.port));
    cfg.write("conf/lists/ads.txt", "# ads\nads.internet.test\n");
    cfg.write(
        "conf/lists/trackers.hosts",
        "127.0.0.1 localhost\n0.0.0.0 tracker.internet.test\n",
    );
    // One config file, its lists a directory below: the watch on the file's directory is one
    // level deep, so the lists' directory is watched on its own.
    let lg = Labgate::start(
        &[
            "--config",
            cfg.path("conf/labgate.toml").to_str().expect("utf-8"),
        ],
        &cfg.path("state"),
    );
    let (port, _) = dns_ports(&lg);

    // Listed names and their subdomains are NXDOMAIN for `lab`; the exception passes.
    for name in ["ads.internet.test", "x.ads.internet.test"] {
        let d = dig(port, "127.0.0.1", &[name]);
        assert_eq!(d.status, "NXDOMAIN", "{name}: {}", d.raw);
        assert!(!d.flags.split(' ').any(|f| f == "aa"), "{}", d.flags);
    }
    assert!(
        dig(port, "127.0.0.1", &["ok.ads.internet.test"])
            .answer
            .first()
            .is_some_and(|a| a.ends_with("93.184.216.3"))
    );
    // `iot` subscribes to no list.
    assert!(
        dig(port, "127.0.0.3", &["ads.internet.test"])
            .answer
            .first()
            .is_some_and(|a| a.ends_with("93.184.216.1"))
    );
    // The null action answers in the question's type.
    assert_eq!(
        dig(port, "127.0.0.1", &["tracker.internet.test", "A"]).answer,
        ["tracker.internet.test. 60 IN A 0.0.0.0"]
    );
    assert_eq!(
        dig(port, "127.0.0.1", &["tracker.internet.test", "AAAA"]).answer,
        ["tracker.internet.test. 60 IN AAAA ::"]
    );
    let mx = dig(port, "127.0.0.1", &["tracker.internet.test", "MX"]);
    assert_eq!(
        (mx.status.as_str(), mx.answer.len()),
        ("NOERROR", 0),
        "{}",
        mx.raw
    );

    // A cache hit's answer is kept for the UDP fast path (dig without its COOKIE option
    // sends what the fast path takes)...
    let fast = "labgate_dns_fast_path_answers_total";
    let www = || dig(port, "127.0.0.1", &["+nocookie", "www.internet.test"]);
    assert_eq!(www().answer.len(), 1, "a miss, then a general-path hit");
    assert_eq!(www().answer.len(), 1);
    let before = lg.metric(fast);
    let hit = www();
    assert!(
        hit.answer.first().is_some_and(
            |a| a.starts_with("www.internet.test. ") && a.ends_with(" IN A 93.184.216.34")
        ),
        "{}",
        hit.raw
    );
    assert_eq!(
        lg.metric(fast),
        before + 1,
        "the third query is a fast-path hit"
    );
    // ...and editing the list file, a configuration change, blocks the name at once.
    cfg.write(
        "conf/lists/ads.txt",
        "# ads\nads.internet.test\nwww.internet.test\n",
    );
    lg.wait_config("the list edit", |c| generation(c) == 2);
    assert_eq!(
        dig(port, "127.0.0.1", &["www.internet.test"]).status,
        "NXDOMAIN"
    );
    assert_eq!(www().status, "NXDOMAIN", "not the kept answer");
    assert_eq!(lg.metric("labgate_dns_blocked_total"), 7);

    // A list in a directory the configuration named only after a reload is followed too.
    cfg.write("conf/more/extra.txt", "# nothing yet\n");
    let with_extra = config(up.port).replace(
        "blocklists = [\"ads\", \"trackers\"]",
        "blocklists = [\"ads\", \"trackers\", \"extra\"]",
    ) + "\n[[blocklist]]\nname = \"extra\"\nfile = \"more/extra.txt\"\n";
    cfg.write("conf/labgate.toml", &with_extra);
    lg.wait_config("the new list", |c| generation(c) == 3);
    // `/config` shows generation 3 a moment before the new directory's watch is set: an
    // edit in between is missed, so the edit is repeated (the same text, so once seen, no
    // further reload follows) until it is seen.
    let deadline = std::time::Instant::now() + support::RELOAD_TIMEOUT;
    while generation(&lg.config()) < 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "the new list's edit was never seen"
        );
        cfg.write("conf/more/extra.txt", "tracker.internet.test\n");
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    assert_eq!(generation(&lg.config()), 4);
}

/// Python's http.server serving a directory, plus two redirects: `/moved...` to `/ads.txt`
/// and `/loop...` to itself.
const FILE_SERVER: &str = r#"
import http.server, sys
class Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        for prefix, target in (("/moved", "/ads.txt"), ("/loop", "/loop")):
            if self.path.startswith(prefix):
                self.send_response(301 if prefix == "/moved" else 302)
                self.send_header("Location", target)
                self.end_headers()
                return
        super().do_GET()
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"#;

/// A static file server on loopback (Python's http.server: a real HTTP/1.x server).
struct FileServer {
    child: std::process::Child,
    port: u16,
}

impl FileServer {
    fn start(dir: &std::path::Path) -> Self {
        let port = support::free_port();
        let child = std::process::Command::new("python3")
            .args(["-c", FILE_SERVER, &port.to_string()])
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 runs the test's HTTP server");
        let deadline = std::time::Instant::now() + support::START_TIMEOUT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "http.server did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Self { child, port }
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// labgate on `config`, written to a fresh directory (kept alive by the caller), and its UDP
/// DNS port.
fn start_url_lists(config: &str) -> (ConfigDir, Labgate, u16) {
    let cfg = ConfigDir::new();
    let lg = cfg.start(config);
    let (port, _) = dns_ports(&lg);
    (cfg, lg, port)
}

/// The metric sample of blocklist downloads that ended with `result` (`success` or
/// `failure`).
fn fetches(result: &str) -> String {
    format!("labgate_blocklist_fetches_total{{result=\"{result}\"}}")
}

#[test]
fn url_lists_are_fetched_through_the_upstreams_and_survive_a_failed_refresh() {
    let site = tempfile::tempdir().expect("tempdir");
    std::fs::write(site.path().join("ads.txt"), "ads.internet.test\n").expect("list");
    let http = FileServer::start(site.path());
    // The list's host name resolves only through the upstream, never through labgate's views.
    let up = Unbound::start(
        &["internet.test."],
        &[
            "lists.internet.test. 300 IN A 127.0.0.1",
            "ads.internet.test. 300 IN A 93.184.216.1",
        ],
    );
    let config = format!(
        "[listen]\ndns = [\"127.0.0.1:0\"]\n\n[dns]\nupstreams = [\"udp://127.0.0.1:{}\"]\n\n\
         [[network]]\nname = \"lab\"\ncidrs = [\"127.0.0.1/32\"]\naddresses = [\"127.0.0.1\"]\nblocklists = [\"ads\"]\n\n\
         [[blocklist]]\nname = \"ads\"\nurl = \"http://lists.internet.test:{}/ads.txt\"\nrefresh = \"1s\"\n",
        up.port, http.port
    );
    let (_cfg, lg, port) = start_url_lists(&config);
    lg.wait_metric(&fetches("success"), 1, "the list was never fetched");
    assert_eq!(
        dig(port, "127.0.0.1", &["ads.internet.test"]).status,
        "NXDOMAIN"
    );
    // The server goes away: refreshes fail, the last good list keeps blocking.
    drop(http);
    lg.wait_metric(&fetches("failure"), 1, "no failed refresh seen");
    assert_eq!(
        dig(port, "127.0.0.1", &["ads.internet.test"]).status,
        "NXDOMAIN"
    );
}

#[test]
fn a_url_list_whose_format_is_corrected_is_fetched_again_at_once() {
    let site = tempfile::tempdir().expect("tempdir");
    std::fs::write(site.path().join("hosts.txt"), "0.0.0.0 ads.internet.test\n").expect("list");
    let http = FileServer::start(site.path());
    let up = Unbound::start(
        &["internet.test."],
        &["ads.internet.test. 300 IN A 93.184.216.1"],
    );
    // A hosts file read as a domain list (the default format): nothing in it is a name.
    let config = |format: &str| {
        format!(
            "[listen]\ndns = [\"127.0.0.1:0\"]\n\n[dns]\nupstreams = [\"udp://127.0.0.1:{}\"]\n\n\
             [[network]]\nname = \"lab\"\ncidrs = [\"127.0.0.1/32\"]\naddresses = [\"127.0.0.1\"]\nblocklists = [\"ads\"]\n\n\
             [[blocklist]]\nname = \"ads\"\nurl = \"http://127.0.0.1:{}/hosts.txt\"\nrefresh = \"1d\"\n{format}",
            up.port, http.port
        )
    };
    let (cfg, lg, port) = start_url_lists(&config(""));
    lg.wait_metric(&fetches("success"), 1, "fetch 1 never came");
    assert_eq!(
        dig(port, "127.0.0.1", &["ads.internet.test"]).status,
        "NOERROR"
    );
    // The user fixes the format: the list is fetched again now, not in a day.
    cfg.write("labgate.toml", &config("format = \"hosts\"\n"));
    lg.wait_metric(&fetches("success"), 2, "fetch 2 never came");
    assert_eq!(
        dig(port, "127.0.0.1", &["ads.internet.test"]).status,
        "NXDOMAIN"
    );
}

#[test]
fn url_lists_follow_redirects_a_loop_fails_and_logs_hide_the_query() {
    let site = tempfile::tempdir().expect("tempdir");
    std::fs::write(site.path().join("ads.txt"), "ads.internet.test\n").expect("list");
    let http = FileServer::start(site.path());
    let url = |path: &str| format!("http://127.0.0.1:{}{path}?token=s3cret", http.port);
    let config = format!(
        "[listen]\ndns = [\"127.0.0.1:0\"]\n\n\
         [[network]]\nname = \"lab\"\ncidrs = [\"127.0.0.1/32\"]\naddresses = [\"127.0.0.1\"]\nblocklists = [\"moved\", \"looping\"]\n\n\
         [[blocklist]]\nname = \"moved\"\nurl = \"{}\"\n\n\
         [[blocklist]]\nname = \"looping\"\nurl = \"{}\"\n",
        url("/moved/ads.txt"),
        url("/loop")
    );
    let (_cfg, lg, port) = start_url_lists(&config);
    lg.wait_metric(&fetches("success"), 1, "the moved list was never fetched");
    lg.wait_metric(&fetches("failure"), 1, "the looping list never failed");
    // The moved list arrived through its redirect and blocks.
    assert_eq!(
        dig(port, "127.0.0.1", &["ads.internet.test"]).status,
        "NXDOMAIN"
    );
    let log = lg.log_text();
    assert!(log.contains("more than 5 redirects"), "{log}");
    assert!(log.contains("/loop?…"), "the failing list is named: {log}");
    assert!(
        !log.contains("s3cret"),
        "a URL's query reached the log: {log}"
    );
}
