//! labgate's own UDP workers, as Knot does it: one thread per socket of a `SO_REUSEPORT`
//! group, datagrams received and answers sent in batches (`recvmmsg`/`sendmmsg`), answered
//! inline from the fast path's table when they can be, else by the general path's plan on the
//! same thread; only a query that must wait for the upstreams goes to the runtime, and only
//! while its worker's share of places lasts (`admission`): beyond it, it is answered at once.
//! Nothing a worker takes waits in a queue of its own. No query is answered twice: the fast
//! path either writes the whole answer or declines before anything is sent.
//!
//! A socket bound to a wildcard address (`0.0.0.0`, `[::]`) learns each query's destination
//! address (`IP_PKTINFO`, `IPV6_RECVPKTINFO`) and answers from it: else the kernel picks the
//! source, and on a host with several addresses (IPv6 SLAAC beside a static ULA, a VIP) the
//! client drops an answer from an address it did not ask.

use std::io::{IoSlice, IoSliceMut};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::libc;
use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg,
    sendmmsg, sendmsg, setsockopt, sockopt,
};

use crate::admission::{Ticket, WorkerShare};
use crate::front::Dns;
use crate::log::Arrival;
use crate::resolver::{MAX_UDP_PAYLOAD, Pending, Plan};
use labgate_dnstap::Kind;
use labgate_querylog::{Lane, Transport};

/// Datagrams taken per system call.
const BATCH: usize = 32;
/// Largest datagram read; anything longer is cut and then fails to parse.
const MAX_QUERY: usize = 4096;
/// How often a blocked receive looks at the stop flag.
const STOP_CHECK: Duration = Duration::from_millis(200);
/// Room for one answer: the largest UDP response labgate sends.
const MAX_ANSWER: usize = MAX_UDP_PAYLOAD as usize;

/// Serves one socket on the calling thread until `stop` is set, as one of `workers` workers.
/// `rt` runs the queries that wait for the upstreams.
pub(crate) fn run(
    dns: &Dns,
    socket: UdpSocket,
    rt: &tokio::runtime::Handle,
    (stop, worker, workers): (&AtomicBool, usize, usize),
) {
    // The general path spawns its prefetches and upstream probes on the runtime.
    let _entered = rt.enter();
    let general = dns.general();
    if socket.set_nonblocking(false).is_err() || socket.set_read_timeout(Some(STOP_CHECK)).is_err()
    {
        tracing::error!("cannot set up a DNS UDP socket: DNS over UDP is off on it");
        return;
    }
    let wildcard = socket.local_addr().is_ok_and(|a| a.ip().is_unspecified());
    if wildcard && learn_destinations(&socket).is_err() {
        tracing::error!(
            "cannot ask a wildcard DNS UDP socket for query destinations: DNS over UDP is off on it"
        );
        return;
    }
    // labgate's side of each query, for dnstap: the address bound (a wildcard socket names
    // each query's own).
    let port = socket.local_addr().map_or(0, |a| a.port());
    let bound = socket.local_addr().ok().filter(|_| !wildcard);
    let socket = Arc::new(socket);
    let fd = socket.as_raw_fd();
    let share = WorkerShare::new(workers);
    // PERF: buffers, headers and slices are made once per worker: nothing is allocated per
    // datagram or per batch on the fast path.
    let mut queries = vec![[0u8; MAX_QUERY]; BATCH].into_boxed_slice();
    let mut answers = vec![[0u8; MAX_ANSWER]; BATCH].into_boxed_slice();
    let cmsg = wildcard.then(|| nix::cmsg_space!(libc::in6_pktinfo));
    let mut recv_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, cmsg.clone());
    let mut send_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, cmsg);
    let mut got: [(usize, Option<SockaddrStorage>, Option<Local>); BATCH] =
        [(0, None, None); BATCH];
    let mut lens = [0usize; BATCH];
    let mut to: [Option<SockaddrStorage>; BATCH] = [None; BATCH];
    let mut from: [Option<Local>; BATCH] = [None; BATCH];
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
                        let local = if wildcard {
                            r.cmsgs().ok().and_then(|mut c| c.find_map(destination))
                        } else {
                            None
                        };
                        *slot = (r.bytes, r.address, local);
                        n += 1;
                    }
                    n
                }
                // Timeouts (the stop check), interrupts, ICMP errors of earlier sends.
                Err(_) => continue,
            }
        };
        // One reading of the clocks per batch: the query log's time and latency start here.
        let arrival = Arrival::now(Transport::Udp, Lane::Worker(worker));
        let mut replies = 0;
        for (query, &(len, addr, local)) in queries.iter().zip(&got).take(received) {
            let Some(src) = addr.as_ref().and_then(std_addr) else {
                continue;
            };
            let data = &query[..len.min(MAX_QUERY)];
            let server = local.map_or(bound, |l| Some(SocketAddr::new(l.addr, port)));
            dns.tap(&arrival, (Kind::ClientQuery, src, server), data);
            let out = &mut answers[replies];
            let answered = match dns.fast_answer(src.ip(), data, out, &arrival) {
                Some(n) => n,
                None => {
                    let bytes = match dns.plan_udp(data, src, arrival) {
                        Plan::Ready(bytes, _) => bytes,
                        Plan::Upstream(p) => match general.enter(&p, Some(&share)) {
                            Ok(ticket) => {
                                let to = (local, server);
                                upstream(dns, &socket, rt, (*p, ticket, arrival), to);
                                continue;
                            }
                            Err(limit) => general.answer_over(*p, limit),
                        },
                    };
                    // Silence, or (never: the general path keeps to MAX_UDP_PAYLOAD) too long.
                    let Some(room) = out.get_mut(..bytes.len()).filter(|_| !bytes.is_empty())
                    else {
                        continue;
                    };
                    room.copy_from_slice(&bytes);
                    bytes.len()
                }
            };
            dns.tap(
                &arrival,
                (Kind::ClientResponse, src, server),
                &out[..answered],
            );
            lens[replies] = answered;
            to[replies] = addr;
            from[replies] = local;
            replies += 1;
        }
        // One `sendmmsg` per source address: its control message is shared by the batch.
        // A socket bound to one address has one group, sent with no control message.
        let mut sent = 0;
        while sent < replies {
            let local = from[sent];
            let mut end = sent + 1;
            for i in sent + 1..replies {
                if from[i] == local {
                    // PERF: the common case, one source for the batch, moves nothing.
                    if i != end {
                        answers.swap(end, i);
                        lens.swap(end, i);
                        to.swap(end, i);
                        from.swap(end, i);
                    }
                    end += 1;
                }
            }
            let slices: [[IoSlice<'_>; 1]; BATCH] = std::array::from_fn(|i| {
                [IoSlice::new(
                    answers
                        .get(sent + i)
                        .map_or(&[][..], |a| &a[..lens[sent + i]]),
                )]
            });
            // UDP is best effort: a send that fails is a query lost, as on the wire.
            from_source(local, |cmsgs| {
                let _ = sendmmsg(
                    fd,
                    &mut send_headers,
                    slices[..end - sent].iter(),
                    &to[sent..end],
                    cmsgs,
                    MsgFlags::empty(),
                );
            });
            sent = end;
        }
    }
}

/// Waits for the upstreams on the runtime, holding the query's place; the task sends its
/// own answer.
fn upstream(
    dns: &Dns,
    socket: &Arc<UdpSocket>,
    rt: &tokio::runtime::Handle,
    (pending, ticket, arrival): (Pending, Ticket, Arrival),
    (local, server): (Option<Local>, Option<SocketAddr>),
) {
    let dns = dns.clone();
    let socket = Arc::clone(socket);
    let src = pending.src();
    let to = SockaddrStorage::from(src);
    rt.spawn(async move {
        let out = dns.general().complete(pending, Some(ticket)).await;
        if out.is_empty() {
            return;
        }
        // Not the worker's lane: this runs on the runtime.
        let arrival = Arrival {
            lane: Lane::Shared,
            ..arrival
        };
        dns.tap(&arrival, (Kind::ClientResponse, src, server), &out);
        from_source(local, |cmsgs| {
            let _ = sendmsg(
                socket.as_raw_fd(),
                &[IoSlice::new(&out)],
                cmsgs,
                MsgFlags::empty(),
                Some(&to),
            );
        });
    });
}

/// The address a query was sent to (and, for IPv6, the interface it came in on, which a
/// link-local address needs).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Local {
    addr: IpAddr,
    ifindex: u32,
}

/// Runs `send` with the control message that sets a reply's source, or none.
fn from_source(local: Option<Local>, send: impl FnOnce(&[ControlMessage<'_>])) {
    match local {
        None => send(&[]),
        Some(Local {
            addr: IpAddr::V4(a),
            ..
        }) => {
            let info = libc::in_pktinfo {
                // Routing picks the interface; the source is the address the client asked.
                ipi_ifindex: 0,
                ipi_spec_dst: libc::in_addr {
                    s_addr: u32::from(a).to_be(),
                },
                ipi_addr: libc::in_addr { s_addr: 0 },
            };
            send(&[ControlMessage::Ipv4PacketInfo(&info)]);
        }
        Some(Local {
            addr: IpAddr::V6(a),
            ifindex,
        }) => {
            let info = libc::in6_pktinfo {
                ipi6_addr: libc::in6_addr {
                    s6_addr: a.octets(),
                },
                ipi6_ifindex: ifindex,
            };
            send(&[ControlMessage::Ipv6PacketInfo(&info)]);
        }
    }
}

/// Asks a wildcard socket to report each datagram's destination address.
fn learn_destinations(socket: &UdpSocket) -> nix::Result<()> {
    if socket.local_addr().is_ok_and(|a| a.is_ipv6()) {
        setsockopt(socket, sockopt::Ipv6RecvPacketInfo, &true)
    } else {
        setsockopt(socket, sockopt::Ipv4PacketInfo, &true)
    }
}

/// A datagram's destination, from its control message.
fn destination(c: ControlMessageOwned) -> Option<Local> {
    match c {
        ControlMessageOwned::Ipv4PacketInfo(i) => Some(Local {
            addr: IpAddr::V4(u32::from_be(i.ipi_addr.s_addr).into()),
            ifindex: 0,
        }),
        ControlMessageOwned::Ipv6PacketInfo(i) => Some(Local {
            addr: IpAddr::V6(i.ipi6_addr.s6_addr.into()),
            ifindex: i.ipi6_ifindex,
        }),
        _ => None,
    }
}

/// A received address as the standard library's.
fn std_addr(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}
