//! Binding listeners from the configuration's addresses. IPv6 sockets are v6-only so that
//! `0.0.0.0:53` and `[::]:53` can both be bound, as the defaults do.

use std::io::ErrorKind;
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
        let s = udp_socket(at).map_err(|e| bind_error(&e, "udp", at, key))?;
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
    let s =
        socket(addr, Type::STREAM, Protocol::TCP).map_err(|e| bind_error(&e, "tcp", addr, key))?;
    s.listen(1024)
        .with_context(|| format!("cannot listen on tcp {addr}"))?;
    TcpListener::from_std(s.into()).with_context(|| format!("cannot use tcp {addr}"))
}

/// Checks that a TCP address that pingora will bind (the proxy's listeners) can be bound,
/// with the options pingora is given (v6-only), so a taken port stops the start at once.
///
/// # Errors
/// When the address cannot be bound; the message names it, the config key and what to do.
pub fn check_tcp(addr: SocketAddr, key: &str) -> anyhow::Result<()> {
    socket(addr, Type::STREAM, Protocol::TCP)
        .map(drop)
        .map_err(|e| bind_error(&e, "tcp", addr, key))
}

/// Whether a listening socket holds a TCP address: a bind with the options pingora's
/// listeners get (`SO_REUSEADDR`, v6-only) then fails with "in use". After [`check_tcp`]
/// passed, that socket is pingora's. No connection is made: no handshake is counted, and an
/// IPv6 wildcard needs no IPv6 loopback (IPv6 may be off, as in Docker).
pub fn held(addr: SocketAddr) -> bool {
    matches!(socket(addr, Type::STREAM, Protocol::TCP), Err(e) if e.kind() == ErrorKind::AddrInUse)
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
