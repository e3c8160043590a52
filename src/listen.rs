//! Binding listeners from the configuration's addresses. IPv6 sockets are v6-only so that
//! `0.0.0.0:53` and `[::]:53` can both be bound, as the defaults do.

use std::net::SocketAddr;

use anyhow::Context;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;

/// Binds `workers` UDP sockets on one address with `SO_REUSEPORT` (the kernel spreads
/// datagrams over them), blocking, for labgate's UDP worker threads. A port 0 is chosen once.
///
/// # Errors
/// When the address cannot be bound; the message names it and the config key.
pub fn udp_group(
    addr: SocketAddr,
    key: &str,
    workers: usize,
) -> anyhow::Result<Vec<std::net::UdpSocket>> {
    let mut group: Vec<std::net::UdpSocket> = Vec::with_capacity(workers);
    let mut at = addr;
    for _ in 0..workers.max(1) {
        let s = udp_socket(at).with_context(|| format!("cannot bind udp {at} ({key})"))?;
        let s: std::net::UdpSocket = s.into();
        at = s.local_addr()?;
        group.push(s);
    }
    Ok(group)
}

fn udp_socket(addr: SocketAddr) -> std::io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_port(true)?;
    s.bind(&addr.into())?;
    Ok(s)
}

/// Binds a TCP listener.
///
/// # Errors
/// When the address cannot be bound; the message names it and the config key.
pub fn tcp(addr: SocketAddr, key: &str) -> anyhow::Result<TcpListener> {
    let s = socket(addr, Type::STREAM, Protocol::TCP)
        .with_context(|| format!("cannot bind tcp {addr} ({key})"))?;
    s.listen(1024)
        .with_context(|| format!("cannot listen on tcp {addr}"))?;
    TcpListener::from_std(s.into()).with_context(|| format!("cannot use tcp {addr}"))
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
