//! Upstream sessions for pingora's path: HTTP/1.1 over the shared transport pool, or an
//! HTTP/2 stream (h2c backends) over pingora's h2 connection pool.

use pingora::ErrorType;
use pingora::protocols::Stream;
use pingora::protocols::http::client::HttpSession;
use pingora::protocols::http::v1::client::HttpSession as UpSession;
use pingora::upstreams::peer::{HttpPeer, Peer};

use crate::Proxy;
use crate::backends::POOL_IDLE;

impl Proxy {
    /// A session to `peer`: an h2 stream when `h2c`, else HTTP/1.1 on a pooled or new
    /// connection.
    pub(crate) async fn upstream_session(
        &self,
        peer: &HttpPeer,
        h2c: bool,
    ) -> pingora::Result<HttpSession> {
        if h2c {
            if let Some(h2) = self.h2.reused_http_session(peer).await? {
                return Ok(HttpSession::H2(h2));
            }
            // PERF: boxed, as in `new_backend_stream`.
            return Box::pin(self.h2.new_http_session::<_, ()>(peer)).await;
        }
        let stream = match self.connector.reused_stream(peer).await {
            Some(stream) => stream,
            None => self.new_backend_stream(peer).await?,
        };
        Ok(HttpSession::H1(UpSession::new_with_options(stream, peer)))
    }

    /// A new connection to `peer`.
    pub(crate) async fn new_backend_stream(&self, peer: &HttpPeer) -> pingora::Result<Stream> {
        // PERF: boxed. pingora's connect future is 8 KiB; awaited inline, it made every
        // connection's future that large, copied when its task is spawned and when it ends,
        // for the rare request that opens a backend connection.
        Box::pin(self.connector.new_stream(peer)).await
    }

    /// Returns a session whose exchange ended cleanly to its pool.
    pub(crate) async fn release_session(&self, up: HttpSession, peer: &HttpPeer) {
        match up {
            HttpSession::H1(mut h1) => {
                h1.respect_keepalive();
                if let Some(stream) = h1.reuse().await {
                    self.connector
                        .release_stream(stream, peer.reuse_hash(), Some(POOL_IDLE));
                }
            }
            HttpSession::H2(h2) => self.h2.release_http_session(h2, peer, Some(POOL_IDLE)),
            HttpSession::Custom(()) => {}
        }
    }
}

/// The status and page text for a failed connection to a backend, on either path; both log
/// the error at warn, which the texts that send the reader to the log rely on.
pub(crate) fn connect_failure(e: &pingora::Error) -> (u16, &'static str) {
    match e.etype {
        ErrorType::ConnectTimedout | ErrorType::TLSHandshakeTimedout => {
            (504, "did not accept a connection in time")
        }
        // The log line has the reason (an untrusted certificate: the service's
        // `backend_ca_file`; or plain HTTP on the port).
        ErrorType::TLSHandshakeFailure | ErrorType::InvalidCert => {
            (502, "failed the TLS handshake (labgate's log says why)")
        }
        // pingora's HTTP/2 connection preface failed.
        ErrorType::HandshakeError => (502, "did not speak HTTP/2 (h2c)"),
        _ => (
            502,
            "refused the connection or is unreachable (labgate's log has the error)",
        ),
    }
}
