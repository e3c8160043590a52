//! Real ACME parts for the certificate tests: Debian's Pebble (an ACME server that validates
//! DNS-01 by asking one DNS server) with a TLS pair made here, and a private BIND9 primary
//! that takes TSIG-signed updates for `_acme-challenge` TXT records only. Both killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

/// How long a server may take to start (Pebble 2.4 makes RSA keys).
const START: Duration = Duration::from_secs(60);

/// A name Pebble's TLS certificate also covers, for tests that reach it by a name only
/// labgate's own records have.
pub(crate) const PEBBLE_NAME: &str = "pebble.lab.example.test";

/// How long an ACME certificate may take (Pebble issues in well under a second).
const ISSUANCE: Duration = Duration::from_secs(90);

/// Polls `lg`'s `/certs` until its (first) ACME certificate is issued.
pub(crate) fn wait_certificate(lg: &super::Labgate) {
    let deadline = Instant::now() + ISSUANCE;
    loop {
        let (_, body) = lg.admin("GET", "/certs");
        let certs: serde_json::Value = serde_json::from_str(&body).expect("/certs is JSON");
        if certs[0]["not_after"].is_string() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no certificate issued: {certs:#}\n{}",
            lg.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A running Pebble.
pub(crate) struct Pebble {
    child: Child,
    /// The ACME directory URL.
    pub(crate) directory: String,
    /// PEM of the CA that signed Pebble's own HTTPS certificate.
    pub(crate) tls_ca: PathBuf,
    management: u16,
    dir: tempfile::TempDir,
}

impl Pebble {
    /// Starts Pebble validating DNS-01 against `dns` (`IP:PORT`, UDP for Pebble 2.4).
    pub(crate) fn start(dns: &str) -> Self {
        Self::start_with(dns, r#""externalAccountBindingRequired": false"#)
    }

    /// As [`Pebble::start`], with `settings` (JSON members) in Pebble's configuration:
    /// `"certificateValidityPeriod": 30`, External Account Binding...
    pub(crate) fn start_with(dns: &str, settings: &str) -> Self {
        let dir = tempfile::tempdir().expect("pebble dir");
        let ca = super::tls_backend::TestCa::new("labgate test: Pebble's TLS CA");
        let (leaf, key) = ca.leaf(&["localhost", "127.0.0.1", PEBBLE_NAME]);
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).expect("write");
            p
        };
        let tls_ca = write("tls-ca.pem", &ca.pem);
        let cert = write("tls.pem", &leaf.pem());
        let key = write("tls.key", &key.serialize_pem());
        let (listen, management) = (free_port(), free_port());
        let config = write(
            "pebble.json",
            &format!(
                r#"{{"pebble": {{"listenAddress": "127.0.0.1:{listen}", "managementListenAddress": "127.0.0.1:{management}",
                "certificate": "{}", "privateKey": "{}", "httpPort": {}, "tlsPort": {}, "ocspResponderURL": "",
                {settings}}}}}"#,
                cert.display(),
                key.display(),
                free_port(),
                free_port(),
            ),
        );
        let child = Command::new("pebble")
            .arg("-config")
            .arg(&config)
            .args(["-dnsserver", dns])
            // No random sleep before validation, no rejected nonces, no reused authorizations.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(std::fs::File::create(dir.path().join("pebble.log")).expect("log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble is needed: apt-get install pebble (scripts/test.sh does)");
        let pebble = Self {
            child,
            directory: format!("https://127.0.0.1:{listen}/dir"),
            tls_ca,
            management,
            dir,
        };
        pebble.wait_up(listen);
        pebble
    }

    fn wait_up(&self, port: u16) {
        let deadline = Instant::now() + START;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "pebble did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Pebble's log.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }

    /// The root that issues certificates (new on every start), written to a PEM file.
    pub(crate) fn issuing_root(&self) -> PathBuf {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10", "--cacert"])
            .arg(&self.tls_ca)
            .arg(format!("https://127.0.0.1:{}/roots/0", self.management))
            .output()
            .expect("curl");
        let path = self.dir.path().join("root.pem");
        std::fs::write(&path, &out.stdout).expect("write root");
        path
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private BIND9 primary for one zone on loopback.
pub(crate) struct Bind {
    child: Child,
    /// Its port (UDP and TCP).
    pub(crate) port: u16,
    /// The TSIG key file (a BIND `key` statement, as `tsig-keygen` writes it).
    pub(crate) key_file: PathBuf,
    dir: tempfile::TempDir,
}

impl Bind {
    /// Starts BIND serving `zone` with a key `key_name` allowed to change only the TXT
    /// records at `_acme-challenge.<zone>`.
    pub(crate) fn start(zone: &str, key_name: &str) -> Self {
        let dir = tempfile::tempdir().expect("bind dir");
        let d = dir.path();
        let keygen = Command::new("tsig-keygen")
            .args(["-a", "hmac-sha256", key_name])
            .output()
            .expect("tsig-keygen is needed: apt-get install bind9-utils (scripts/test.sh does)");
        let key_file = d.join("tsig.key");
        std::fs::write(&key_file, &keygen.stdout).expect("key");
        std::fs::write(
            d.join("zone.db"),
            format!("$TTL 60\n@ IN SOA ns1.{zone}. hostmaster.{zone}. 1 60 60 600 60\n@ IN NS ns1.{zone}.\nns1 IN A 127.0.0.1\n"),
        )
        .expect("zone");
        let port = free_port();
        let conf = d.join("named.conf");
        std::fs::write(
            &conf,
            format!(
                r#"options {{
    directory "{dir}";
    pid-file "{dir}/named.pid";
    session-keyfile "{dir}/session.key";
    managed-keys-directory "{dir}";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    allow-transfer {{ none; }};
    dnssec-validation no;
    notify no;
}};
controls {{ }};
include "{key}";
zone "{zone}" {{
    type primary;
    file "{dir}/zone.db";
    update-policy {{ grant {key_name} name _acme-challenge.{zone}. TXT; }};
}};
"#,
                dir = d.display(),
                key = key_file.display(),
            ),
        )
        .expect("named.conf");
        let child = Command::new("named")
            .args(["-g", "-c"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("named.log")).expect("log"))
            .spawn()
            .expect("named is needed: apt-get install bind9 (scripts/test.sh does)");
        let bind = Self {
            child,
            port,
            key_file,
            dir,
        };
        let deadline = Instant::now() + START;
        while bind.records(zone, "SOA").is_empty() {
            assert!(
                Instant::now() < deadline,
                "named did not start: {}",
                bind.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        bind
    }

    /// BIND's log.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("named.log")).unwrap_or_default()
    }

    /// The records of `rtype` at `name`, as `dig +short` prints them.
    pub(crate) fn records(&self, name: &str, rtype: &str) -> Vec<String> {
        let out = Command::new("dig")
            .args([
                "@127.0.0.1",
                "-p",
                &self.port.to_string(),
                "+short",
                "+time=2",
                "+tries=1",
                name,
                rtype,
            ])
            .output()
            .expect("dig");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.starts_with(';'))
            .map(str::to_owned)
            .collect()
    }

    /// Its working directory.
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Bind {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
