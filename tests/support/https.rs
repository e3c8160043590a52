//! HTTPS clients for the proxy tests: curl with the local CA, and a raw TLS connection (rustls)
//! for byte-exact requests that curl would not send.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// curl's answer: status, headers (lower-case names), body.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) version: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Reply {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `curl` to `https://host:port/path` resolved to 127.0.0.1, trusting `ca`, with extra args.
pub(crate) fn curl_https(port: u16, host: &str, path: &str, ca: &Path, extra: &[&str]) -> Reply {
    let out = Command::new("curl")
        .args(["-s", "-i", "--max-time", "30", "--cacert"])
        .arg(ca)
        .args(["--resolve", &format!("{host}:{port}:127.0.0.1")])
        .args(extra)
        .arg(format!("https://{host}:{port}{path}"))
        .output()
        .expect("curl is needed: apt-get install curl (scripts/test.sh does)");
    parse_reply(&String::from_utf8_lossy(&out.stdout))
}

/// Parses `curl -i` output (the last response when there are interim ones).
pub(crate) fn parse_reply(text: &str) -> Reply {
    let mut rest = text;
    loop {
        let (head, body) = rest.split_once("\r\n\r\n").unwrap_or((rest, ""));
        let mut lines = head.lines();
        let status_line = lines.next().unwrap_or_default();
        let mut words = status_line.split_whitespace();
        let version = words.next().unwrap_or_default().to_owned();
        let status = words.next().and_then(|c| c.parse().ok()).unwrap_or(0);
        if (100..200).contains(&status) && status != 101 && body.starts_with("HTTP/") {
            rest = body;
            continue;
        }
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        return Reply {
            status,
            version,
            headers,
            body: body.to_owned(),
        };
    }
}

/// A rustls client configuration that trusts only `ca` (labgate's local CA).
pub(crate) fn client_config(ca: &Path) -> rustls::ClientConfig {
    let pem = std::fs::read(ca).expect("CA file");
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&pem) {
        roots.add(c.expect("CA PEM")).expect("CA cert");
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// A TLS connection to 127.0.0.1:port with SNI `sni`, trusting `ca`.
pub(crate) struct Tls {
    stream: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
}

impl Tls {
    pub(crate) fn connect(port: u16, sni: &str, ca: &Path) -> Self {
        Self::over(
            TcpStream::connect(("127.0.0.1", port)).expect("connect"),
            sni,
            ca,
        )
    }

    /// A TLS connection over a TCP connection the caller opened.
    pub(crate) fn over(tcp: TcpStream, sni: &str, ca: &Path) -> Self {
        let config = client_config(ca);
        let name = ServerName::try_from(sni.to_owned()).expect("server name");
        let conn = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
        tcp.set_read_timeout(Some(Duration::from_secs(15)))
            .expect("timeout");
        Self {
            stream: rustls::StreamOwned::new(conn, tcp),
        }
    }

    pub(crate) fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
        self.stream.flush().expect("flush");
    }

    /// Reads until `pred` holds for what was read, EOF, or the read timeout.
    pub(crate) fn read_until(&mut self, pred: impl Fn(&[u8]) -> bool) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        while !pred(&got) {
            match self.stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        got
    }

    /// Reads until the server closes (or the read timeout).
    pub(crate) fn read_to_close(&mut self) -> Vec<u8> {
        self.read_until(|_| false)
    }
}

/// Sends raw bytes on a fresh TLS connection and returns everything until the server closes.
pub(crate) fn raw(port: u16, sni: &str, ca: &Path, bytes: &[u8]) -> String {
    let mut c = Tls::connect(port, sni, ca);
    c.send(bytes);
    String::from_utf8_lossy(&c.read_to_close()).into_owned()
}
