//! Bodies by their framing: the request body upstream, the response body to the client, and
//! the response head as the client gets it.

use std::time::Duration;

use bytes::Buf;
use pingora::protocols::Stream;
use tokio::io::AsyncReadExt;

use super::exchange::Exchange;
use super::{BODY_BUF, BODY_TIMEOUT, COALESCE_MAX, Conn, Failure, send};
use crate::chunked::Chunked;
use crate::head::{self, Framing};
use crate::rewrite::decimal;

impl Conn {
    /// Moves the body bytes already read behind the response head in `out`, so both leave in
    /// one write: over TLS one record instead of two (a record costs an allocation and a
    /// seal). Returns the framing of what is left to relay.
    pub(super) fn coalesce_body(&mut self, framing: Framing) -> Framing {
        let Framing::Length(n) = framing else {
            return framing;
        };
        let take = usize::try_from(n)
            .unwrap_or(usize::MAX)
            .min(self.ubuf.len())
            .min(COALESCE_MAX);
        self.out.extend_from_slice(&self.ubuf[..take]);
        self.ubuf.advance(take);
        match n - take as u64 {
            0 => Framing::Empty,
            left => Framing::Length(left),
        }
    }

    /// Copies exactly `n` request body bytes from the client upstream.
    pub(super) async fn copy_request_body(
        &mut self,
        up: &mut Stream,
        n: u64,
    ) -> Result<(), Exchange> {
        let mut left = n;
        let have = usize::try_from(left)
            .unwrap_or(usize::MAX)
            .min(self.rbuf.len());
        if !send(&mut self.watch, up, &self.rbuf[..have]).await {
            return Err(Exchange::Stale);
        }
        self.rbuf.advance(have);
        left -= have as u64;
        if left > 0 && self.body.len() < BODY_BUF {
            self.body.resize(BODY_BUF, 0);
        }
        while left > 0 {
            let want = usize::try_from(left).unwrap_or(usize::MAX).min(BODY_BUF);
            let read = self.down.read(&mut self.body[..want]);
            let got = match self.watch.limit(BODY_TIMEOUT, read).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return Err(Exchange::Fail(Failure::Client)),
                Ok(Ok(k)) => k,
            };
            if !send(&mut self.watch, up, &self.body[..got]).await {
                return Err(Exchange::Fail(Failure::Backend(
                    502,
                    "closed the connection while receiving the request body",
                )));
            }
            left -= got as u64;
        }
        Ok(())
    }

    /// Relays the response body by its framing. `Ok(true)` when it ended where the framing
    /// said, so the upstream connection can be reused; `Err` when either side failed.
    pub(super) async fn relay_body(
        &mut self,
        up: &mut Stream,
        framing: Framing,
        read_timeout: Duration,
    ) -> Result<bool, ()> {
        match framing {
            Framing::Empty => Ok(true),
            Framing::Length(n) => {
                let mut left = n;
                loop {
                    let take = usize::try_from(left)
                        .unwrap_or(usize::MAX)
                        .min(self.ubuf.len());
                    if !send(&mut self.watch, &mut self.down, &self.ubuf[..take]).await {
                        return Err(());
                    }
                    self.ubuf.advance(take);
                    left -= take as u64;
                    if left == 0 {
                        return Ok(true);
                    }
                    self.read_up(up, read_timeout).await?;
                }
            }
            Framing::Chunked => {
                let mut chunked = Chunked::default();
                loop {
                    let used = chunked.feed(&self.ubuf).map_err(|_| ())?;
                    if !send(&mut self.watch, &mut self.down, &self.ubuf[..used]).await {
                        return Err(());
                    }
                    self.ubuf.advance(used);
                    if chunked.done() {
                        return Ok(true);
                    }
                    self.read_up(up, read_timeout).await?;
                }
            }
            Framing::Close => loop {
                if !send(&mut self.watch, &mut self.down, &self.ubuf).await {
                    return Err(());
                }
                self.ubuf.clear();
                match self
                    .watch
                    .limit(read_timeout, up.read_buf(&mut self.ubuf))
                    .await
                {
                    Ok(Ok(0)) => return Ok(false),
                    Ok(Ok(_)) => {}
                    Ok(Err(_)) | Err(_) => return Err(()),
                }
            },
        }
    }

    /// Reads more backend bytes; `Err` on EOF, error or timeout.
    pub(super) async fn read_up(
        &mut self,
        up: &mut Stream,
        read_timeout: Duration,
    ) -> Result<(), ()> {
        if self.ubuf.capacity() - self.ubuf.len() < 4096 {
            self.ubuf.reserve(BODY_BUF);
        }
        match self
            .watch
            .limit(read_timeout, up.read_buf(&mut self.ubuf))
            .await
        {
            Ok(Ok(n)) if n > 0 => Ok(()),
            _ => Err(()),
        }
    }
}

/// The response head as the client gets it.
pub(super) fn write_downstream_head(out: &mut Vec<u8>, r: &head::ResponseHead<'_>, close: bool) {
    let mut status = [0u8; 20];
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(decimal(r.status.into(), &mut status));
    out.push(b' ');
    out.extend_from_slice(r.reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    for f in r.headers {
        if r.is_hop_by_hop(f.name) {
            continue;
        }
        out.extend_from_slice(f.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(f.value);
        out.extend_from_slice(b"\r\n");
    }
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}
