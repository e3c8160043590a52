//! The start of the DNS listeners on already-bound sockets (G3), and their stop: UDP on
//! labgate's own batched workers (`udp`), TCP and DNS over TLS on labgate's own stream
//! listeners (`stream`), all answering through one [`Dns`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use hickory_server::server::default_tls_server_config;
use rustls::server::ResolvesServerCert;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::front::Dns;
use crate::stream::{DRAIN, MAX_CONNECTIONS, MAX_CONNECTIONS_PER_CLIENT, Streams};

/// The running DNS listeners.
pub struct DnsServer {
    streams: Streams,
    listeners: Vec<tokio::task::JoinHandle<()>>,
    udp: Vec<std::thread::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl DnsServer {
    /// Stops the UDP workers (within their stop check) and the stream listeners; open TCP
    /// and TLS connections get a few seconds to send the answers they owe.
    pub async fn shutdown(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.streams.stop.cancel();
        let workers = self.udp;
        let _ = tokio::task::spawn_blocking(move || {
            for w in workers {
                let _ = w.join();
            }
        })
        .await;
        for l in self.listeners {
            let _ = l.await;
        }
        // Every connection holds a slot until it has closed.
        let all = u32::try_from(MAX_CONNECTIONS).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(DRAIN, self.streams.slots.acquire_many(all)).await;
    }
}

/// Starts serving on already-bound sockets (G3): each UDP socket on its own worker thread
/// (labgate's batched loop, fast path first), TCP and DNS over TLS (with `certs`, ALPN `dot`,
/// TLS 1.2 and 1.3) on labgate's stream listeners. Call it within a tokio runtime: the
/// general path runs there.
///
/// # Errors
/// When a worker thread cannot be started, or the TLS configuration cannot be built.
pub fn serve(
    dns: Dns,
    udp: Vec<std::net::UdpSocket>,
    tcp: Vec<TcpListener>,
    (tls, certs): (Vec<TcpListener>, Arc<dyn ResolvesServerCert>),
) -> std::io::Result<DnsServer> {
    let stop = Arc::new(AtomicBool::new(false));
    let rt = tokio::runtime::Handle::current();
    let count = udp.len();
    let mut workers = Vec::with_capacity(count);
    for (i, socket) in udp.into_iter().enumerate() {
        let (dns, rt, stop) = (dns.clone(), rt.clone(), Arc::clone(&stop));
        workers.push(
            std::thread::Builder::new()
                .name(format!("labgate dns udp {i}"))
                .spawn(move || crate::udp::run(&dns, socket, &rt, (&stop, i, count)))?,
        );
    }
    let streams = Streams {
        dns,
        slots: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        clients: Arc::default(),
        per_client: MAX_CONNECTIONS_PER_CLIENT,
        stop: CancellationToken::new(),
    };
    let mut listeners: Vec<_> = tcp
        .into_iter()
        .map(|l| tokio::spawn(streams.clone().listen(l, None)))
        .collect();
    if !tls.is_empty() {
        let acceptor = TlsAcceptor::from(Arc::new(default_tls_server_config(b"dot", certs)?));
        listeners.extend(
            tls.into_iter()
                .map(|l| tokio::spawn(streams.clone().listen(l, Some(acceptor.clone())))),
        );
    }
    Ok(DnsServer {
        streams,
        listeners,
        udp: workers,
        stop,
    })
}
