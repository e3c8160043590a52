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
            if crate::plan::Executor::Fast.carries(&h, false) {
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
            if !crate::plan::Executor::Fast.carries(&h, false) {
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

/// The differential test of the executors: the same request bytes, planned by the fast path
/// from labgate's parse and by pingora's session from its own, get the same outcome, and when
/// both forward, the same upstream head (modulo the framing fields and the order of distinct
/// names, which pingora's header map groups).
#[cfg(test)]
mod executors {
    use pingora::protocols::http::ServerSession;
    use tokio::io::AsyncWriteExt;

    use crate::cf_access::KeySets;
    use crate::decide::Via;
    use crate::head::{header_array, parse_request};
    use crate::plan::tests::{conn, describe, state};
    use crate::plan::{Context, Executor, Plan, plan};
    use crate::rewrite::{HeaderSink, end_head};
    use crate::{ConnInfo, ProxyState};

    /// What an executor made of a request: the plan in words, and a forward's upstream head.
    type Outcome = (String, Option<Vec<u8>>);

    fn context<'a>(
        state: &'a ProxyState,
        c: &'a ConnInfo,
        keys: &'a KeySets,
        executor: Executor,
    ) -> Context<'a, 'a> {
        Context {
            state,
            conn: c,
            keys,
            now: 0,
            https_port: 443,
            keys_refreshed: true,
            pinned: None,
            executor,
        }
    }

    fn fast(state: &ProxyState, c: &ConnInfo, input: &[u8]) -> Option<Outcome> {
        let mut headers = header_array();
        let h = parse_request(input, &mut headers).ok()?;
        let keys = KeySets::default();
        let p = plan(&context(state, c, &keys, Executor::Fast), &h);
        let head = match &p {
            Plan::Forward(f) => {
                let mut out = Vec::new();
                f.rewrite.emit(&h, &mut out).ok()?;
                end_head(&mut out);
                Some(out)
            }
            _ => None,
        };
        Some((describe(&p, &state.snapshot), head))
    }

    async fn session(state: &ProxyState, c: &ConnInfo, input: &[u8]) -> Option<Outcome> {
        let (a, mut b) = tokio::net::UnixStream::pair().ok()?;
        b.write_all(input).await.ok()?;
        b.shutdown().await.ok()?;
        let mut session =
            ServerSession::new_http1(Box::new(pingora::protocols::l4::stream::Stream::from(a)));
        session.read_request().await.ok()?.then_some(())?;
        let (websocket, body) = crate::general::prepare(&mut session);
        let view = crate::general::SessionHead::new(session.req_header(), websocket, body);
        let keys = KeySets::default();
        let p = plan(&context(state, c, &keys, Executor::Session), &view);
        let head = match &p {
            Plan::Forward(f) => {
                let mut sink = HeaderSink::default();
                f.rewrite.emit(&view, &mut sink).ok()?;
                let head = sink.into_head()?;
                Some(pingora::protocols::http::v1::client::http_req_header_to_wire(&head)?.to_vec())
            }
            _ => None,
        };
        Some((describe(&p, &state.snapshot), head))
    }

    /// A head's request line and its fields by lower-case name (values in order per name),
    /// the framing fields left out.
    fn normalized(head: &[u8]) -> (String, Vec<(String, String)>) {
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut req = httparse::Request::new(&mut headers);
        assert!(
            matches!(req.parse(head), Ok(httparse::Status::Complete(_))),
            "an upstream head that does not parse: {:?}",
            String::from_utf8_lossy(head)
        );
        let line = format!("{:?} {:?}", req.method, req.path);
        let mut fields: Vec<(String, String)> = req
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .filter(|(n, _)| n != "content-length" && n != "transfer-encoding")
            .collect();
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        (line, fields)
    }

    const REQUESTS: &[&str] = &[
        "GET /x?y=1 HTTP/1.1\r\nHost: site.lab.test\r\nAccept: */*\r\nUser-Agent: t\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: site.lab.test\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\nKeep-Alive: 5\r\nTE: gzip\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: site.lab.test\r\nCookie: a=1\r\nAccept: */*\r\nCookie: b=2\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: site.lab.test\r\nX-Forwarded-For: 6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\nCf-Connecting-IP: 6.6.6.6\r\nCf-Access-Authenticated-User-Email: a@b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: app.lab.test\r\nX-Forwarded-Host: evil\r\n\r\n",
        "POST /up HTTP/1.1\r\nHost: site.lab.test\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello",
        "POST /up HTTP/1.1\r\nHost: site.lab.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "POST /up HTTP/1.1\r\nHost: site.lab.test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello",
        "GET / HTTP/1.0\r\nHost: site.lab.test\r\nConnection: keep-alive\r\n\r\n",
        "GET /ws HTTP/1.1\r\nHost: site.lab.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: site.lab.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n",
        "GET /admin/x HTTP/1.1\r\nHost: site.lab.test\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: grpc.lab.test\r\nTE: trailers\r\nContent-Type: application/grpc\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: app.lab.test\r\nContent-Length: 5000\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: nowhere.lab.test\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: SITE.Lab.Test.\r\n\r\n",
        "GET /p HTTP/1.1\r\nHost: pub.lab.test\r\nCf-Connecting-IP: 203.0.113.9\r\nCf-Ray: r1\r\nCf-Access-Authenticated-User-Email: forged@x\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n",
        "POST /p HTTP/1.1\r\nHost: pub.lab.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: guarded.lab.test\r\nX-User: forged\r\n\r\n",
    ];

    #[tokio::test]
    async fn every_executor_plans_and_writes_the_same_upstream_head() {
        let state = state();
        let mut inputs: Vec<Vec<u8>> = REQUESTS.iter().map(|r| r.as_bytes().to_vec()).collect();
        for e in std::fs::read_dir("../fuzz/corpus/http_framing").expect("seed corpus") {
            inputs.push(std::fs::read(e.expect("entry").path()).expect("seed"));
        }
        let clients = [
            conn("10.0.3.7", true, Via::Direct),
            conn("10.9.0.4", true, Via::Direct),
            conn("10.0.9.9", true, Via::Direct),
            conn("127.0.0.1", false, Via::Tunnel),
        ];
        let (mut heads, mut handed) = (0, 0);
        for c in &clients {
            for input in &inputs {
                let text = String::from_utf8_lossy(input);
                // Inputs labgate's parser refuses never reach a plan.
                let Some((fast_plan, fast_head)) = fast(&state, c, input) else {
                    continue;
                };
                let (session_plan, session_head) = session(&state, c, input)
                    .await
                    .unwrap_or_else(|| panic!("pingora read what labgate read: {text:?}"));
                if fast_plan == "handover" {
                    handed += 1;
                    assert!(
                        session_plan.contains(" forward "),
                        "what the fast path hands over, the session forwards: {session_plan} for {text:?}"
                    );
                    continue;
                }
                assert_eq!(fast_plan, session_plan, "{text:?} from {}", c.client);
                if let (Some(a), Some(b)) = (fast_head, session_head) {
                    assert_eq!(normalized(&a), normalized(&b), "{text:?} from {}", c.client);
                    heads += 1;
                }
            }
        }
        assert!(
            heads >= 20 && handed >= 10,
            "the differential compared too little: {heads} heads, {handed} handovers"
        );
    }
}
