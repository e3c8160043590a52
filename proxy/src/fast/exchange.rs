//! The upstream side of one exchange: a connection (pinned, idle or new, with one retry),
//! the request sent, the response head read and passed on.

use std::sync::Arc;
use std::time::Duration;

use bytes::Buf;
use pingora::protocols::Stream;
use pingora::upstreams::peer::Peer;
use tokio::io::AsyncReadExt;

use super::relay::write_downstream_head;
use super::{Conn, Failure, Forward, Pinned, flush, release, send};
use crate::backends::BackendState;
use crate::head::{self, Framing, HeadError, header_array};
use crate::idle;
use crate::upstream::connect_failure;
use crate::{Proxy, ProxyState};

impl Conn {
    /// Sends the request and relays the response. `Ok((status, keep_alive))`.
    pub(super) async fn exchange(
        &mut self,
        proxy: &Proxy,
        state: &ProxyState,
        f: Forward,
    ) -> Result<(u16, bool), Failure> {
        self.rbuf.advance(f.head_len);
        let read_timeout = f.timeout;
        // The backend that has the request, counted in flight: moved with a retry.
        let mut backend = f.backend.in_flight();
        let mut fresh_only = false;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let (mut up, reused) = match self.connect(proxy, &backend, fresh_only).await {
                Ok(c) => c,
                Err((status, why)) => {
                    backend.failed();
                    // One retry on another backend when the connect failed: nothing was sent.
                    if attempts == 1
                        && let Some(other) = state
                            .pools
                            .get(f.served.service.index())
                            .and_then(|p| p.pick())
                            .filter(|b| !Arc::ptr_eq(b, &backend))
                    {
                        backend = other.in_flight();
                        continue;
                    }
                    break Err(Failure::Backend(status, why));
                }
            };
            match self.send_and_relay(&mut up, &f, read_timeout).await {
                Ok((status, keep, reusable)) => {
                    backend.succeeded();
                    if reusable {
                        self.pinned = Some(Pinned {
                            stream: up,
                            backend: Arc::clone(&backend),
                            since: tokio::time::Instant::now(),
                        });
                    }
                    break Ok((status, keep));
                }
                // A reused connection that the backend had closed: retry once, fresh.
                Err(Exchange::Stale) if reused && f.retryable && attempts < 3 => {
                    fresh_only = true;
                }
                Err(Exchange::Stale) => {
                    backend.failed();
                    break Err(Failure::Backend(
                        502,
                        "closed the connection without answering",
                    ));
                }
                Err(Exchange::Fail(e)) => {
                    if matches!(e, Failure::Backend(..)) {
                        backend.failed();
                    }
                    break Err(e);
                }
            }
        }
    }

    /// An upstream connection: the pinned one if it goes to `backend`, else an idle one of
    /// this thread's, else new. `Err((status, why))` when none can be had.
    async fn connect(
        &mut self,
        proxy: &Proxy,
        backend: &Arc<BackendState>,
        fresh_only: bool,
    ) -> Result<(Stream, bool), (u16, &'static str)> {
        if let Some(mut p) = self.pinned.take() {
            if Arc::ptr_eq(&p.backend, backend) && !fresh_only {
                // A backend with a short keep-alive (Node's is 5 s) may have closed it while
                // the client idled.
                if idle::open_and_clean(&mut p.stream) {
                    return Ok((p.stream, true));
                }
            } else {
                release(p);
            }
        }
        let peer = backend
            .peer()
            .ok_or((502, "has a host name that does not resolve"))?;
        if !fresh_only && let Some(stream) = idle::take(peer.reuse_hash()) {
            return Ok((stream, true));
        }
        proxy
            .new_backend_stream(&peer)
            .await
            .map(|s| (s, false))
            .map_err(|e| {
                tracing::warn!(backend = %backend.backend.url, "cannot connect: {e}");
                connect_failure(&e)
            })
    }

    /// Writes the head and body upstream and relays the response.
    async fn send_and_relay(
        &mut self,
        up: &mut Stream,
        f: &Forward,
        read_timeout: Duration,
    ) -> Result<(u16, bool, bool), Exchange> {
        if !send(&mut self.watch, up, &self.out).await {
            return Err(Exchange::Stale);
        }
        if let Framing::Length(n) = f.framing {
            self.copy_request_body(up, n).await?;
        }
        if !flush(&mut self.watch, up).await {
            return Err(Exchange::Stale);
        }
        self.ubuf.clear();
        let mut any_byte = false;
        loop {
            // Read until a full response head.
            let (status, out_framing, backend_close) = loop {
                {
                    let mut headers = header_array();
                    match head::parse_response(&self.ubuf, &mut headers) {
                        Err(HeadError::Partial) => {}
                        Ok(r) => {
                            let framing = r.framing(if f.is_head { "HEAD" } else { "GET" });
                            let close = f.close || r.close || framing == Framing::Close;
                            if r.status == 101 {
                                return Err(Exchange::Fail(Failure::Backend(
                                    502,
                                    "switched protocols without being asked",
                                )));
                            }
                            self.out.clear();
                            write_downstream_head(&mut self.out, &r, close);
                            let len = r.len;
                            let status = r.status;
                            let backend_close = r.close;
                            self.ubuf.advance(len);
                            break (status, framing, backend_close || framing == Framing::Close);
                        }
                        Err(_) => {
                            return Err(Exchange::Fail(Failure::Backend(
                                502,
                                "sent a malformed response",
                            )));
                        }
                    }
                }
                match self
                    .watch
                    .limit(read_timeout, up.read_buf(&mut self.ubuf))
                    .await
                {
                    Ok(Ok(0)) | Ok(Err(_)) if !any_byte => return Err(Exchange::Stale),
                    Ok(Ok(0)) | Ok(Err(_)) => {
                        return Err(Exchange::Fail(Failure::Backend(
                            502,
                            "closed the connection mid-answer",
                        )));
                    }
                    Ok(Ok(_)) => any_byte = true,
                    Err(_) => {
                        return Err(Exchange::Fail(Failure::Backend(
                            504,
                            "did not answer in time",
                        )));
                    }
                }
            };
            let body_framing = self.coalesce_body(out_framing);
            if !send(&mut self.watch, &mut self.down, &self.out).await {
                return Err(Exchange::Fail(Failure::Client));
            }
            if (100..200).contains(&status) {
                // Interim responses (103 Early Hints): pass on, then read the final one.
                continue;
            }
            let complete = self.relay_body(up, body_framing, read_timeout).await;
            let flushed = flush(&mut self.watch, &mut self.down).await;
            let (Ok(complete), true) = (complete, flushed) else {
                return Err(Exchange::Fail(Failure::Midway(status)));
            };
            let keep = complete && !f.close && out_framing != Framing::Close;
            let reusable = complete && !backend_close && self.ubuf.is_empty();
            return Ok((status, keep, reusable));
        }
    }
}

/// How an exchange on one upstream connection failed.
pub(super) enum Exchange {
    /// The connection was dead before any response byte: a retry is safe when idempotent.
    Stale,
    /// It failed for good: not retried on another connection.
    Fail(Failure),
}
