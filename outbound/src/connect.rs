//! The client's connector: the host's addresses from the injected [`Resolve`], a TCP
//! connection by Happy Eyeballs, then TLS for `https`. hyper's pool calls it only when it has
//! no idle connection to the host.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper_rustls::MaybeHttpsStream;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;

use crate::error::Error;

/// What a TLS handshake may take once TCP connected. The caller's time limit covers it too,
/// except when hyper's pool hands the request another connection and lets this connect
/// finish in the background: then this bound is the only one.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
use crate::eyeballs;
use crate::names::Resolve;

/// A connection as the pool holds it.
pub(crate) type Stream = MaybeHttpsStream<TokioIo<TcpStream>>;

/// Opens connections for hyper's pool.
#[derive(Clone)]
pub(crate) struct Connector {
    resolve: Arc<dyn Resolve>,
    tls: Arc<rustls::ClientConfig>,
}

impl Connector {
    /// Hosts found by `resolve`, servers checked with `tls`.
    pub(crate) fn new(resolve: Arc<dyn Resolve>, tls: Arc<rustls::ClientConfig>) -> Self {
        Self { resolve, tls }
    }
}

impl tower_service::Service<Uri> for Connector {
    type Response = Stream;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Stream, Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let (resolve, tls) = (Arc::clone(&self.resolve), Arc::clone(&self.tls));
        Box::pin(async move { open(&*resolve, tls, &uri).await })
    }
}

/// A connection to `uri`'s host and port.
async fn open(
    resolve: &dyn Resolve,
    tls: Arc<rustls::ClientConfig>,
    uri: &Uri,
) -> Result<Stream, Error> {
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => {
            return Err(Error::Url {
                url: format!(
                    "{}://{}",
                    uri.scheme_str().unwrap_or_default(),
                    uri.host().unwrap_or_default()
                ),
                what: "labgate fetches http and https URLs only",
            });
        }
    };
    let host = uri.host().unwrap_or_default();
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let ips = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => resolve.addresses(bare).await,
    };
    if ips.is_empty() {
        return Err(Error::Resolve {
            host: bare.to_owned(),
        });
    }
    let order = eyeballs::order(&ips);
    let addrs: Vec<SocketAddr> = order.iter().map(|&ip| SocketAddr::new(ip, port)).collect();
    let tcp = eyeballs::connect(&addrs)
        .await
        .map_err(|e| Error::Connect {
            host: bare.to_owned(),
            port,
            addresses: order,
            source: Arc::new(e),
        })?;
    // Without TCP_NODELAY, each request of an exchange (ACME's are several) waits ~40 ms on
    // delayed ACKs (../shared/research/acme.md §6). A failure only costs that time.
    let _ = tcp.set_nodelay(true);
    let tcp = TokioIo::new(tcp);
    if !https {
        return Ok(MaybeHttpsStream::Http(tcp));
    }
    let name = ServerName::try_from(bare.to_owned()).map_err(|_| Error::Url {
        url: bare.to_owned(),
        what: "not a host name a certificate can name",
    })?;
    let handshake = tokio_rustls::TlsConnector::from(tls).connect(name, TokioIo::new(tcp));
    let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the TLS handshake did not finish within 10 s",
            ))
        })
        .map_err(|e| Error::Tls {
            host: bare.to_owned(),
            source: Arc::new(e),
        })?;
    Ok(MaybeHttpsStream::Https(TokioIo::new(tls)))
}
