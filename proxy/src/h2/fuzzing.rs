//! The fuzz harness of the HTTP/2 core, shared by `fuzz/fuzz_targets/h2_frames.rs` and a
//! unit test that runs its seeds.

use super::{Connection, ErrorCode, Event, Limits, StreamId, frame};

/// What the harness does after an event.
enum Act {
    Answer(StreamId),
    Refuse(StreamId),
    Release(StreamId, usize),
    Nothing,
    NoEvent,
}

/// Property: the client preface and then any bytes, fed in pieces of varying size, never
/// panic; every request gets a small response; the unwritten output stays within its
/// bound (the core stops reading when it is full; the harness drains it as a socket
/// would) and the unconsumed input within one frame; after a connection error every call
/// returns the same error.
pub fn frames(data: &[u8]) {
    let limits = Limits::default();
    let mut conn = Connection::new(limits.clone());
    let mut input = Vec::with_capacity(Connection::MIN_INPUT + 64);
    input.extend_from_slice(frame::PREFACE);
    let body = [b'x'; 100];
    let fields: [(&[u8], &[u8]); 2] = [(b"content-type", b"text/plain"), (b"Server", b"labgate")];
    let mut rest = data;
    loop {
        loop {
            let r = match conn.recv(&input) {
                Ok(r) => r,
                Err(e) => {
                    assert_eq!(conn.recv(b"").err(), Some(e));
                    return;
                }
            };
            let consumed = r.consumed;
            let act = match r.event {
                Some(Event::Request { stream, .. } | Event::HeadersTooLarge { stream }) => {
                    Act::Answer(stream)
                }
                Some(Event::Connect { stream, .. }) => Act::Refuse(stream),
                Some(Event::Data { stream, data, .. }) => Act::Release(stream, data.len()),
                Some(_) => Act::Nothing,
                None => Act::NoEvent,
            };
            input.drain(..consumed);
            match act {
                Act::Answer(stream) => {
                    if conn.send_response(stream, 200, fields, false).is_ok() {
                        let _ = conn.send_data(stream, &body, true);
                    }
                }
                Act::Refuse(stream) => conn.reset(stream, ErrorCode::Connect),
                Act::Release(stream, n) => conn.release(stream, n),
                Act::Nothing => {}
                Act::NoEvent if conn.output().is_empty() => break,
                Act::NoEvent => {}
            }
            // Bounded: the limit, plus what one frame or one response may add past it.
            assert!(conn.output().len() <= limits.max_output as usize + 32 * 1024);
            // Drain the output, as a socket that reads everything would.
            let n = conn.output().len();
            conn.advance(n);
        }
        assert!(input.len() < Connection::MIN_INPUT);
        if rest.is_empty() {
            return;
        }
        // Feed in pieces whose size the data picks, so split frames are covered.
        let step = usize::from(rest[0] % 64) + 1;
        let (piece, tail) = rest.split_at(step.min(rest.len()));
        input.extend_from_slice(piece);
        rest = tail;
    }
}
