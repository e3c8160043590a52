//! A real HTTPS backend on 127.0.0.1:0 for the backend verification tests: its own test CA
//! signs its certificate (for 127.0.0.1 and the names given); it answers every request with
//! 200 and its name, on keep-alive connections, and counts the handshakes it completed.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A test CA: its certificate as PEM, and what signs with it.
pub(crate) struct TestCa {
    pub(crate) pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    pub(crate) fn new(name: &str) -> Self {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let pem = params.self_signed(&key).expect("CA certificate").pem();
        Self {
            pem,
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A server certificate it signs for `names` (DNS names or addresses), and its key.
    pub(crate) fn leaf(&self, names: &[&str]) -> (rcgen::Certificate, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate().expect("key");
        let leaf = rcgen::CertificateParams::new(
            names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
        )
        .expect("params")
        .signed_by(&key, &self.issuer)
        .expect("leaf");
        (leaf, key)
    }

    /// Writes the CA certificate to `dir/file` and returns its path.
    pub(crate) fn write(&self, dir: &Path, file: &str) -> PathBuf {
        let path = dir.join(file);
        std::fs::write(&path, &self.pem).expect("write CA");
        path
    }
}

/// The running backend; its threads end with the test process.
pub(crate) struct TlsBackend {
    pub(crate) port: u16,
    handshakes: Arc<AtomicUsize>,
}

impl TlsBackend {
    /// Serves with a certificate from `ca` for 127.0.0.1 and `names`.
    pub(crate) fn start(name: &str, ca: &TestCa, names: &[&str]) -> Self {
        let sans: Vec<&str> = std::iter::once("127.0.0.1")
            .chain(names.iter().copied())
            .collect();
        let (leaf, key) = ca.leaf(&sans);
        let chain = vec![CertificateDer::from(leaf.der().to_vec())];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("certificate");
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let handshakes = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&handshakes);
        let name = name.to_owned();
        std::thread::spawn(move || {
            for tcp in listener.incoming() {
                let Ok(tcp) = tcp else { continue };
                let (config, counted, name) =
                    (Arc::clone(&config), Arc::clone(&counted), name.clone());
                std::thread::spawn(move || serve(tcp, config, &counted, &name));
            }
        });
        Self { port, handshakes }
    }

    /// TLS handshakes completed so far.
    pub(crate) fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }
}

fn serve(mut tcp: TcpStream, config: Arc<rustls::ServerConfig>, counted: &AtomicUsize, name: &str) {
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(mut conn) = rustls::ServerConnection::new(config) else {
        return;
    };
    while conn.is_handshaking() {
        if conn.complete_io(&mut tcp).is_err() {
            // labgate refused the certificate, as it should have if it did.
            return;
        }
    }
    counted.fetch_add(1, Ordering::SeqCst);
    let mut r = BufReader::new(rustls::StreamOwned::new(conn, tcp));
    loop {
        // Requests without bodies: the head ends at an empty line.
        let mut line = String::new();
        loop {
            line.clear();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if line.trim_end().is_empty() => break,
                Ok(_) => {}
            }
        }
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{name}",
            name.len()
        );
        let out = r.get_mut();
        if out
            .write_all(answer.as_bytes())
            .and_then(|()| out.flush())
            .is_err()
        {
            return;
        }
    }
}
