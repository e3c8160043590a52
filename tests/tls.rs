//! End-to-end TLS behaviour of the HTTPS listener: protocol versions (openssl s_client),
//! certificates from PEM files swapped when the files change (a broken file keeps the old
//! one), a connection serving every name its certificate covers (421 for the others), and
//! the slow-head bound.
#![allow(
    clippy::disallowed_macros,
    clippy::disallowed_methods,
    reason = "drives a real labgate from outside: deadlines on the wall clock, polls until they pass, prints what it saw"
)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::backend::Backend;
use support::https::{Tls, curl_https};
use support::{ConfigDir, Labgate};

/// A self-signed certificate for `name` with a subject organization to tell it apart.
fn self_signed(dir: &Path, name: &str, org: &str) {
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args([
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}/O={org}"),
        ])
        .args(["-addext", &format!("subjectAltName=DNS:{name}")])
        // A leaf, not a CA: rustls refuses a CA certificate as a server's.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(dir.join("key.pem.new"))
        .arg("-out")
        .arg(dir.join("cert.pem.new"))
        .output()
        .expect("openssl is needed (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Replace both files by rename, as a deploy tool would.
    std::fs::rename(dir.join("key.pem.new"), dir.join("key.pem")).expect("key");
    std::fs::rename(dir.join("cert.pem.new"), dir.join("cert.pem")).expect("cert");
}

/// What `openssl s_client` reports for a handshake: the subject line, or the failure.
fn s_client(port: u16, sni: &str, extra: &[&str]) -> String {
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-servername",
            sni,
        ])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("openssl");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn start(dir: &ConfigDir, backend: &Backend) -> (Labgate, tempfile::TempDir) {
    serve(dir, &files_config(dir, backend))
}

/// One service, files.lab.test, with a certificate from PEM files in `dir`'s `certs/`.
fn files_config(dir: &ConfigDir, backend: &Backend) -> String {
    let certs = dir.path("certs");
    std::fs::create_dir_all(&certs).expect("certs dir");
    self_signed(&certs, "files.lab.test", "first");
    format!(
        r#"
[[network]]
name = "lab"
cidrs = ["127.0.0.1/32"]
addresses = ["127.0.0.1"]

[[zone]]
name = "lab.test"

[[certificate]]
names = ["files.lab.test"]
source = "files"
cert_file = "{c}/cert.pem"
key_file = "{c}/key.pem"

[[service]]
host = "files.lab.test"
backends = ["http://127.0.0.1:{port}"]
allow = ["lab"]
"#,
        c = certs.display(),
        port = backend.port
    )
}

/// labgate on `config` (written to `dir`), with its own state directory.
fn serve(dir: &ConfigDir, config: &str) -> (Labgate, tempfile::TempDir) {
    dir.write("labgate.toml", config);
    let state = tempfile::tempdir().expect("state");
    let lg = Labgate::start(
        &[
            "--config",
            dir.path("labgate.toml").to_str().expect("utf-8"),
        ],
        state.path(),
    );
    (lg, state)
}

#[test]
fn only_tls_1_2_and_1_3_are_spoken() {
    let backend = Backend::start("files");
    let dir = ConfigDir::new();
    let (lg, _state) = start(&dir, &backend);
    for (flag, ok) in [
        ("-tls1_3", true),
        ("-tls1_2", true),
        ("-tls1_1", false),
        ("-tls1", false),
    ] {
        let out = s_client(lg.https, "files.lab.test", &[flag]);
        let negotiated = out.contains("BEGIN CERTIFICATE") || out.contains("subject=");
        assert_eq!(negotiated, ok, "{flag}: {out}");
    }
    // An unknown name gets no certificate: the handshake fails.
    let unknown = s_client(lg.https, "other.lab.test", &[]);
    assert!(!unknown.contains("BEGIN CERTIFICATE"), "{unknown}");
}

#[test]
fn certificate_files_are_swapped_live_and_a_broken_file_keeps_the_old_one() {
    let backend = Backend::start("files");
    let dir = ConfigDir::new();
    let (lg, _state) = start(&dir, &backend);
    let certs = dir.path("certs");
    let subject = || s_client(lg.https, "files.lab.test", &[]);
    assert!(subject().contains("O = first"), "{}", subject());
    let ca = certs.join("cert.pem");
    let r = curl_https(lg.https, "files.lab.test", "/", &ca, &[]);
    assert_eq!(r.status, 200, "{r:?}");

    self_signed(&certs, "files.lab.test", "second");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !subject().contains("O = second") {
        assert!(
            Instant::now() < deadline,
            "the new certificate was not served: {}",
            subject()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // A broken key file: the last good certificate keeps serving.
    std::fs::write(certs.join("key.pem"), "not a key").expect("break key");
    while lg.metric("labgate_certificate_load_failures_total") == 0 {
        assert!(Instant::now() < deadline, "the broken key was never read");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(subject().contains("O = second"), "{}", subject());
}

#[test]
fn a_slow_request_head_gets_408_and_the_connection_closes() {
    let backend = Backend::start("files");
    let dir = ConfigDir::new();
    let (lg, _state) = start(&dir, &backend);
    let ca = dir.path("certs/cert.pem");
    let mut c = Tls::connect(lg.https, "files.lab.test", &ca);
    let started = Instant::now();
    c.send(b"GET / HTTP/1.1\r\nHost: files.lab.test\r\n");
    let got = String::from_utf8_lossy(&c.read_to_close()).into_owned();
    let took = started.elapsed();
    assert!(got.starts_with("HTTP/1.1 408 "), "{got}");
    assert!(
        took >= Duration::from_secs(9) && took < Duration::from_secs(14),
        "{took:?}"
    );
    assert!(backend.seen().is_empty());
}

#[test]
fn a_connection_serves_every_name_its_certificate_covers_and_421s_the_others() {
    let backend = Backend::start("app");
    let dir = ConfigDir::new();
    let certs = dir.path("certs");
    std::fs::create_dir_all(&certs).expect("certs dir");
    self_signed(&certs, "*.lab.test", "wildcard");
    let (lg, _state) = serve(
        &dir,
        &format!(
            r#"
[[network]]
name = "lab"
cidrs = ["127.0.0.1/32"]
addresses = ["127.0.0.1"]

[[network]]
name = "iot"
cidrs = ["127.0.0.3/32"]
addresses = ["127.0.0.1"]

[[zone]]
name = "lab.test"

[[zone]]
name = "other.test"

[[certificate]]
names = ["*.lab.test"]
source = "files"
cert_file = "{c}/cert.pem"
key_file = "{c}/key.pem"

[[service]]
host = "a.lab.test"
backends = ["http://127.0.0.1:{port}"]
allow = ["lab"]

[[service]]
host = "b.lab.test"
backends = ["http://127.0.0.1:{port}"]
allow = ["lab"]

[[service]]
host = "d.lab.test"
backends = ["http://127.0.0.1:{port}"]
allow = ["iot"]

[[service]]
host = "c.other.test"
backends = ["http://127.0.0.1:{port}"]
allow = ["lab"]
"#,
            c = certs.display(),
            port = backend.port
        ),
    );
    let ca = certs.join("cert.pem");
    // A connection opened for a.lab.test, asked for other names: what browsers do when they
    // reuse an HTTP/2 connection under a wildcard certificate.
    for version in ["--http1.1", "--http2"] {
        let sibling = curl_https(
            lg.https,
            "a.lab.test",
            "/",
            &ca,
            &[version, "-H", "Host: b.lab.test"],
        );
        assert_eq!(sibling.status, 200, "{version}: {sibling:?}");
        let expected = if version == "--http2" {
            "HTTP/2"
        } else {
            "HTTP/1.1"
        };
        assert_eq!(sibling.version, expected);
        let seen = backend.seen().pop().expect("forwarded");
        assert_eq!(seen.header("host"), ["b.lab.test"], "{version}");
        // The Host's own policy applies: d.lab.test is for `iot` only.
        let denied = curl_https(
            lg.https,
            "a.lab.test",
            "/",
            &ca,
            &[version, "-H", "Host: d.lab.test"],
        );
        assert_eq!(denied.status, 403, "{version}: {denied:?}");
        // c.other.test has its own (local-CA) certificate: not this connection's.
        let other = curl_https(
            lg.https,
            "a.lab.test",
            "/",
            &ca,
            &[version, "-H", "Host: c.other.test"],
        );
        assert_eq!(other.status, 421, "{version}: {other:?}");
    }
}

#[test]
fn r21_with_the_local_ca_off_nothing_of_it_is_made_or_printed() {
    let backend = Backend::start("files");
    let dir = ConfigDir::new();
    let config = format!("[tls]\nlocal_ca = false\n{}", files_config(&dir, &backend));
    let (lg, state) = serve(&dir, &config);
    assert!(
        !state.path().join("local-ca").exists(),
        "{:?}",
        std::fs::read_dir(state.path())
            .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
    );
    assert!(
        !lg.stdout
            .iter()
            .any(|l| l.contains("local CA") || l.contains("ca.pem")),
        "{:#?}",
        lg.stdout
    );
    // The certificate from files still serves.
    let ca = dir.path("certs/cert.pem");
    let r = curl_https(lg.https, "files.lab.test", "/", &ca, &[]);
    assert_eq!(r.status, 200, "{r:?}");
}

/// A real ClientHello (openssl's) for `app.lab.test`, a name the test configurations here
/// have no certificate for.
fn client_hello() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fuzz/corpus/tls_hello/openssl_sni"
    ))
    .expect("seed ClientHello")
}

#[test]
fn r21_an_unknown_or_missing_server_name_gets_the_unrecognized_name_alert() {
    let backend = Backend::start("files");
    let dir = ConfigDir::new();
    let (lg, _state) = start(&dir, &backend);
    for args in [&["-servername", "unknown.lab.test"][..], &["-noservername"]] {
        let out = Command::new("openssl")
            .args(["s_client", "-connect", &format!("127.0.0.1:{}", lg.https)])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("openssl");
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(text.contains("alert number 112"), "{args:?}: {text}");
    }
    // The record itself, over a raw socket.
    let mut tcp = TcpStream::connect(("127.0.0.1", lg.https)).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    tcp.write_all(&client_hello()).expect("hello");
    let mut got = Vec::new();
    tcp.read_to_end(&mut got).expect("read until close");
    assert_eq!(got, [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 112]);
    // A known name still gets its certificate.
    let ok = s_client(lg.https, "files.lab.test", &[]);
    assert!(ok.contains("O = first"), "{ok}");
    lg.wait_metric(
        "labgate_tls_handshake_failures_total{reason=\"unrecognized_name\"}",
        3,
        "the refusals were not counted",
    );
}

#[test]
fn r21_a_silent_or_stalled_handshake_is_closed_within_its_bound() {
    let backend = Backend::start("files");
    let dir = ConfigDir::new();
    let (lg, _state) = start(&dir, &backend);
    let hello = client_hello();
    // A whole ClientHello for the name served, then silence: the server's flight comes, the
    // client's Finished never does.
    let config = support::https::client_config(&dir.path("certs/cert.pem"));
    let name = rustls::pki_types::ServerName::try_from("files.lab.test").expect("name");
    let mut client =
        rustls::ClientConnection::new(std::sync::Arc::new(config), name).expect("client");
    let mut whole = Vec::new();
    client.write_tls(&mut whole).expect("ClientHello");
    let cases: [(&str, Vec<u8>); 3] = [
        ("silent", Vec::new()),
        ("half a ClientHello", hello[..hello.len() / 2].to_vec()),
        ("no Finished", whole),
    ];
    let port = lg.https;
    let waits: Vec<_> = cases
        .into_iter()
        .map(|(what, sent)| {
            std::thread::spawn(move || {
                let mut tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
                // Far past the bound: a read that times out means the connection lived on.
                tcp.set_read_timeout(Some(Duration::from_secs(30)))
                    .expect("timeout");
                let started = Instant::now();
                tcp.write_all(&sent).expect("send");
                let mut sink = Vec::new();
                let end = tcp.read_to_end(&mut sink);
                (what, end.map(|_| ()), started.elapsed())
            })
        })
        .collect();
    // A whole handshake that chose HTTP/2, then no connection preface.
    let mut config = support::https::client_config(&dir.path("certs/cert.pem"));
    config.alpn_protocols = vec![b"h2".to_vec()];
    let h2 = std::thread::spawn(move || {
        let name = rustls::pki_types::ServerName::try_from("files.lab.test").expect("name");
        let mut conn =
            rustls::ClientConnection::new(std::sync::Arc::new(config), name).expect("client");
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp).expect("handshake");
        }
        assert_eq!(conn.alpn_protocol(), Some(&b"h2"[..]));
        let started = Instant::now();
        let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
        let mut sink = Vec::new();
        let end = match tls.read_to_end(&mut sink) {
            Ok(_) => Ok(()),
            // Closed without close_notify: closed all the same.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(()),
            Err(e) => Err(e),
        };
        ("h2 without a preface", end, started.elapsed())
    });
    for w in waits.into_iter().chain([h2]) {
        let (what, end, took) = w.join().expect("thread");
        assert!(end.is_ok(), "{what}: not closed: {end:?} after {took:?}");
        assert!(
            took >= Duration::from_secs(9) && took < Duration::from_secs(14),
            "{what}: closed after {took:?}"
        );
    }
    lg.wait_metric(
        "labgate_tls_handshake_failures_total{reason=\"timeout\"}",
        3,
        "the timeouts were not counted",
    );
}
