//! An HTTP/2-without-TLS backend (hyper, prior knowledge), as gRPC servers are: it answers
//! with what it got and ends each response with gRPC-style trailers.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};

/// A running h2c backend; stops when dropped.
pub(crate) struct H2cBackend {
    pub(crate) port: u16,
    checks: Arc<AtomicUsize>,
    _rt: tokio::runtime::Runtime,
}

impl H2cBackend {
    pub(crate) fn start() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let checks = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&checks);
        rt.spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let counted = Arc::clone(&counted);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        if req.uri().path() == "/health" {
                            counted.fetch_add(1, Ordering::Relaxed);
                        }
                        answer(req)
                    });
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(conn), service)
                        .await;
                });
            }
        });
        Self {
            port,
            checks,
            _rt: rt,
        }
    }

    /// Health-check requests (`GET /health`) received so far.
    pub(crate) fn checks(&self) -> usize {
        self.checks.load(Ordering::Relaxed)
    }
}

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn answer(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let (parts, body) = req.into_parts();
    let got = body
        .collect()
        .await
        .map(|b| b.to_bytes().len())
        .unwrap_or(0);
    let host = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .unwrap_or_default();
    let field = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned()
    };
    let text = format!(
        "h2c {:?} {} {} authority={host} body={got} xfp={} te={}",
        parts.version,
        parts.method,
        parts.uri.path(),
        field("x-forwarded-proto"),
        field("te"),
    );
    let mut trailers = hyper::HeaderMap::new();
    trailers.insert("grpc-status", hyper::header::HeaderValue::from_static("0"));
    let body = Full::new(Bytes::from(text))
        .with_trailers(async move { Some(Ok(trailers)) })
        .boxed();
    Ok(Response::builder()
        .header("content-type", "application/grpc")
        .body(body)
        .expect("response"))
}

/// What an HTTP/2 client got: status, body and trailers.
pub(crate) struct H2Reply {
    pub(crate) status: u16,
    pub(crate) body: String,
    pub(crate) trailers: hyper::HeaderMap,
}

/// POSTs `body` to `https://host:port/path` over HTTP/2 (ALPN h2) with hyper, trusting `ca`,
/// with `fields` (each its own header field, repeated names too), and reads the whole answer,
/// trailers included (curl does not show trailers).
pub(crate) fn post_h2(
    port: u16,
    host: &str,
    path: &str,
    ca: &std::path::Path,
    body: &str,
    fields: &[(&str, &str)],
) -> H2Reply {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut config = super::https::client_config(ca);
    config.alpn_protocols = vec![b"h2".to_vec()];
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).expect("name");
    let mut request = Request::post(format!("https://{host}:{port}{path}"))
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("request");
    for (name, value) in fields {
        request.headers_mut().append(
            hyper::header::HeaderName::from_bytes(name.as_bytes()).expect("name"),
            hyper::header::HeaderValue::from_str(value).expect("value"),
        );
    }
    let exchange = async move {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .expect("TLS");
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .expect("h2 handshake");
        tokio::spawn(conn);
        let resp = send.send_request(request).await.expect("response");
        let status = resp.status().as_u16();
        let collected = resp.into_body().collect().await.expect("body");
        let trailers = collected.trailers().cloned().unwrap_or_default();
        H2Reply {
            status,
            body: String::from_utf8_lossy(&collected.to_bytes()).into_owned(),
            trailers,
        }
    };
    rt.block_on(async {
        tokio::time::timeout(std::time::Duration::from_secs(30), exchange)
            .await
            .expect("the exchange ends within 30 s")
    })
}
