//! Shared helpers for end-to-end tests: start the real binary, read its readiness lines, talk
//! to it with curl, poll with deadlines.

#![allow(dead_code, clippy::unwrap_used)] // helpers differ per test binary; tests may unwrap

pub(crate) mod acme;
pub(crate) mod backend;
pub(crate) mod cloudflare;
pub(crate) mod h2c;
pub(crate) mod https;
pub(crate) mod jwks;
pub(crate) mod netns;
pub(crate) mod tls_backend;
pub(crate) mod upstream;
pub(crate) mod webdriver;
pub(crate) mod wire;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long start-up may take (a debug build on a loaded 2-core machine).
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a reload may take to show up.
pub(crate) const RELOAD_TIMEOUT: Duration = Duration::from_secs(20);

/// The labgate binary under test.
pub(crate) fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_labgate"))
}

/// A running `labgate run`, killed on drop.
pub(crate) struct Labgate {
    child: Child,
    /// The admin endpoint's address.
    pub(crate) admin: SocketAddr,
    /// Everything it printed on stdout so far (start-up lines).
    pub(crate) stdout: Vec<String>,
    /// The (first) HTTPS listener's port, from its readiness line.
    pub(crate) https: u16,
    /// The (first) plain HTTP listener's port, from its readiness line.
    pub(crate) http: u16,
    /// Its stderr, a file in the state directory.
    log: PathBuf,
}

impl Labgate {
    /// Starts `labgate run` with extra args and waits for its readiness line.
    pub(crate) fn start(args: &[&str], state_dir: &Path) -> Self {
        Self::start_under(&[], args, state_dir)
    }

    /// [`Labgate::start`] under a wrapper command, e.g. `prlimit --nofile=256:4096`. Every
    /// listener is on a port 0 of loopback: labgate binds them all before it starts serving
    /// and prints the ports it got.
    pub(crate) fn start_under(wrapper: &[&str], args: &[&str], state_dir: &Path) -> Self {
        let listeners = [
            "--admin",
            "127.0.0.1:0",
            "--dns",
            "127.0.0.1:0",
            "--https",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
        ];
        Self::launch(wrapper, &[args, &listeners].concat(), state_dir)
    }

    /// labgate under `wrapper` on the listeners its configuration names, nothing overridden
    /// but the state directory; `https` and `http` are its first of each (0 without one).
    pub(crate) fn start_as_configured(wrapper: &[&str], args: &[&str], state_dir: &Path) -> Self {
        Self::launch(wrapper, args, state_dir)
    }

    fn launch(wrapper: &[&str], args: &[&str], state_dir: &Path) -> Self {
        std::fs::create_dir_all(state_dir).expect("state dir");
        let log = state_dir.join("labgate.stderr");
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(env!("CARGO_BIN_EXE_labgate"));
                c
            }
            None => bin(),
        };
        let mut child = command
            .arg("run")
            .args(args)
            .arg("--state-dir")
            .arg(state_dir)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start labgate");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + START_TIMEOUT;
        let mut lines = Vec::new();
        let mut admin = None;
        let (mut https, mut http) = (None, None);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).unwrap_or_else(|_| {
                let stderr = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("labgate did not become ready; stdout: {lines:#?}\nstderr:\n{stderr}")
            });
            if let Some(a) = line.strip_prefix("labgate: admin listening on http://") {
                admin = Some(a.parse().expect("admin address"));
            }
            let port = |a: &str| a.parse::<SocketAddr>().expect("listener address").port();
            if let Some(a) = line.strip_prefix("labgate: https listening on ") {
                https.get_or_insert_with(|| port(a));
            }
            if let Some(a) = line.strip_prefix("labgate: http listening on ") {
                http.get_or_insert_with(|| port(a));
            }
            let ready = line.starts_with("labgate: ready");
            lines.push(line);
            if ready {
                break;
            }
        }
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || while rx.recv().is_ok() {});
        Self {
            child,
            admin: admin.expect("admin line before ready line"),
            stdout: lines,
            https: https.unwrap_or(0),
            http: http.unwrap_or(0),
            log,
        }
    }

    /// What it logged so far (stderr).
    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls the log until `pred` holds, or panics at the deadline.
    pub(crate) fn wait_log(&self, what: &str, pred: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + RELOAD_TIMEOUT;
        while !pred(&self.log_text()) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what} in the log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `GET` (or `POST`) an admin path with curl: (status, body).
    pub(crate) fn admin(&self, method: &str, path: &str) -> (u16, String) {
        curl(method, &format!("http://{}{path}", self.admin))
    }

    /// `/config` as JSON.
    pub(crate) fn config(&self) -> serde_json::Value {
        let (status, body) = self.admin("GET", "/config");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("/config is JSON")
    }

    /// Polls `/config` until `pred` holds, or panics with the last value at the deadline.
    pub(crate) fn wait_config(
        &self,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + RELOAD_TIMEOUT;
        loop {
            let c = self.config();
            if pred(&c) {
                return c;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; last /config: {c:#}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Polls `/metrics` until the sample (as in [`Labgate::metric`]) reaches `at_least`, or
    /// panics at the deadline saying `what` never came.
    pub(crate) fn wait_metric(&self, sample: &str, at_least: u64, what: &str) {
        let deadline = Instant::now() + RELOAD_TIMEOUT;
        while self.metric(sample) < at_least {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A sample's value on `/metrics`, by its name with labels (`name{a="b"}`); 0 if absent.
    pub(crate) fn metric(&self, sample: &str) -> u64 {
        let (_, body) = self.admin("GET", "/metrics");
        body.lines()
            .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0)
    }

    /// Waits up to `wait` for the process to exit: whether it exited with success, or `None`
    /// if it still runs.
    pub(crate) fn wait_exit(&mut self, wait: Duration) -> Option<bool> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return Some(status.success());
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id, for signals.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops it as a supervisor does (SIGTERM) and waits for its exit: whether it exited 0.
    pub(crate) fn terminate(mut self) -> bool {
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill is needed: apt-get install procps (scripts/test.sh does)");
        assert!(sent.success(), "SIGTERM not sent");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.success();
            }
            assert!(Instant::now() < deadline, "labgate did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Labgate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            // The failed test's output then shows what labgate said.
            let text = self.log_text();
            let tail: Vec<&str> = text.lines().rev().take(60).collect();
            eprintln!("--- labgate's log, last lines ---");
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// One HTTP request with curl (a real client); fails loudly if curl is missing.
pub(crate) fn curl(method: &str, url: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "30",
            "-X",
            method,
            "-w",
            "\n%{http_code}",
            url,
        ])
        .output()
        .expect(
            "curl is needed for the end-to-end tests: apt-get install curl (scripts/test.sh does)",
        );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// Addresses on `lo` for the test's lifetime (root, as on CI).
pub(crate) struct LoopbackAddrs(Vec<&'static str>);

impl LoopbackAddrs {
    pub(crate) fn add(addrs: &[&'static str]) -> Self {
        for a in addrs {
            let out = Command::new("ip")
                .args(["addr", "replace", &format!("{a}/32"), "dev", "lo"])
                .output()
                .expect("ip (iproute2) is needed: scripts/test.sh installs it");
            assert!(
                out.status.success(),
                "cannot add {a} to lo (needs root / CAP_NET_ADMIN): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Self(addrs.to_vec())
    }
}

impl Drop for LoopbackAddrs {
    fn drop(&mut self) {
        for a in &self.0 {
            let _ = Command::new("ip")
                .args(["addr", "del", &format!("{a}/32"), "dev", "lo"])
                .output();
        }
    }
}

/// A temporary directory with a config file or files.
pub(crate) struct ConfigDir {
    /// Holds the directory alive.
    pub(crate) dir: tempfile::TempDir,
}

impl ConfigDir {
    /// An empty directory.
    pub(crate) fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// A path inside it.
    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes a file in place (truncate and write, as `>` in a shell does).
    pub(crate) fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(p, text).expect("write config");
    }

    /// Writes `config` as `labgate.toml` and starts labgate on it, its state directory in
    /// here too.
    pub(crate) fn start(&self, config: &str) -> Labgate {
        self.write("labgate.toml", config);
        Labgate::start(
            &[
                "--config",
                self.path("labgate.toml").to_str().expect("utf-8"),
            ],
            &self.path("state"),
        )
    }

    /// Replaces a file the way editors do: write a temporary file, rename it over.
    pub(crate) fn rename_replace(&self, rel: &str, text: &str) {
        let tmp = self.path(&format!(".{rel}.swp"));
        std::fs::write(&tmp, text).expect("write temp");
        std::fs::rename(&tmp, self.path(rel)).expect("rename");
    }
}

/// A small valid configuration with one service per host given.
pub(crate) fn config_with_services(hosts: &[&str]) -> String {
    let mut s = String::from(
        "[[network]]\nname = \"lan\"\ncidrs = [\"10.1.0.0/16\"]\naddresses = [\"10.1.0.2\"]\n\n\
         [[zone]]\nname = \"home.arpa\"\n",
    );
    for h in hosts {
        s.push_str(&format!(
            "\n[[service]]\nhost = \"{h}.home.arpa\"\nbackends = [\"http://10.1.0.9:8080\"]\nallow = [\"lan\"]\n"
        ));
    }
    s
}

/// The generation in a `/config` value.
pub(crate) fn generation(c: &serde_json::Value) -> u64 {
    c["generation"].as_u64().expect("generation")
}

/// The service names in a `/config` value.
pub(crate) fn services(c: &serde_json::Value) -> Vec<String> {
    c["services"]
        .as_array()
        .expect("services")
        .iter()
        .map(|v| v.as_str().expect("name").to_owned())
        .collect()
}

/// A free loopback port for a server that cannot report the one it bound (Unbound): bound
/// for UDP and TCP at once, then released.
pub(crate) fn free_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let port = udp.local_addr().expect("addr").port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A private Unbound on loopback, standing in for the internet's resolvers; killed on drop.
pub(crate) struct Unbound {
    child: Child,
    /// Its port (UDP and TCP).
    pub(crate) port: u16,
    /// Its DNS-over-TLS port, when started with a certificate.
    pub(crate) tls_port: Option<u16>,
    /// Its DNS-over-HTTPS port (`/dns-query`), when started with a certificate.
    pub(crate) https_port: Option<u16>,
    _dir: tempfile::TempDir,
}

impl Unbound {
    /// Starts Unbound serving `local_data` (Unbound `local-data:` lines) and waits until it
    /// answers.
    pub(crate) fn start(local_zones: &[&str], local_data: &[&str]) -> Self {
        Self::start_tls(local_zones, local_data, None)
    }

    /// As [`Unbound::start`], plus DNS over TLS with a PEM chain and key when given.
    pub(crate) fn start_tls(
        local_zones: &[&str],
        local_data: &[&str],
        tls: Option<(&Path, &Path)>,
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        // Without SO_REUSEPORT: a port taken since `free_port` looked fails the start loudly
        // instead of being shared with that socket.
        let port = free_port();
        let tls_port = tls.map(|_| free_port());
        let https_port = tls.map(|_| free_port());
        let mut conf = format!(
            "server:\n  port: {port}\n  do-daemonize: no\n  use-syslog: no\n  logfile: \"\"\n  \
             username: \"\"\n  chroot: \"\"\n  directory: \"{d}\"\n  pidfile: \"{d}/unbound.pid\"\n  \
             access-control: 127.0.0.0/8 allow\n  num-threads: 1\n  module-config: \"iterator\"\n  \
             verbosity: 0\n  so-reuseport: no\n",
            d = dir.path().display()
        );
        conf.push_str("  local-zone: \"probe.labgate.test.\" static\n");
        conf.push_str("  local-data: \"probe.labgate.test. 60 IN A 127.0.0.1\"\n");
        if tls.is_none() {
            conf.push_str("  interface: 127.0.0.1\n");
        }
        if let (Some((chain, key)), Some(tp), Some(hp)) = (tls, tls_port, https_port) {
            conf.push_str(&format!(
                "  interface: 127.0.0.1@{port}\n  interface: 127.0.0.1@{tp}\n  tls-port: {tp}\n  \
                 interface: 127.0.0.1@{hp}\n  https-port: {hp}\n  http-notls-downstream: no\n  \
                 tls-service-pem: \"{}\"\n  tls-service-key: \"{}\"\n",
                chain.display(),
                key.display()
            ));
        }
        for z in local_zones {
            conf.push_str(&format!("  local-zone: \"{z}\" static\n"));
        }
        for d in local_data {
            conf.push_str(&format!("  local-data: \"{d}\"\n"));
        }
        conf.push_str("remote-control:\n  control-enable: no\n");
        let path = dir.path().join("unbound.conf");
        std::fs::write(&path, conf).expect("write unbound.conf");
        let child = Command::new("unbound")
            .arg("-d")
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("unbound is needed: apt-get install unbound (scripts/test.sh does)");
        let u = Self {
            child,
            port,
            tls_port,
            https_port,
            _dir: dir,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let probe = Command::new("dig")
                .args([
                    "@127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "+time=1",
                    "+tries=1",
                    "+short",
                    "probe.labgate.test",
                ])
                .output()
                .expect("dig");
            if String::from_utf8_lossy(&probe.stdout).contains("127.0.0.1") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "unbound did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        u
    }
}

impl Drop for Unbound {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What dig printed, split up.
pub(crate) struct Dig {
    pub(crate) status: String,
    pub(crate) flags: String,
    pub(crate) answer: Vec<String>,
    pub(crate) authority: Vec<String>,
    /// The `; EDNS:` line, empty without OPT.
    pub(crate) edns: String,
    /// Everything dig printed, for failure messages.
    pub(crate) raw: String,
}

pub(crate) fn dig(port: u16, from: &str, args: &[&str]) -> Dig {
    let out = Command::new("dig")
        .args([
            "@127.0.0.1",
            "-p",
            &port.to_string(),
            "-b",
            from,
            "+time=5",
            "+tries=1",
        ])
        .args(["+noall", "+comments", "+answer", "+authority"])
        .args(args)
        .output()
        .expect("dig is needed: apt-get install dnsutils (scripts/test.sh does)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |prefix: &str, end: char| {
        text.split_once(prefix)
            .map(|(_, r)| r.split(end).next().unwrap_or("").trim().to_owned())
            .unwrap_or_default()
    };
    let (mut answer, mut authority) = (Vec::new(), Vec::new());
    let mut section = "";
    for line in text.lines() {
        if line.starts_with(";; ANSWER SECTION") {
            section = "answer";
        } else if line.starts_with(";; AUTHORITY SECTION") {
            section = "authority";
        } else if !line.starts_with(';') && !line.trim().is_empty() {
            let rr = line.split_whitespace().collect::<Vec<_>>().join(" ");
            match section {
                "answer" => answer.push(rr),
                "authority" => authority.push(rr),
                _ => {}
            }
        }
    }
    Dig {
        status: field("status: ", ','),
        flags: field(";; flags: ", ';'),
        answer,
        authority,
        edns: text
            .lines()
            .find(|l| l.starts_with("; EDNS:"))
            .unwrap_or("")
            .to_owned(),
        // dig's warnings ("Message has N extra bytes at end") may go to either stream.
        raw: text + &String::from_utf8_lossy(&out.stderr),
    }
}

/// The UDP and TCP ports of labgate's DNS listener, from its readiness lines.
pub(crate) fn dns_ports(lg: &Labgate) -> (u16, u16) {
    let port = |proto: &str| {
        lg.stdout
            .iter()
            .find_map(|l| l.strip_prefix(&format!("labgate: dns listening on {proto} 127.0.0.1:")))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no {proto} dns line in {:#?}", lg.stdout))
    };
    (port("udp"), port("tcp"))
}

/// What hickory's client got for an A query.
#[derive(Debug)]
pub(crate) struct HickoryAnswer {
    pub(crate) rcode: String,
    pub(crate) authoritative: bool,
    pub(crate) answers: Vec<String>,
}

/// An A query with hickory's own DNS client (hickory-net), over UDP or TCP, from `from`.
pub(crate) async fn hickory_query(port: u16, from: &str, name: &str, tcp: bool) -> HickoryAnswer {
    use hickory_net::client::{Client, ClientHandle};
    use hickory_net::runtime::TokioRuntimeProvider;
    use hickory_proto::rr::{DNSClass, Name, RecordType};
    let server: SocketAddr = ([127, 0, 0, 1], port).into();
    let bind: SocketAddr = (from.parse::<std::net::IpAddr>().expect("address"), 0).into();
    let provider = TokioRuntimeProvider::default();
    let mut client = if tcp {
        let (future, sender) =
            hickory_net::tcp::TcpClientStream::new(server, Some(bind), None, provider);
        let (client, background) =
            Client::<TokioRuntimeProvider>::new(future.await.expect("tcp connect"), sender);
        tokio::spawn(background);
        client
    } else {
        let stream = hickory_net::udp::UdpClientStream::builder(server, provider)
            .with_bind_addr(Some(bind))
            .build();
        let (client, background) = Client::<TokioRuntimeProvider>::from_sender(stream);
        tokio::spawn(background);
        client
    };
    let name = Name::from_ascii(name).expect("name");
    let response = client
        .query(name, DNSClass::IN, RecordType::A)
        .await
        .expect("a response");
    HickoryAnswer {
        rcode: format!("{:?}", response.metadata.response_code),
        authoritative: response.metadata.authoritative,
        answers: response
            .answers
            .iter()
            .map(|r| r.data.to_string())
            .collect(),
    }
}
