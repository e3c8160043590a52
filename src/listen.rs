//! Binding listeners from the configuration's addresses, and the descriptor limit they need.
//! IPv6 sockets are v6-only so that `0.0.0.0:53` and `[::]:53` can both be bound, as the
//! defaults do.

use std::io::ErrorKind;
use std::net::SocketAddr;

use anyhow::Context;
use labgate_config::settings::Listen;
use socket2::{Domain, Protocol, Socket, Type};
use tracing::{info, warn};

use crate::upgrade::{Handover, Inherited, Kind};

/// Binds `workers` UDP sockets on one address with `SO_REUSEPORT` (the kernel spreads
/// datagrams over them), blocking, for labgate's UDP worker threads.
///
/// A port 0 is chosen by a plain socket first: the kernel may give a `SO_REUSEPORT` socket
/// that binds port 0 a port another of this user's `SO_REUSEPORT` sockets holds, and the two
/// would then share its datagrams (seen as one test's queries answered by another test's
/// labgate). A plain socket gets a port nobody holds; the group binds it at once after.
///
/// # Errors
/// When the address cannot be bound; the message names it and the config key.
pub fn udp_group(
    addr: SocketAddr,
    key: &str,
    workers: usize,
) -> anyhow::Result<Vec<std::net::UdpSocket>> {
    let failed = |e: &std::io::Error| bind_error(e, "udp", addr, key);
    if addr.port() != 0 {
        return bind_group(addr, workers).map_err(|e| failed(&e));
    }
    let mut last = None;
    for _ in 0..PORT_CHOICES {
        let at = std::net::UdpSocket::bind(addr)
            .and_then(|probe| probe.local_addr())
            .map_err(|e| failed(&e))?;
        match bind_group(at, workers) {
            Ok(group) => return Ok(group),
            // Taken between the probe and the group: choose again.
            Err(e) if e.kind() == ErrorKind::AddrInUse => last = Some(e),
            Err(e) => return Err(failed(&e)),
        }
    }
    Err(failed(&last.unwrap_or_else(|| ErrorKind::AddrInUse.into())))
}

/// How many ports a port-0 UDP group tries before giving up.
const PORT_CHOICES: usize = 16;
/// Receive buffer asked for each DNS UDP socket: room for a burst while its worker is busy
/// (at 30k q/s the default 208 KiB holds a few milliseconds of queries; measured at the start
/// of `benches/load/flood.sh`'s flood: 3,842 datagrams lost with it, 858 with this). The
/// kernel caps it at `net.core.rmem_max` (Debian's default is the same 208 KiB: raise it, as
/// Unbound's `so-rcvbuf` documentation says).
const UDP_RECEIVE_BUFFER: usize = 4 << 20;

/// `workers` (at least one) `SO_REUSEPORT` UDP sockets bound to `at`.
fn bind_group(at: SocketAddr, workers: usize) -> std::io::Result<Vec<std::net::UdpSocket>> {
    (0..workers.max(1))
        .map(|_| udp_socket(at).map(Into::into))
        .collect()
}

fn udp_socket(addr: SocketAddr) -> std::io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_port(true)?;
    // Best effort: a smaller buffer (the kernel's cap) still works.
    let _ = s.set_recv_buffer_size(UDP_RECEIVE_BUFFER);
    s.bind(&addr.into())?;
    Ok(s)
}

/// Every socket labgate serves on, bound before anything starts (G3): a busy port stops the
/// start-up with a message before any service runs, and a port 0 is chosen here, once, so
/// the banner reports the port every service then serves on.
#[derive(Debug)]
pub struct Listeners {
    /// The admin endpoint.
    pub admin: std::net::TcpListener,
    /// DNS over UDP: per address, one `SO_REUSEPORT` socket per worker ([`udp_group`]).
    pub dns_udp: Vec<Vec<std::net::UdpSocket>>,
    /// DNS over TCP, one per address of `dns_udp` (a port 0 is chosen apart for each).
    pub dns_tcp: Vec<std::net::TcpListener>,
    /// DNS over TLS.
    pub dns_tls: Vec<std::net::TcpListener>,
    /// The proxy's: HTTPS, HTTP and the tunnel origin.
    pub proxy: labgate_proxy::Sockets,
}

impl Listeners {
    /// Binds the addresses of `listen`, the proxy's first (as pingora did before labgate
    /// bound them), with `workers` UDP sockets per DNS address; an address whose sockets a
    /// previous process handed over (`inherited`) is served on those instead.
    ///
    /// # Errors
    /// The first address that cannot be bound; the message names it, the config key and
    /// what to do.
    pub fn bind(
        listen: &Listen,
        workers: usize,
        inherited: &mut Inherited,
    ) -> anyhow::Result<Self> {
        let mut all = |kind: Kind, addrs: &[SocketAddr], key: &str| {
            addrs
                .iter()
                .map(|&a| tcp_at(inherited, kind, a, key))
                .collect::<anyhow::Result<Vec<_>>>()
        };
        let proxy = labgate_proxy::Sockets {
            https: all(Kind::Https, &listen.https, "listen.https")?,
            http: all(Kind::Http, &listen.http, "listen.http")?,
            tunnel: all(Kind::Tunnel, &listen.tunnel, "listen.tunnel")?,
            tunnel_https: all(
                Kind::TunnelHttps,
                &listen.tunnel_https,
                "listen.tunnel_https",
            )?,
        };
        let dns_tls = all(Kind::DnsTls, &listen.dns_tls, "listen.dns_tls")?;
        let admin = tcp_at(inherited, Kind::Admin, listen.admin, "listen.admin")?;
        let mut dns_udp = Vec::new();
        let mut dns_tcp = Vec::new();
        for &addr in &listen.dns {
            let group = inherited.take(Kind::DnsUdp, addr);
            dns_udp.push(if group.is_empty() {
                udp_group(addr, "listen.dns", workers)?
            } else {
                group.into_iter().map(Into::into).collect()
            });
            dns_tcp.push(tcp_at(inherited, Kind::DnsTcp, addr, "listen.dns")?);
        }
        Ok(Self {
            admin,
            dns_udp,
            dns_tcp,
            dns_tls,
            proxy,
        })
    }

    /// Duplicates of every socket, each with the address `listen` names for it: what a new
    /// binary takes over ([`crate::upgrade`]).
    ///
    /// # Errors
    /// When a descriptor cannot be duplicated.
    pub fn handover(&self, listen: &Listen) -> std::io::Result<Handover> {
        let mut h = Handover::default();
        let pairs =
            |kind, addrs: &[SocketAddr], socks: &[std::net::TcpListener], h: &mut Handover| {
                addrs
                    .iter()
                    .zip(socks)
                    .try_for_each(|(&a, s)| h.keep(kind, a, s))
            };
        pairs(Kind::Https, &listen.https, &self.proxy.https, &mut h)?;
        pairs(Kind::Http, &listen.http, &self.proxy.http, &mut h)?;
        pairs(Kind::Tunnel, &listen.tunnel, &self.proxy.tunnel, &mut h)?;
        pairs(
            Kind::TunnelHttps,
            &listen.tunnel_https,
            &self.proxy.tunnel_https,
            &mut h,
        )?;
        pairs(Kind::DnsTls, &listen.dns_tls, &self.dns_tls, &mut h)?;
        pairs(Kind::DnsTcp, &listen.dns, &self.dns_tcp, &mut h)?;
        h.keep(Kind::Admin, listen.admin, &self.admin)?;
        for (&a, group) in listen.dns.iter().zip(&self.dns_udp) {
            group.iter().try_for_each(|s| h.keep(Kind::DnsUdp, a, s))?;
        }
        Ok(h)
    }
}

/// The listener handed over for `kind` at `at`, else a new one bound there.
fn tcp_at(
    inherited: &mut Inherited,
    kind: Kind,
    at: SocketAddr,
    key: &str,
) -> anyhow::Result<std::net::TcpListener> {
    match inherited.take(kind, at).into_iter().next() {
        Some(fd) => Ok(fd.into()),
        None => tcp(at, key),
    }
}

/// Binds a TCP listener: listening, non-blocking (as tokio and pingora take it), v6-only for
/// an IPv6 address.
///
/// # Errors
/// When the address cannot be bound; the message names it and the config key.
pub fn tcp(addr: SocketAddr, key: &str) -> anyhow::Result<std::net::TcpListener> {
    let s =
        socket(addr, Type::STREAM, Protocol::TCP).map_err(|e| bind_error(&e, "tcp", addr, key))?;
    s.listen(1024)
        .with_context(|| format!("cannot listen on tcp {addr}"))?;
    Ok(s.into())
}

/// Raises the soft limit on open files to the hard one, as nginx's `worker_rlimit_nofile`
/// or Go's runtime do: every connection is a descriptor (two through the proxy), and the
/// usual soft limit of 1024 would stall labgate at a few hundred clients, with no error a
/// client could see.
pub fn raise_open_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    if soft < hard {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => info!("open-file limit raised from {soft} to {hard}"),
            Err(e) => warn!("cannot raise the open-file limit from {soft} to {hard}: {e}"),
        }
    }
}

/// A bind failure, with the address, the config key and what to do next.
fn bind_error(e: &std::io::Error, proto: &str, addr: SocketAddr, key: &str) -> anyhow::Error {
    let next = match e.kind() {
        ErrorKind::AddrInUse => format!("another program listens there: stop it, or change {key}"),
        ErrorKind::PermissionDenied => {
            "ports below 1024 need root or the CAP_NET_BIND_SERVICE capability".to_owned()
        }
        ErrorKind::AddrNotAvailable => {
            format!("no interface of this host has that address: change {key}")
        }
        _ => format!("check {key}"),
    };
    anyhow::anyhow!("cannot bind {proto} {addr} ({key}): {e}; {next}")
}

fn socket(addr: SocketAddr, ty: Type, proto: Protocol) -> std::io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), ty, Some(proto))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    if ty == Type::STREAM {
        s.set_reuse_address(true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_0_group_never_joins_another_reuseport_socket() {
        // Other SO_REUSEPORT sockets of this user hold ports (other labgate instances, say).
        let held: Vec<Socket> = (0..200)
            .map(|_| udp_socket("127.0.0.1:0".parse().expect("addr")).expect("bind"))
            .collect();
        let ports: std::collections::HashSet<u16> = held
            .iter()
            .filter_map(|s| s.local_addr().ok()?.as_socket().map(|a| a.port()))
            .collect();
        // A plain SO_REUSEPORT bind to port 0 lands on one of them about once in 140 here.
        for _ in 0..2000 {
            let group =
                udp_group("127.0.0.1:0".parse().expect("addr"), "listen.dns", 2).expect("binds");
            let port = group[0].local_addr().expect("addr").port();
            assert!(!ports.contains(&port), "joined a held port {port}");
            assert_eq!(group[1].local_addr().expect("addr").port(), port);
        }
    }
}
