//! Fuzz and differential harness for the framing code and the ClientHello reader, shared by
//! the cargo-fuzz targets (`fuzz/fuzz_targets/http_framing.rs`, `tls_hello.rs`) and the unit
//! tests, which run the seed corpora.

use crate::chunked::Chunked;
use crate::head::{self, Framing, HeadError, header_array, parse_request, parse_response};
use crate::hello::{self, Hello};

/// Properties: no panic; whenever labgate's ClientHello reader and rustls' own both read a
/// whole ClientHello from the bytes, they name the same server (after the normalization the
/// certificate store applies), so the unknown-name alert is sent for exactly the names
/// rustls' resolver would find no certificate for.
pub fn client_hello(data: &[u8]) {
    let mut scratch = Vec::new();
    let ours = hello::parse(data, &mut scratch);
    let Hello::Complete(ours) = ours else {
        return;
    };
    let mut acceptor = rustls::server::Acceptor::default();
    let mut rest = data;
    let theirs = loop {
        if rest.is_empty() || acceptor.read_tls(&mut rest).is_err() {
            return;
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => break accepted.client_hello().server_name().map(str::to_owned),
            Ok(None) => {}
            Err(_) => return,
        }
    };
    let mut a = [0u8; labgate_config::route::MAX_HOST_LEN];
    let mut b = [0u8; labgate_config::route::MAX_HOST_LEN];
    assert_eq!(
        crate::certs::sni_name(ours, &mut a),
        crate::certs::sni_name(theirs.as_deref(), &mut b),
        "labgate read {ours:?}, rustls {theirs:?}"
    );
}

/// Properties: the byte check's fast pass agrees with its byte walk; no panic; an accepted head ends at a CRLFCRLF inside the input, its framing
/// is never both a length and chunked, and the fast path only takes length-delimited bodies;
/// the chunked scanner never claims more bytes than it was given.
pub fn framing_bytes(data: &[u8]) {
    assert_eq!(
        head::check_bytes(data).is_ok(),
        head::first_bad_byte(data).is_ok(),
        "the vectorized byte check and the byte walk disagree"
    );
    let mut headers = header_array();
    match parse_request(data, &mut headers) {
        Ok(h) => {
            assert!(h.len <= data.len() && data[..h.len].ends_with(b"\r\n\r\n"));
            if h.fast_path() {
                assert!(matches!(h.framing, Framing::Empty | Framing::Length(_)));
                assert!(h.host.is_some() && h.minor == 1);
            }
        }
        Err(
            HeadError::Partial | HeadError::Invalid(_) | HeadError::TooLarge | HeadError::Version,
        ) => {}
    }
    let mut headers = header_array();
    if let Ok(r) = parse_response(data, &mut headers) {
        assert!(r.len <= data.len());
    }
    let mut c = Chunked::default();
    let mut used = 0;
    for part in data.chunks(7) {
        match c.feed(part) {
            Ok(n) => {
                assert!(n <= part.len());
                used += n;
                if c.done() {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    assert!(used <= data.len());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inputs for the differential test: valid shapes, then refused ones.
    const CASES: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /x?y=1 HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n",
        b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloEXTRA",
        b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
        b"PUT /p HTTP/1.1\r\nHost: a\r\ncontent-length:  3 \r\n\r\nabc",
        b"POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n 2\r\n\r\n",
        b"GET / HTTP/1.1\nHost: a\n\n",
        b"GET / HTTP/1.1\r\nHost: a\rX: 1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n",
    ];

    /// What pingora's own HTTP/1 server session makes of the same bytes: the method, the
    /// path and the body it reads, or `None` when it refuses them.
    async fn pingora_view(input: &[u8]) -> Option<(String, String, Vec<u8>)> {
        use tokio::io::AsyncWriteExt;
        let (a, mut b) = tokio::net::UnixStream::pair().ok()?;
        b.write_all(input).await.ok()?;
        b.shutdown().await.ok()?;
        let stream: pingora::protocols::Stream =
            Box::new(pingora::protocols::l4::stream::Stream::from(a));
        let mut s = pingora::protocols::http::v1::server::HttpSession::new(stream);
        s.read_request().await.ok()??;
        let req = s.req_header();
        let (method, path) = (req.method.to_string(), req.uri.to_string());
        let mut body = Vec::new();
        while let Some(chunk) = s.read_body_bytes().await.ok()? {
            body.extend_from_slice(&chunk);
        }
        Some((method, path, body))
    }

    /// The differential test the issue asks for: whenever the fast path accepts a request,
    /// pingora's v1 session reads the same request and the same body from the same bytes.
    /// (The fast path refuses more than pingora does, by design: it never forwards those.)
    #[tokio::test]
    async fn fast_path_and_pingora_agree_on_framing() {
        let mut seeds: Vec<Vec<u8>> = CASES.iter().map(|c| c.to_vec()).collect();
        for e in std::fs::read_dir("../fuzz/corpus/http_framing").expect("seed corpus") {
            seeds.push(std::fs::read(e.expect("entry").path()).expect("seed"));
        }
        let mut compared = 0;
        for input in &seeds {
            let mut headers = header_array();
            let Ok(h) = parse_request(input, &mut headers) else {
                continue;
            };
            if !h.fast_path() {
                continue;
            }
            let body_len = match h.framing {
                Framing::Length(n) => usize::try_from(n).unwrap_or(usize::MAX),
                _ => 0,
            };
            let Some(body) = input.get(h.len..h.len.saturating_add(body_len)) else {
                continue;
            };
            let ours = (h.method.to_owned(), h.path.to_owned(), body.to_vec());
            let theirs = pingora_view(input).await;
            assert_eq!(
                theirs.as_ref(),
                Some(&ours),
                "{:?}",
                String::from_utf8_lossy(input)
            );
            compared += 1;
        }
        assert!(
            compared >= 5,
            "the differential compared too little: {compared}"
        );
    }

    #[test]
    fn client_hellos_of_real_clients_name_what_rustls_reads() {
        let mut n = 0;
        for e in std::fs::read_dir("../fuzz/corpus/tls_hello").expect("seed corpus") {
            let data = std::fs::read(e.expect("entry").path()).expect("seed");
            let mut scratch = Vec::new();
            assert!(
                matches!(hello::parse(&data, &mut scratch), Hello::Complete(_)),
                "a real ClientHello reads whole"
            );
            client_hello(&data);
            // Every prefix, and the hello split into small records, hold too.
            for cut in 0..data.len() {
                client_hello(&data[..cut]);
            }
            n += 1;
        }
        assert!(n >= 3, "seed corpus went missing");
        // rustls' own client, with and without a name.
        for name in [Some("app.lab.test"), Some("App.Lab.Test"), None] {
            let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
            let mut config = config;
            config.enable_sni = name.is_some();
            let server = rustls_pki_types::ServerName::try_from(name.unwrap_or("x.test"))
                .expect("name")
                .to_owned();
            let mut conn =
                rustls::ClientConnection::new(std::sync::Arc::new(config), server).expect("client");
            let mut bytes = Vec::new();
            conn.write_tls(&mut bytes).expect("hello");
            let mut scratch = Vec::new();
            assert_eq!(
                hello::parse(&bytes, &mut scratch),
                Hello::Complete(name),
                "{name:?}"
            );
            client_hello(&bytes);
        }
    }

    #[test]
    fn seed_corpus_passes_the_properties() {
        let mut n = 0;
        for e in std::fs::read_dir("../fuzz/corpus/http_framing").expect("seed corpus") {
            framing_bytes(&std::fs::read(e.expect("entry").path()).expect("seed"));
            n += 1;
        }
        for c in CASES {
            framing_bytes(c);
        }
        assert!(n >= 3, "seed corpus went missing");
    }
}
