//! The ACME server's HTTP client: hyper over rustls (ring), public roots plus an optional
//! private CA (a private ACME server, Pebble in tests), TCP_NODELAY set (without it every
//! ACME request waits ~40 ms on delayed ACKs: ../shared/research/acme.md §6), host names
//! resolved by the binary's [`Resolve`], and every request timed for the latency histogram.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use bytes::Bytes;
use http::Request;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioExecutor;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use rustls_pki_types::CertificateDer;

use crate::Error;
use crate::metrics::Metrics;

/// Longest a TCP connect to the ACME server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest one ACME request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

type Inner = Client<hyper_rustls::HttpsConnector<Connector>, BodyWrapper<Bytes>>;

/// The TCP connector of labgate's ACME and DNS-provider clients.
pub(crate) type Connector = HttpConnector<Resolver>;

/// How the clients find a host's addresses. labgate's binary supplies its own records, then
/// its upstreams, then the system's resolver: on the VM labgate runs on, the system's
/// resolver is often labgate itself, which refuses an address in no network.
#[async_trait]
pub trait Resolve: Send + Sync {
    /// The addresses of `host`; empty when it has none.
    async fn addresses(&self, host: &str) -> Vec<IpAddr>;
}

/// hyper's resolver over a [`Resolve`].
#[derive(Clone)]
pub struct Resolver(Arc<dyn Resolve>);

impl Resolver {
    /// Names resolved by `resolve`.
    pub fn new(resolve: Arc<dyn Resolve>) -> Self {
        Self(resolve)
    }
}

impl tower_service::Service<Name> for Resolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let resolve = Arc::clone(&self.0);
        Box::pin(async move {
            // The connector sets the port.
            let addrs: Vec<SocketAddr> = resolve
                .addresses(name.as_str())
                .await
                .into_iter()
                .map(|ip| SocketAddr::new(ip, 0))
                .collect();
            if addrs.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!(
                        "{name} has no address in labgate's records, from its upstreams or from the system's resolver"
                    ),
                ));
            }
            Ok(addrs.into_iter())
        })
    }
}

/// An [`HttpClient`] for instant-acme.
#[derive(Clone)]
pub(crate) struct AcmeHttp {
    client: Inner,
    metrics: Arc<Metrics>,
}

impl AcmeHttp {
    /// A client trusting the public roots and `extra` (DER).
    pub(crate) fn new(
        extra: &[CertificateDer<'static>],
        resolver: Resolver,
        metrics: Arc<Metrics>,
    ) -> Result<Self, Error> {
        let (tls, http) = parts(extra, resolver).map_err(Error::DirectoryCa)?;
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(https),
            metrics,
        })
    }
}

/// What the ACME and DNS-provider clients share: TLS (ring) trusting the public roots plus
/// `extra`, and a TCP connector with TCP_NODELAY, a bounded connect and names resolved by
/// `resolver`.
pub(crate) fn parts(
    extra: &[CertificateDer<'static>],
    resolver: Resolver,
) -> Result<(rustls::ClientConfig, Connector), rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for der in extra {
        roots.add(der.clone())?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new_with_resolver(resolver);
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    Ok((tls, http))
}

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let server = req
            .uri()
            .authority()
            .map_or_else(String::new, ToString::to_string);
        let fut = self.client.request(req);
        let metrics = Arc::clone(&self.metrics);
        Box::pin(async move {
            #[allow(
                clippy::disallowed_methods,
                reason = "a request's latency is the time that really passed, not a test clock's"
            )]
            let started = Instant::now();
            // labgate's own errors, handed through instant-acme (`From<instant_acme::Error>`
            // takes them back out).
            let result = match tokio::time::timeout(REQUEST_TIMEOUT, fut).await {
                Ok(r) => r.map(BytesResponse::from).map_err(|source| {
                    instant_acme::Error::Other(Box::new(Error::Unreachable { server, source }))
                }),
                Err(_) => Err(instant_acme::Error::Other(Box::new(Error::Unanswered {
                    server,
                    after: REQUEST_TIMEOUT,
                }))),
            };
            metrics.request(started.elapsed());
            result
        })
    }
}
