//! labgate's own UDP workers, as Knot does it: one thread per socket of a `SO_REUSEPORT`
//! group, datagrams received and answers sent in batches (`recvmmsg`/`sendmmsg`), answered
//! inline from the fast path's table when they can be, else handed to the general path on the
//! runtime. No query is answered twice: the fast path either writes the whole answer or
//! declines before anything is sent.

use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::socket::{
    ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg,
};

use crate::Handler;

/// Datagrams taken per system call.
const BATCH: usize = 32;
/// Largest datagram read; anything longer is cut and then fails to parse.
const MAX_QUERY: usize = 4096;
/// How often a blocked receive looks at the stop flag.
const STOP_CHECK: Duration = Duration::from_millis(200);
/// Room for one answer: the largest UDP response labgate sends.
const MAX_ANSWER: usize = crate::MAX_UDP_PAYLOAD as usize;

/// Serves one socket on the calling thread until `stop` is set. `rt` runs the general path.
pub(crate) fn run(
    handler: &Handler,
    socket: UdpSocket,
    rt: &tokio::runtime::Handle,
    stop: &AtomicBool,
) {
    // The fast path starts table rebuilds on the runtime.
    let _entered = rt.enter();
    if socket.set_nonblocking(false).is_err() || socket.set_read_timeout(Some(STOP_CHECK)).is_err()
    {
        tracing::error!("cannot set up a DNS UDP socket: DNS over UDP is off on it");
        return;
    }
    let socket = Arc::new(socket);
    let fd = socket.as_raw_fd();
    // PERF: buffers, headers and slices are made once per worker: nothing is allocated per
    // datagram or per batch on the fast path.
    let mut queries = vec![[0u8; MAX_QUERY]; BATCH].into_boxed_slice();
    let mut answers = vec![[0u8; MAX_ANSWER]; BATCH].into_boxed_slice();
    let mut recv_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut send_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut got: [(usize, Option<SockaddrStorage>); BATCH] = [(0, None); BATCH];
    let mut lens = [0usize; BATCH];
    let mut to: [Option<SockaddrStorage>; BATCH] = [None; BATCH];
    while !stop.load(Ordering::Relaxed) {
        let received = {
            let mut q = queries.iter_mut();
            let mut slices: [[IoSliceMut<'_>; 1]; BATCH] = std::array::from_fn(|_| {
                [IoSliceMut::new(
                    q.next().map_or(&mut [][..], |b| &mut b[..]),
                )]
            });
            match recvmmsg(
                fd,
                &mut recv_headers,
                slices.iter_mut(),
                MsgFlags::MSG_WAITFORONE,
                None,
            ) {
                Ok(results) => {
                    let mut n = 0;
                    for (slot, r) in got.iter_mut().zip(results) {
                        *slot = (r.bytes, r.address);
                        n += 1;
                    }
                    n
                }
                // Timeouts (the stop check), interrupts, ICMP errors of earlier sends.
                Err(_) => continue,
            }
        };
        let mut replies = 0;
        for (query, &(len, addr)) in queries.iter().zip(&got).take(received) {
            let Some(src) = addr.as_ref().and_then(std_addr) else {
                continue;
            };
            let data = &query[..len.min(MAX_QUERY)];
            match handler.fast_answer(src.ip(), data, &mut answers[replies]) {
                Some(n) => {
                    lens[replies] = n;
                    to[replies] = addr;
                    replies += 1;
                }
                None => general(handler, &socket, rt, data, src),
            }
        }
        if replies > 0 {
            let slices: [[IoSlice<'_>; 1]; BATCH] =
                std::array::from_fn(|i| [IoSlice::new(&answers[i][..lens[i]])]);
            let none: [ControlMessage<'_>; 0] = [];
            // UDP is best effort: a send that fails is a query lost, as on the wire.
            let _ = sendmmsg(
                fd,
                &mut send_headers,
                slices[..replies].iter(),
                &to[..replies],
                none,
                MsgFlags::empty(),
            );
        }
    }
}

/// Hands one query to the general path on the runtime; it sends its own answer.
fn general(
    handler: &Handler,
    socket: &Arc<UdpSocket>,
    rt: &tokio::runtime::Handle,
    data: &[u8],
    src: SocketAddr,
) {
    // PERF: only the general path allocates and spawns: forwarding may take seconds.
    let handler = handler.clone();
    let socket = Arc::clone(socket);
    let data = data.to_vec();
    rt.spawn(async move {
        if let Some(out) = handler.answer_bytes(&data, src).await {
            let _ = socket.send_to(&out, src);
        }
    });
}

/// A received address as the standard library's.
fn std_addr(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}
