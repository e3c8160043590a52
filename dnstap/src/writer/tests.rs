//! The writer against a collector in the test (the real ones, `dnstap` and `fstrm_capture`,
//! are in `tests/dnstap.rs`): what a collector sees of a stream, its end on a reload, a
//! collector that does not take dnstap.

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::mpsc;

use labgate_querylog::{Lane, Transport};

use super::*;
use crate::message::{Kind, Message};

/// What a collector saw of one connection: control frame types and data frame sizes, in
/// order (a data frame as its length, a control frame as `-type`).
fn collect(listener: &UnixListener, accept_type: &[u8]) -> Vec<i64> {
    let (mut conn, _) = listener.accept().expect("accept");
    let mut seen = Vec::new();
    loop {
        let mut len = [0u8; 4];
        if conn.read_exact(&mut len).is_err() {
            return seen;
        }
        let len = u32::from_be_bytes(len);
        if len > 0 {
            let mut data = vec![0; len as usize];
            conn.read_exact(&mut data).expect("a data frame");
            seen.push(i64::from(len));
            continue;
        }
        let mut head = [0u8; 8];
        conn.read_exact(&mut head).expect("a control frame");
        let clen = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let kind = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
        let mut rest = vec![0; clen - 4];
        conn.read_exact(&mut rest).expect("its fields");
        seen.push(-i64::from(kind));
        let reply = match kind {
            4 => {
                let mut f = 0u32.to_be_bytes().to_vec();
                f.extend_from_slice(&(12 + accept_type.len() as u32).to_be_bytes());
                f.extend_from_slice(&1u32.to_be_bytes());
                f.extend_from_slice(&1u32.to_be_bytes());
                f.extend_from_slice(&(accept_type.len() as u32).to_be_bytes());
                f.extend_from_slice(accept_type);
                f
            }
            3 => vec![0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 5],
            _ => continue,
        };
        conn.write_all(&reply).expect("reply");
    }
}

/// A collector on `socket` answering READY with `accept_type`, in a thread: what it saw of
/// its one connection comes on the channel when the connection ends.
fn collector(socket: &Path, accept_type: &'static [u8]) -> mpsc::Receiver<Vec<i64>> {
    let listener = UnixListener::bind(socket).expect("bind");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(collect(&listener, accept_type));
    });
    rx
}

fn snapshot(socket: &Path) -> Arc<Snapshot> {
    Arc::new(labgate_config::testing::snapshot(&format!(
        "[dnstap]\nsocket = \"{}\"\n",
        socket.display()
    )))
}

fn message(dns: &[u8]) -> Message<'_> {
    Message {
        kind: Kind::ClientQuery,
        transport: Transport::Udp,
        client: None,
        server: None,
        query_us: 0,
        response_us: None,
        dns,
    }
}

/// Polls `done` for ten seconds.
fn eventually(what: &str, done: impl Fn() -> bool) {
    for _ in 0..1000 {
        if done() {
            return;
        }
        std::thread::park_timeout(Duration::from_millis(10));
    }
    panic!("{what}");
}

#[test]
fn a_stream_is_ready_accept_start_frames_and_a_reload_ends_it_after_what_was_taken() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("tap.sock");
    let rx = collector(&socket, frame::CONTENT_TYPE);
    let settings = snapshot(&socket).dnstap.clone().expect("[dnstap]");
    let to = settings.destination.clone();
    // The writer's turns taken one by one (the thread takes one every 100 ms).
    let shared = Shared::new(Some(settings.clone()));
    let tap = Tap::new(1, "host");
    let mut w = Writer::new(&shared);
    assert!(!w.turn(&tap, Some(&to), false));
    assert!(shared.connected.load(Ordering::Relaxed));
    for size in [10, 20, 30] {
        tap.push(Lane::Worker(0), &settings, &message(&vec![0; size]));
    }
    // A reload takes `[dnstap]` away with three frames in the lane: they go out before STOP.
    assert!(!w.turn(&tap, None, false));
    let seen = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the stream ended");
    assert_eq!(seen.len(), 6, "{seen:?}");
    assert_eq!(
        (seen[0], seen[1], seen[5]),
        (-4, -2, -3),
        "READY, START, STOP"
    );
    assert!(
        seen[2] < seen[3] && seen[3] < seen[4],
        "three data frames in order: {seen:?}"
    );
    assert!(!shared.connected.load(Ordering::Relaxed));
    assert_eq!(shared.sent.load(Ordering::Relaxed), 3);
    assert_eq!(shared.unconnected.load(Ordering::Relaxed), 0);
    // Nothing wanted: a frame left (taken before the reload) is counted, not sent.
    tap.push(Lane::Shared, &settings, &message(b"late"));
    assert!(w.turn(&tap, None, true));
    assert_eq!(shared.unconnected.load(Ordering::Relaxed), 1);
}

#[test]
fn the_thread_follows_reloads_and_counts_what_it_sends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("tap.sock");
    let rx = collector(&socket, frame::CONTENT_TYPE);
    let first = snapshot(&socket);
    let tap = Dnstap::start(&first, 1).expect("start");
    let settings = first.dnstap.clone().expect("[dnstap]");
    let connected = || tap.shared.connected.load(Ordering::Relaxed);
    eventually("never connected", connected);
    tap.tap().push(Lane::Worker(0), &settings, &message(b"q"));
    eventually("not sent", || tap.shared.sent.load(Ordering::Relaxed) == 1);
    tap.publish(Arc::new(labgate_config::testing::snapshot("")));
    let seen = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the stream ended");
    assert_eq!(seen.len(), 4, "{seen:?}");
    eventually("still connected", || !connected());
    assert!(!tap.tap().active(), "the taps stop with the reload");
    let mut out = String::new();
    tap.render_metrics(&mut out);
    assert!(out.contains("labgate_dnstap_sent_total 1\n"), "{out}");
    assert!(out.contains("labgate_dnstap_connected 0\n"), "{out}");
}

#[test]
fn a_collector_that_does_not_take_dnstap_gets_no_stream_and_the_messages_are_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("other.sock");
    let rx = collector(&socket, b"protobuf:other");
    let first = snapshot(&socket);
    let tap = Dnstap::start(&first, 0).expect("start");
    // READY, and the writer hangs up on the wrong ACCEPT.
    let seen = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the writer hung up");
    assert_eq!(seen, [-4]);
    let settings = first.dnstap.clone().expect("[dnstap]");
    tap.tap().push(Lane::Shared, &settings, &message(b"q"));
    eventually("the message was not counted", || {
        tap.shared.unconnected.load(Ordering::Relaxed) == 1
    });
    assert!(!tap.shared.connected.load(Ordering::Relaxed));
    tap.stop();
}
