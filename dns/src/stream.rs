//! DNS over TCP and over TLS (RFC 7766, RFC 7858) on labgate's own accept loop: connections
//! are bounded ([`MAX_CONNECTIONS`] over every stream listener, then new ones wait in the
//! kernel's backlog; [`MAX_CONNECTIONS_PER_CLIENT`] from one client, beyond which a new one
//! is closed at once and counted), each idles at most [`TCP_IDLE_TIMEOUT`] (its TLS handshake
//! included), and pipelined queries are answered as they complete ([`MAX_PIPELINED`] at a time
//! per connection). hickory's own TCP server has no connection bound.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::admission::PerClient;
use crate::front::Dns;
use labgate_dnstap::Kind;
use labgate_querylog::{Lane, Transport};

use crate::log::Arrival;

/// Idle time after which a TCP connection is closed.
pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Open TCP and TLS connections at most, over all stream listeners.
pub const MAX_CONNECTIONS: usize = 1024;
/// Open TCP and TLS connections of one client (an IPv4 address, an IPv6 /64) at most: a stub
/// resolver keeps one or two, so one device cannot take every place.
pub const MAX_CONNECTIONS_PER_CLIENT: usize = 64;
/// Queries of one connection being answered at once; the next is read when one is done.
pub const MAX_PIPELINED: usize = 16;
/// Longest a stopping server waits for its connections' last answers.
pub(crate) const DRAIN: Duration = Duration::from_secs(4);
/// After `accept` fails (out of file descriptors), the pause before the next try.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What every stream listener shares.
#[derive(Clone)]
pub(crate) struct Streams {
    pub(crate) dns: Dns,
    /// One permit per open connection.
    pub(crate) slots: Arc<Semaphore>,
    /// Open connections per client.
    pub(crate) clients: Arc<PerClient>,
    /// How many one client may have open ([`MAX_CONNECTIONS_PER_CLIENT`]).
    pub(crate) per_client: usize,
    pub(crate) stop: CancellationToken,
}

/// A client's connection counted; uncounted on drop.
struct Counted {
    clients: Arc<PerClient>,
    slot: usize,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.clients.lower(self.slot);
    }
}

impl Streams {
    /// Accepts connections on `listener` until stopped; TLS first when `tls` is given.
    pub(crate) async fn listen(self, listener: TcpListener, tls: Option<TlsAcceptor>) {
        loop {
            let permit = tokio::select! {
                p = Arc::clone(&self.slots).acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => return,
                },
                () = self.stop.cancelled() => return,
            };
            let accepted = tokio::select! {
                a = listener.accept() => a,
                () = self.stop.cancelled() => return,
            };
            let (tcp, src) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    debug!("DNS stream accept failed: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            let (slot, open) = self.clients.raise(src.ip());
            let counted = Counted {
                clients: Arc::clone(&self.clients),
                slot,
            };
            if open >= self.per_client {
                // Closed at once: its place goes back to the others.
                self.dns.metrics().stream_refused();
                debug!(%src, "DNS stream connection refused: the client has {open} open");
                continue;
            }
            let _ = tcp.set_nodelay(true);
            let local = tcp.local_addr().ok();
            let (me, tls) = (self.clone(), tls.clone());
            tokio::spawn(async move {
                let _held = (permit, counted);
                match tls {
                    None => me.serve(tcp, (src, local, Transport::Tcp)).await,
                    Some(acceptor) => {
                        let handshake = tokio::select! {
                            h = tokio::time::timeout(TCP_IDLE_TIMEOUT, acceptor.accept(tcp)) => h,
                            () = me.stop.cancelled() => return,
                        };
                        match handshake {
                            Ok(Ok(stream)) => me.serve(stream, (src, local, Transport::Tls)).await,
                            Ok(Err(e)) => debug!(%src, "DNS over TLS handshake failed: {e}"),
                            Err(_) => debug!(%src, "DNS over TLS handshake timed out"),
                        }
                    }
                }
            });
        }
    }

    /// Reads length-prefixed queries until the client closes, idles too long, stops reading
    /// its answers, or the server stops; answers each query that parses as it is ready.
    async fn serve<S>(
        self,
        stream: S,
        (src, local, transport): (SocketAddr, Option<SocketAddr>, Transport),
    ) where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (mut rx, mut tx) = tokio::io::split(stream);
        let (answers, mut ready) = mpsc::channel::<Vec<u8>>(MAX_PIPELINED);
        let writer = tokio::spawn(async move {
            while let Some(a) = ready.recv().await {
                let Ok(len) = u16::try_from(a.len()) else {
                    continue;
                };
                let mut framed = Vec::with_capacity(2 + a.len());
                framed.extend_from_slice(&len.to_be_bytes());
                framed.extend_from_slice(&a);
                // A client that does not read its answers loses the connection. The flush
                // sends what TLS still holds.
                let sent = async {
                    tx.write_all(&framed).await?;
                    tx.flush().await
                };
                match tokio::time::timeout(TCP_IDLE_TIMEOUT, sent).await {
                    Ok(Ok(())) => {}
                    _ => return,
                }
            }
            let _ = tx.shutdown().await;
        });
        let in_flight = Arc::new(Semaphore::new(MAX_PIPELINED));
        loop {
            // The writer gone (the client stopped reading) ends the connection too.
            let turn = tokio::select! {
                t = Arc::clone(&in_flight).acquire_owned() => match t {
                    Ok(t) => t,
                    Err(_) => break,
                },
                () = answers.closed() => break,
                () = self.stop.cancelled() => break,
            };
            let query = tokio::select! {
                q = tokio::time::timeout(TCP_IDLE_TIMEOUT, read_message(&mut rx)) => q,
                () = answers.closed() => break,
                () = self.stop.cancelled() => break,
            };
            let Ok(Some(query)) = query else {
                break;
            };
            let arrival = Arrival::now(transport, Lane::Shared);
            self.dns
                .tap(&arrival, (Kind::ClientQuery, src, local), &query);
            let (dns, answers) = (self.dns.clone(), answers.clone());
            tokio::spawn(async move {
                let _turn = turn;
                let answer = dns.answer_stream(&query, src, arrival).await;
                drop(query);
                if let Some(a) = answer {
                    dns.tap(&arrival, (Kind::ClientResponse, src, local), &a);
                    let _ = answers.send(a).await;
                }
            });
        }
        // Answers still being made go out before the connection closes.
        drop(answers);
        let _ = writer.await;
    }
}

/// The next length-prefixed message; `None` at the end of the stream or on a short read.
/// The buffer grows as bytes arrive, not to the length the client announced.
async fn read_message<R: AsyncRead + Unpin>(rx: &mut R) -> Option<Vec<u8>> {
    let mut len = [0u8; 2];
    rx.read_exact(&mut len).await.ok()?;
    let len = u16::from_be_bytes(len);
    let mut msg = Vec::new();
    rx.take(u64::from(len)).read_to_end(&mut msg).await.ok()?;
    (msg.len() == usize::from(len)).then_some(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpStream;

    /// Sends one query (`a.lab.test A`) and waits at most `wait` for any answer.
    async fn answered(conn: &mut TcpStream, wait: Duration) -> bool {
        let mut q = vec![0, 16, 0, 7, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(&[1, b'a', 3, b'l', b'a', b'b', 4, b't', b'e', b's', b't', 0]);
        q.extend_from_slice(&[0, 1, 0, 1]);
        q[1] = u8::try_from(q.len() - 2).unwrap_or(u8::MAX);
        if conn.write_all(&q).await.is_err() {
            return false;
        }
        matches!(
            tokio::time::timeout(wait, read_message(conn)).await,
            Ok(Some(_))
        )
    }

    /// Stream listeners over the sample handler with `slots` connections in all and
    /// `per_client` per client, accepting on a loopback port.
    async fn serving(
        slots: usize,
        per_client: usize,
    ) -> (Streams, SocketAddr, tokio::task::JoinHandle<()>) {
        let streams = Streams {
            dns: crate::fuzzing::sample_handler(),
            slots: Arc::new(Semaphore::new(slots)),
            clients: Arc::default(),
            per_client,
            stop: CancellationToken::new(),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepting = tokio::spawn(streams.clone().listen(listener, None));
        (streams, addr, accepting)
    }

    #[tokio::test]
    async fn connections_past_the_bound_wait_until_one_closes() {
        let (streams, addr, accepting) = serving(2, 2).await;
        let long = Duration::from_secs(10);
        let mut first = TcpStream::connect(addr).await.expect("connect");
        let mut second = TcpStream::connect(addr).await.expect("connect");
        assert!(answered(&mut first, long).await);
        assert!(answered(&mut second, long).await);
        // The kernel completes the third connection; labgate does not take it yet.
        let mut third = TcpStream::connect(addr).await.expect("connect");
        assert!(
            !answered(&mut third, Duration::from_millis(300)).await,
            "a third connection was served while two were open"
        );
        drop(first);
        let answer = tokio::time::timeout(long, read_message(&mut third)).await;
        assert!(
            matches!(answer, Ok(Some(_))),
            "served once one closed: {answer:?}"
        );
        assert!(answered(&mut second, long).await, "the second still works");
        streams.stop.cancel();
        accepting.await.expect("the accept loop ends when stopped");
    }

    #[tokio::test]
    async fn a_client_past_its_share_is_closed_at_once_and_others_are_served() {
        let (streams, addr, accepting) = serving(10, 2).await;
        let long = Duration::from_secs(10);
        let from = |ip: &str| {
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            socket
                .bind(format!("{ip}:0").parse().expect("addr"))
                .expect("bind");
            socket.connect(addr)
        };
        let mut first = from("127.0.0.1").await.expect("connect");
        let mut second = from("127.0.0.1").await.expect("connect");
        assert!(answered(&mut first, long).await);
        assert!(answered(&mut second, long).await);
        // The third from the same address is closed unanswered, at once.
        let mut third = from("127.0.0.1").await.expect("connect");
        let mut byte = [0u8; 1];
        let closed = tokio::time::timeout(long, third.read(&mut byte)).await;
        assert!(
            matches!(closed, Ok(Ok(0) | Err(_))),
            "the third connection was kept: {closed:?}"
        );
        assert_eq!(streams.dns.metrics().stream_refused_count(), 1);
        // Another client is served, and the first two go on.
        let mut other = from("127.0.0.2").await.expect("connect");
        assert!(answered(&mut other, long).await, "another client is served");
        assert!(answered(&mut first, long).await);
        // A closed connection gives its place back.
        drop(second);
        let deadline = tokio::time::Instant::now() + long;
        loop {
            let mut again = from("127.0.0.1").await.expect("connect");
            if answered(&mut again, Duration::from_millis(500)).await {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the place never came back"
            );
        }
        streams.stop.cancel();
        accepting.await.expect("the accept loop ends when stopped");
    }
}
