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
    run(data);
}

/// What a run saw.
#[derive(Debug, Default, PartialEq, Eq)]
struct Seen {
    requests: usize,
    body: usize,
    error: bool,
}

fn run(data: &[u8]) -> Seen {
    let limits = Limits::default();
    let mut conn = Connection::new(limits.clone());
    let mut input = Vec::with_capacity(Connection::MIN_INPUT + 1024);
    input.extend_from_slice(frame::PREFACE);
    let body = [b'x'; 100];
    let fields: [(&[u8], &[u8]); 2] = [(b"content-type", b"text/plain"), (b"Server", b"labgate")];
    let mut seen = Seen::default();
    // Piece sizes from a generator seeded by the length, so that frames split anywhere.
    let mut rng = (data.len() as u32).wrapping_mul(2_654_435_761) | 1;
    let mut rest = data;
    loop {
        loop {
            let r = match conn.recv(&input) {
                Ok(r) => r,
                Err(e) => {
                    assert_eq!(conn.recv(b"").err(), Some(e));
                    seen.error = true;
                    return seen;
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
                    seen.requests += 1;
                    if conn.send_response(stream, 200, fields, false).is_ok() {
                        let _ = conn.send_data(stream, &body, true);
                    }
                }
                Act::Refuse(stream) => conn.reset(stream, ErrorCode::Connect),
                Act::Release(stream, n) => {
                    seen.body += n;
                    conn.release(stream, n);
                }
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
            return seen;
        }
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        let step = 1 + (rng % 512) as usize;
        let (piece, tail) = rest.split_at(step.min(rest.len()));
        input.extend_from_slice(piece);
        rest = tail;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_corpus_passes_the_properties() {
        let mut n = 0;
        for e in std::fs::read_dir("../fuzz/corpus/h2_frames").expect("seed corpus") {
            let path = e.expect("entry").path();
            let data = std::fs::read(&path).expect("seed");
            let seen = run(&data);
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            // The captures from real clients and the hand-made seeds all get answered.
            let want = match name {
                "curl_get" | "curl_post" => 1,
                "h2load" => 8,
                "continuation" | "control_mix" => 2,
                _ => 1,
            };
            assert_eq!((seen.requests, seen.error), (want, false), "{name}");
            n += 1;
        }
        assert!(n >= 6, "seed corpus went missing");
    }

    #[test]
    fn garbage_is_a_connection_error() {
        assert!(run(b"GET / HTTP/1.1\r\n\r\n").error);
        assert!(run(&[0xff; 100]).error);
    }
}
