//! The TLS side of the HTTPS listeners, driven by labgate rather than by pingora's listener
//! (which gives a handshake 60 s): the ClientHello is read ahead of rustls, a name no
//! certificate covers is refused with `unrecognized_name`, and the whole handshake, from the
//! accept on, is bounded by [`HANDSHAKE_TIMEOUT`].

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use pingora::listeners::TlsAccept;
use pingora::listeners::tls::{Acceptor, TlsSettings};
use pingora::protocols::Stream;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::tls::TlsRef;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::certs::{CertStore, Sni, sni_name};
use crate::hello::{self, Hello};
use crate::metrics::{HandshakeFailure as Failure, Metrics};

/// Longest a TLS handshake may take, from the accept to its end, ClientHello included: a
/// client that sends nothing, or stops halfway, is closed then (the same 10 s a request head
/// gets once the handshake is done).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// One listener's TLS: rustls through pingora's acceptor (ALPN h2 and http/1.1, certificates
/// from the store by SNI), after labgate's own look at the ClientHello.
pub(crate) struct Tls {
    acceptor: Acceptor,
    certs: Arc<CertStore>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").finish_non_exhaustive()
    }
}

impl Tls {
    /// TLS 1.2 and 1.3, ALPN h2 and http/1.1, certificates from `certs` by SNI.
    pub(crate) fn new(certs: Arc<CertStore>, metrics: Arc<Metrics>) -> Result<Self, crate::Error> {
        let mut tls = TlsSettings::with_callbacks(Box::new(SniCapture {
            metrics: Arc::clone(&metrics),
            certs: Arc::clone(&certs),
        }))
        .map_err(crate::Error::Tls)?;
        tls.set_cert_resolver(certs.clone());
        tls.enable_h2();
        Ok(Self {
            acceptor: tls.build(),
            certs,
            metrics,
        })
    }

    /// The TLS connection over a newly accepted one, or `None` (closed) when the handshake
    /// failed or outlived [`HANDSHAKE_TIMEOUT`]; failures are counted.
    pub(crate) async fn accept(&self, stream: Stream) -> Option<Stream> {
        // The listeners carry no pingora TLS settings: their streams are plain TCP.
        let tcp = stream.into_any().downcast::<L4Stream>().ok()?;
        let outcome = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.handshake(*tcp)).await;
        let why = match outcome {
            Ok(Ok(tls)) => return Some(tls),
            Ok(Err(why)) => why,
            Err(_) => Failure::Timeout,
        };
        tracing::debug!("TLS handshake failed: {}", why.label());
        self.metrics.handshake_failures.count(why);
        None
    }

    async fn handshake(&self, mut tcp: L4Stream) -> Result<Stream, Failure> {
        let read = self.read_hello(&mut tcp).await?;
        // rustls reads the ClientHello again from the start.
        tcp.rewind(&read);
        drop(read);
        match self.acceptor.tls_handshake(tcp).await {
            Ok(tls) => Ok(Box::new(tls)),
            Err(e) => {
                tracing::debug!("TLS handshake: {e}");
                Err(Failure::Error)
            }
        }
    }

    /// Reads the ClientHello (and whatever came with it) and refuses an unknown name.
    async fn read_hello(&self, tcp: &mut L4Stream) -> Result<Vec<u8>, Failure> {
        let mut read = Vec::with_capacity(2048);
        let mut scratch = Vec::new();
        loop {
            match hello::parse(&read, &mut scratch) {
                Hello::Partial if read.len() < hello::MAX_HELLO => {}
                Hello::Complete(name) if !self.certs.resolves(name) => {
                    // SECURITY: rustls' alert for a name without a certificate is
                    // access_denied; this one says only that the name is unknown here.
                    let _ = tcp.write_all(&hello::UNRECOGNIZED_NAME).await;
                    let _ = tcp.flush().await;
                    return Err(Failure::UnknownName);
                }
                // Whatever else rustls answers: a ClientHello it reads, or bytes it refuses.
                Hello::Partial | Hello::Complete(_) | Hello::Other => return Ok(read),
            }
            read.reserve(hello::MAX_HELLO.saturating_sub(read.len()).min(4096));
            match tcp.read_buf(&mut read).await {
                Ok(0) | Err(_) => return Err(Failure::Error),
                Ok(_) => {}
            }
        }
    }
}

/// Handshake callbacks: records the SNI and the certificate so requests can be checked
/// against them (421), and counts completed handshakes.
#[derive(Debug)]
pub(crate) struct SniCapture {
    /// The proxy's counters.
    pub(crate) metrics: Arc<Metrics>,
    /// The certificates the handshake chose from.
    pub(crate) certs: Arc<CertStore>,
}

#[async_trait::async_trait]
impl TlsAccept for SniCapture {
    async fn handshake_complete_callback(
        &self,
        tls: &TlsRef,
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        self.metrics
            .handshakes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut buf = [0u8; labgate_config::route::MAX_HOST_LEN];
        let name = sni_name(tls.server_name(), &mut buf);
        // The store may have changed since `resolve`: then the next request's check fails
        // (421) and the client opens a new connection.
        let certs = self.certs.current();
        Some(Arc::new(Sni {
            name: name.map(Arc::from),
            cert: certs.for_name(name).cloned(),
            certs,
        }))
    }
}
