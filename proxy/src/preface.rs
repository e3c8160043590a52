//! A bound on an HTTP/2 client's first bytes. pingora's h2 server waits for the connection
//! preface without one, so a client that completed its TLS handshake with ALPN h2 and then
//! said nothing held its connection forever (HTTP/1.1 gets [`crate::fast::HEAD_TIMEOUT`]).
//! Once any byte came, pingora's own idle bound for h2 connections takes over.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    ALPN, GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
    Stream, TimingDigest, UniqueID, UniqueIDType,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// A connection whose first read must bring bytes within a bound; a read past it fails with
/// `TimedOut`, which ends pingora's h2 handshake and the connection.
#[derive(Debug)]
pub(crate) struct Preface {
    inner: Stream,
    /// Until the first bytes came.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl Preface {
    /// `inner`, whose client has `limit` to send its first bytes.
    pub(crate) fn new(inner: Stream, limit: Duration) -> Self {
        Self {
            inner,
            deadline: Some(Box::pin(tokio::time::sleep(limit))),
        }
    }
}

impl AsyncRead for Preface {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        match polled {
            Poll::Ready(Ok(())) if buf.filled().len() > before => self.deadline = None,
            Poll::Ready(_) => {}
            Poll::Pending => {
                if let Some(deadline) = self.deadline.as_mut()
                    && deadline.as_mut().poll(cx).is_ready()
                {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no HTTP/2 connection preface in time",
                    )));
                }
            }
        }
        polled
    }
}

impl AsyncWrite for Preface {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

// What pingora asks of a connection, answered by the one inside.

#[async_trait]
impl Shutdown for Preface {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await;
    }
}

impl UniqueID for Preface {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for Preface {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for Preface {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for Preface {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
}

impl GetSocketDigest for Preface {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }
}

/// Peeking would pass the bound by; pingora peeks only plain connections (h2c).
impl Peek for Preface {}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_first_bytes_must_come_in_time_and_later_silence_is_not_bounded_here() {
        let (client, server) = tokio::io::duplex(64);
        let mut silent = Preface::new(Box::new(server), Duration::from_secs(10));
        let t0 = tokio::time::Instant::now();
        let got = silent.read(&mut [0u8; 8]).await;
        assert_eq!(got.map_err(|e| e.kind()), Err(std::io::ErrorKind::TimedOut));
        assert_eq!(t0.elapsed(), Duration::from_secs(10));

        let (mut client2, server) = tokio::io::duplex(64);
        let mut prompt = Preface::new(Box::new(server), Duration::from_secs(10));
        client2.write_all(b"PRI").await.expect("write");
        assert_eq!(prompt.read(&mut [0u8; 8]).await.expect("read"), 3);
        // Past the bound, silence is pingora's idle bound's to end.
        let mut buf = [0u8; 8];
        let wait = tokio::time::timeout(Duration::from_secs(30), prompt.read(&mut buf));
        assert!(wait.await.is_err(), "no deadline after the first bytes");
        drop((client, client2));
    }
}
