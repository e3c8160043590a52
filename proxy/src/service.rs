//! pingora listening services: HTTPS and plain HTTP, both through the fast path (plain HTTP
//! redirects every service that does not set `plain_http`), and the Cloudflare Tunnel
//! origin (plain HTTP or HTTPS), whose requests all belong to the network `tunnel`.

use std::net::SocketAddr;
use std::os::fd::IntoRawFd;
use std::sync::Arc;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::listeners::{ConnectionFilter, L4BufferSettings, ListenerConfig, TcpSocketOptions};
use pingora::protocols::http::ServerSession;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{ALPN, Stream};
use pingora::server::{ListenFds, ShutdownWatch};
use pingora::services::listening::Service;

use crate::decide::Via;
use crate::fast::{self, Outcome};
use crate::general::General;
use crate::h2_path;
use crate::handshake::Tls;
use crate::preface::Preface;
use crate::{ConnInfo, Proxy};

/// The listening services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listener {
    /// HTTPS.
    Https,
    /// Plain HTTP.
    Http,
    /// The tunnel origin over plain HTTP.
    Tunnel,
    /// The tunnel origin over HTTPS.
    TunnelHttps,
}

impl Listener {
    /// Every listener, in the order of [`crate::Proxy`]'s connection counts.
    pub(crate) const ALL: [Self; 4] = [Self::Https, Self::Http, Self::Tunnel, Self::TunnelHttps];

    /// The metric label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Https => "https",
            Self::Http => "http",
            Self::Tunnel => "tunnel",
            Self::TunnelHttps => "tunnel_https",
        }
    }

    fn service_name(self) -> &'static str {
        match self {
            Self::Https => "labgate https",
            Self::Http => "labgate http",
            Self::Tunnel => "labgate tunnel",
            Self::TunnelHttps => "labgate tunnel https",
        }
    }

    fn tls(self) -> bool {
        matches!(self, Self::Https | Self::TunnelHttps)
    }

    fn via(self) -> Via {
        match self {
            Self::Https | Self::Http => Via::Direct,
            Self::Tunnel | Self::TunnelHttps => Via::Tunnel,
        }
    }

    fn sockets(self, at: &mut Sockets) -> Vec<std::net::TcpListener> {
        std::mem::take(match self {
            Self::Https => &mut at.https,
            Self::Http => &mut at.http,
            Self::Tunnel => &mut at.tunnel,
            Self::TunnelHttps => &mut at.tunnel_https,
        })
    }
}

/// The app behind the listeners: TLS (bounded, see [`crate::handshake`]), then h2 to
/// pingora's sessions and HTTP/1.1 to the fast path.
#[derive(Debug)]
pub(crate) struct Entry {
    proxy: Arc<Proxy>,
    general: Arc<General>,
    listener: Listener,
    tls: Option<Tls>,
}

#[async_trait]
impl ServerApp for Entry {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let via = self.listener.via();
        let peer = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()))
            .map(|ip| ip.to_canonical());
        // Through the tunnel every connection comes from `cloudflared`: no bound per address.
        let client = peer.filter(|_| via == Via::Direct);
        let limits = self.proxy.state.load().snapshot.connections;
        let open = &self.proxy.open[self.listener as usize];
        let Ok(_hold) = open.admit(client, limits) else {
            // Closed before a byte is read or written; counted by reason.
            return None;
        };
        let stream = match &self.tls {
            // PERF: boxed. The handshake's future (rustls' and pingora's acceptor) is several
            // KiB; inline, every connection's future kept that size for its whole life
            // (measured: 6.5 KiB more per idle connection).
            Some(tls) => Box::pin(tls.accept(stream)).await?,
            None => stream,
        };
        self.serve(stream, shutdown).await
    }
}

impl Entry {
    /// Serves a connection (its TLS handshake done) until it closes.
    async fn serve(self: &Arc<Self>, stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        let socket = stream.get_socket_digest();
        let ssl = stream.get_ssl_digest();
        let info = ConnInfo::from_digests(
            socket.as_ref().and_then(|d| d.peer_addr()),
            ssl.as_deref(),
            self.listener.via(),
        )?;
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            if !self
                .proxy
                .state
                .load()
                .h2_needs_session(info.sni.as_deref())
            {
                // PERF: every way out of here is boxed: this future lives as long as the
                // connection, at the size of its largest branch.
                Box::pin(h2_path::serve(&self.proxy, stream, info, shutdown.clone())).await;
                return None;
            }
            // pingora's h2 server waits for the connection preface without a bound: the
            // client gets as long as an HTTP/1.1 client gets for its first head.
            let stream = Box::new(Preface::new(stream, fast::HEAD_TIMEOUT));
            return Box::pin(self.general.process_new(stream, shutdown)).await;
        }
        // PERF: boxed. The HTTP/1 loop's future is 3.7 KiB (the fast path's); inline, every
        // HTTP/2 connection's future kept that size for its whole life.
        Box::pin(self.serve_http1(stream, info, shutdown)).await
    }

    /// Serves an HTTP/1 connection (or h2c, which pingora's session takes) until it closes:
    /// the fast path and pingora's HTTP/1 session take turns on it.
    async fn serve_http1(
        self: &Arc<Self>,
        stream: Stream,
        info: ConnInfo,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let mut stream = stream;
        let mut prefix = None;
        loop {
            match fast::serve(&self.proxy, stream, info.clone(), prefix.take()).await {
                Outcome::Done => return None,
                Outcome::Fallback(down, read) if read.starts_with(fast::H2C_PREFACE_LINE) => {
                    // Only plain TCP streams get here (the fast path checks): pingora's h2
                    // server reads the preface again from the rewound bytes.
                    let mut tcp = down.into_any().downcast::<L4Stream>().ok()?;
                    tcp.rewind(&read);
                    // PERF: boxed, as the session below.
                    return Box::pin(self.general.process_new(tcp, shutdown)).await;
                }
                Outcome::Fallback(down, read) => {
                    let mut session = ServerSession::new_http1(down);
                    session.set_pipelined_prefix(read);
                    if let ServerSession::H1(s) = &mut session {
                        s.set_pipelining_enabled(true);
                    }
                    // PERF: boxed. pingora's session future is 12 KiB; inline, it made every
                    // connection's future that large, fast path or not.
                    let (down, read) = Box::pin(self.general.handle(session)).await?.into_parts();
                    stream = down;
                    prefix = Some(read.unwrap_or_default());
                }
            }
        }
    }
}

/// The listeners' sockets, bound and listening before the proxy starts (G3): a test binds
/// port 0 and reads the port from the socket, and a busy port stops the start-up before
/// pingora runs.
#[derive(Debug, Default)]
pub struct Sockets {
    /// HTTPS.
    pub https: Vec<std::net::TcpListener>,
    /// Plain HTTP.
    pub http: Vec<std::net::TcpListener>,
    /// The tunnel origin over plain HTTP.
    pub tunnel: Vec<std::net::TcpListener>,
    /// The tunnel origin over HTTPS.
    pub tunnel_https: Vec<std::net::TcpListener>,
}

/// The listening services: HTTPS (TLS 1.2 and 1.3, ALPN h2 and http/1.1, certificates from
/// the store), plain HTTP (services with `plain_http`; the rest are redirected to HTTPS), and
/// the tunnel origin over either, each on its sockets (non-blocking, as tokio needs them).
///
/// # Errors
/// When pingora cannot build the TLS settings, or a socket has no local address.
pub fn listeners(
    proxy: &Arc<Proxy>,
    mut at: Sockets,
    threads: usize,
) -> Result<Vec<Bound>, crate::Error> {
    let mut services = Vec::new();
    for listener in Listener::ALL {
        let sockets = listener.sockets(&mut at);
        if sockets.is_empty() {
            continue;
        }
        let tls = if listener.tls() {
            Some(Tls::new(
                Arc::clone(&proxy.certs),
                Arc::clone(&proxy.metrics),
            )?)
        } else {
            None
        };
        let app = Entry {
            proxy: Arc::clone(proxy),
            general: Arc::new(General::new(Arc::clone(proxy), listener.via())),
            listener,
            tls,
        };
        let mut service = Service::new(listener.service_name().to_owned(), app);
        service.threads = Some(threads);
        service.set_connection_filter(Arc::new(AcceptAfterWaitingWork));
        let mut held = Vec::with_capacity(sockets.len());
        for socket in sockets {
            let addr = socket
                .local_addr()
                .map_err(crate::Error::Socket)?
                .to_string();
            // PERF: no buffers in front of the socket. pingora's default read buffer is 64 KiB,
            // zeroed for every connection, and every read was copied out of it again: the
            // fast path and rustls read into buffers of their own (measured: 4 % of the CPU of
            // one-request connections; TLS uploads of 1 MiB no dearer without it). Its write
            // buffer (1460 bytes) only copied what the fast path and rustls already write
            // whole: 1.3 KiB less per idle connection, CPU per request unchanged.
            // No TLS settings either: `Entry` drives the handshake, bounded (pingora's
            // listener gives one 60 s). No socket options: the socket is bound already
            // (v6-only for IPv6, as labgate's own sockets, so the defaults' `0.0.0.0:443` and
            // `[::]:443` do not collide).
            service.add_listener(
                ListenerConfig::tcp(addr.clone())
                    .tcp_socket_options(TcpSocketOptions::default())
                    .l4_buffer(L4BufferSettings::unbuffered()),
            );
            held.push((addr, socket));
        }
        services.push(Bound {
            service,
            sockets: held,
        });
    }
    Ok(services)
}

/// A listening service and the sockets it serves, bound before pingora runs. pingora takes a
/// listener's socket from its table of inherited sockets (the one a graceful upgrade fills)
/// when the table holds one for the listener's address, and binds one itself only when not:
/// the sockets go into that table, under the addresses they hold, as the service starts.
pub struct Bound {
    service: Service<Entry>,
    sockets: Vec<(String, std::net::TcpListener)>,
}

impl std::fmt::Debug for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bound")
            .field("sockets", &self.sockets)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl pingora::services::Service for Bound {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        listeners_per_fd: usize,
    ) {
        if let Some(fds) = &fds {
            let mut table = fds.lock();
            for (addr, socket) in self.sockets.drain(..) {
                // A socket handed over by a graceful upgrade keeps the address.
                if table.get(&addr).is_none() {
                    table.add(addr, socket.into_raw_fd());
                }
            }
        }
        self.service
            .start_service(fds, shutdown, listeners_per_fd)
            .await;
    }

    fn name(&self) -> &str {
        pingora::services::Service::name(&self.service)
    }

    fn threads(&self) -> Option<usize> {
        pingora::services::Service::threads(&self.service)
    }

    fn listen_addresses(&self) -> Option<Vec<String>> {
        pingora::services::Service::listen_addresses(&self.service)
    }
}

/// Lets the accept loop take its next connection only after the work already waiting on its
/// thread.
///
/// pingora's accept loop otherwise takes the whole backlog at once and spawns a task per
/// connection, so a burst of new TLS connections puts its handshakes ahead of the requests of
/// connections already open (measured: p50 10 ms against nginx's 2.5 ms for new-connection
/// requests at saturation). Yielding once per accepted connection leaves the rest of a burst
/// in the kernel's accept queue, as nginx does by accepting one connection per pass of its
/// event loop. It paces by the accept loop's own thread only (pingora spawns connections on
/// any thread), and a connection accepted just before shutdown may be closed unanswered
/// while it waits here.
#[derive(Debug)]
struct AcceptAfterWaitingWork;

#[async_trait]
impl ConnectionFilter for AcceptAfterWaitingWork {
    async fn should_accept(&self, _peer: Option<&SocketAddr>) -> bool {
        tokio::task::yield_now().await;
        true
    }
}
