//! The DNS benchmark's ceiling: a UDP server that does no DNS work. It takes datagrams in
//! batches (`recvmmsg`), sets the QR bit and sends each back (`sendmmsg`), as labgate's UDP
//! workers do. Its CPU per query is the kernel's share that every server pays; the gap
//! between it and a server is what that server's own code costs.
//!
//!   dns-echo 127.0.0.1:15307
#![allow(
    clippy::disallowed_macros,
    clippy::disallowed_methods,
    reason = "a command-line tool of the load benchmarks: it prints its report and exits with its status"
)]

use std::io::{IoSlice, IoSliceMut};
use std::net::UdpSocket;
use std::os::fd::AsRawFd;

use nix::sys::socket::{
    ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg,
};

/// Datagrams per system call, as in labgate's workers.
const BATCH: usize = 32;
/// Largest datagram taken.
const MAX: usize = 4096;

fn main() {
    let Some(addr) = std::env::args().nth(1) else {
        eprintln!("usage: dns-echo ADDRESS:PORT");
        std::process::exit(2);
    };
    let socket = match UdpSocket::bind(&addr) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("dns-echo: cannot bind {addr}: {e}");
            std::process::exit(1);
        }
    };
    let fd = socket.as_raw_fd();
    let mut bufs = vec![[0u8; MAX]; BATCH];
    let mut recv_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut send_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut lens = [0usize; BATCH];
    let mut to: [Option<SockaddrStorage>; BATCH] = [None; BATCH];
    loop {
        let mut n = 0;
        {
            let mut b = bufs.iter_mut();
            let mut slices: [[IoSliceMut<'_>; 1]; BATCH] = std::array::from_fn(|_| {
                [IoSliceMut::new(
                    b.next().map_or(&mut [][..], |b| &mut b[..]),
                )]
            });
            let Ok(results) = recvmmsg(
                fd,
                &mut recv_headers,
                slices.iter_mut(),
                MsgFlags::MSG_WAITFORONE,
                None,
            ) else {
                continue;
            };
            for r in results {
                lens[n] = r.bytes;
                to[n] = r.address;
                n += 1;
            }
        }
        for (buf, &len) in bufs.iter_mut().zip(&lens).take(n) {
            if len > 2 {
                buf[2] |= 0x80;
            }
        }
        let slices: [[IoSlice<'_>; 1]; BATCH] =
            std::array::from_fn(|i| [IoSlice::new(&bufs[i][..lens[i].min(MAX)])]);
        let none: [ControlMessage<'_>; 0] = [];
        let _ = sendmmsg(
            fd,
            &mut send_headers,
            slices[..n].iter(),
            &to[..n],
            none,
            MsgFlags::empty(),
        );
    }
}
