//! The client: hyper's pooled client over the [`Connector`], with labgate's limits and
//! redirect policy.

use std::error::Error as _;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, LOCATION, USER_AGENT};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls_pki_types::CertificateDer;
use tracing::debug;

use crate::Redacted;
use crate::connect::Connector;
use crate::error::Error;
use crate::names::Resolve;
use crate::redirect::{basic_credentials, follow};

/// Most redirects one GET follows: a list moved to a release page or a CDN takes one or two.
pub const MAX_REDIRECTS: usize = 5;
/// How long an idle connection waits in the pool for the next request to its host.
const POOL_IDLE: Duration = Duration::from_secs(60);
/// What labgate calls itself, unless the request already says.
const AGENT: &str = concat!("labgate/", env!("CARGO_PKG_VERSION"));

/// What one exchange may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes of body read.
    pub body: usize,
    /// Longest the whole exchange may take: resolution, connection, redirects and body.
    pub time: Duration,
}

/// labgate's HTTP client: pooled connections (HTTP/1.1, or HTTP/2 where TLS negotiates it)
/// opened by Happy Eyeballs to the addresses a [`Resolve`] gives, servers checked against the
/// public (webpki) roots. Clones share the pool.
#[derive(Clone)]
pub struct Client {
    http: legacy::Client<Connector, Full<Bytes>>,
    resolve: Arc<dyn Resolve>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

impl Client {
    /// A client finding hosts through `resolve` and trusting the public roots.
    ///
    /// # Errors
    /// rustls' error if it cannot make a TLS configuration with the ring provider.
    pub fn new(resolve: Arc<dyn Resolve>) -> Result<Self, rustls::Error> {
        Self::trusting(resolve, &[])
    }

    /// A client like this one (the same [`Resolve`]) that also trusts `roots`, with a pool of
    /// its own: a private ACME server's CA.
    ///
    /// # Errors
    /// rustls' error for a certificate it cannot use as a root.
    pub fn with_roots(&self, roots: &[CertificateDer<'static>]) -> Result<Self, rustls::Error> {
        Self::trusting(Arc::clone(&self.resolve), roots)
    }

    fn trusting(
        resolve: Arc<dyn Resolve>,
        extra: &[CertificateDer<'static>],
    ) -> Result<Self, rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for der in extra {
            roots.add(der.clone())?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let connector = Connector::new(Arc::clone(&resolve), Arc::new(tls));
        let http = legacy::Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE)
            .build(connector);
        Ok(Self { http, resolve })
    }

    /// Sends `req` (its URI absolute) as it is, following no redirect: the answer, whatever
    /// its status, with its body read.
    ///
    /// # Errors
    /// Why there is no answer; [`Error::TooLarge`] past `limits.body`, [`Error::Timeout`]
    /// past `limits.time`.
    pub async fn send(
        &self,
        req: Request<Bytes>,
        limits: Limits,
    ) -> Result<Response<Bytes>, Error> {
        let url = shown(req.uri());
        within(limits.time, &url, async {
            let (parts, body) = self.head(req.map(Full::new), &url).await?.into_parts();
            let body = read(body, limits.body, &url).await?;
            Ok(Response::from_parts(parts, body))
        })
        .await
    }

    /// The body of a successful GET of `url` (`http` or `https`), following up to
    /// [`MAX_REDIRECTS`] redirects. The URL's user and password, if any, go as Basic
    /// authorization, and along a redirect only to the same host and port.
    ///
    /// # Errors
    /// Why there is no body: a status other than success, a refused redirect, and those of
    /// [`Client::send`].
    pub async fn get(&self, url: &url::Url, limits: Limits) -> Result<Bytes, Error> {
        let shown = Redacted(url).to_string();
        within(limits.time, &shown, self.get_following(url, limits.body)).await
    }

    async fn get_following(&self, first: &url::Url, limit: usize) -> Result<Bytes, Error> {
        let mut url = first.clone();
        let mut redirects = 0;
        loop {
            let shown = Redacted(&url).to_string();
            let rsp = self.head(get_request(&url, &shown)?, &shown).await?;
            let status = rsp.status();
            if status.is_success() {
                return read(rsp.into_body(), limit, &shown).await;
            }
            if !is_redirect(status) {
                return Err(Error::Status { url: shown, status });
            }
            if redirects == MAX_REDIRECTS {
                return Err(Error::RedirectLoop {
                    url: shown,
                    max: MAX_REDIRECTS,
                });
            }
            redirects += 1;
            let next = rsp
                .headers()
                .get(LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| url.join(l).ok())
                .ok_or_else(|| Error::BadLocation {
                    url: shown.clone(),
                    status,
                })?;
            let next = follow(&url, next)?;
            debug!("{shown} redirects to {}", Redacted(&next));
            url = next;
        }
    }

    /// The answer's head.
    async fn head(
        &self,
        mut req: Request<Full<Bytes>>,
        url: &str,
    ) -> Result<Response<Incoming>, Error> {
        req.headers_mut()
            .entry(USER_AGENT)
            .or_insert(HeaderValue::from_static(AGENT));
        self.http.request(req).await.map_err(|e| {
            // The connector's own error, boxed by hyper, comes back as itself.
            match e.source().and_then(|s| s.downcast_ref::<Error>()) {
                Some(ours) => ours.clone(),
                None => Error::Exchange {
                    url: url.to_owned(),
                    source: Arc::new(e),
                },
            }
        })
    }
}

/// A GET of `url`: its credentials as Basic authorization, not in the request's URI.
fn get_request(url: &url::Url, shown: &str) -> Result<Request<Full<Bytes>>, Error> {
    let bad = |what| Error::Url {
        url: shown.to_owned(),
        what,
    };
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("labgate fetches http and https URLs only"));
    }
    if !url.has_host() {
        return Err(bad("the URL has no host"));
    }
    // SECURITY: from the host on, so the user and password never reach the request line.
    let target = format!(
        "{}://{}",
        url.scheme(),
        &url[url::Position::BeforeHost..url::Position::AfterQuery]
    );
    let mut req = Request::get(target);
    if let Some(credentials) = basic_credentials(url) {
        req = req.header(AUTHORIZATION, credentials);
    }
    req.body(Full::new(Bytes::new()))
        .map_err(|_| bad("not a URL an HTTP request can carry"))
}

/// Whether `status` is a redirect a GET follows.
fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// A body, at most `limit` bytes of it.
async fn read(body: Incoming, limit: usize, url: &str) -> Result<Bytes, Error> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(Error::TooLarge {
            url: url.to_owned(),
            limit,
        }),
        Err(e) => Err(Error::Exchange {
            url: url.to_owned(),
            source: Arc::from(e),
        }),
    }
}

/// `work`, or [`Error::Timeout`] once `time` has passed.
async fn within<T>(
    time: Duration,
    url: &str,
    work: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    tokio::time::timeout(time, work).await.unwrap_or_else(|_| {
        Err(Error::Timeout {
            url: url.to_owned(),
            after: time,
        })
    })
}

/// A request's URI as errors show it ([`Redacted`]).
fn shown(uri: &http::Uri) -> String {
    url::Url::parse(&uri.to_string()).map_or_else(
        |_| "a request without an absolute URL".to_owned(),
        |u| Redacted(&u).to_string(),
    )
}
