//! [`Tap`]: where answering threads leave dnstap frames. Each lane (a UDP worker, or the
//! runtime's tasks) has its own bounded lock-free queue of encoded frames and a pool of
//! buffers to encode into, which the writer returns once a frame is sent: after the first
//! few thousand messages nothing is allocated. No buffer free, or the queue full: the message
//! is dropped and counted; an answer never waits for the stream.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::Thread;

use crossbeam_queue::ArrayQueue;
use labgate_config::settings::DnstapSettings;
use labgate_querylog::Lane;

use crate::message::{Message, encode};

/// Frames one lane holds, queued or being encoded: at 50,000 queries a second on one
/// worker (two messages each), 10 ms of them.
pub const LANE_CAPACITY: usize = 1024;

/// A buffer larger than this goes back to its pool shrunk (a 64 KiB TCP answer once does not
/// hold 64 KiB for good).
const KEEP_CAPACITY: usize = 4096;

/// The lanes between the answering threads and the writer.
pub struct Tap {
    lanes: Box<[LaneQueue]>,
    /// The messages' identity when `[dnstap]` names none: the host name.
    host: Box<[u8]>,
    dropped: AtomicU64,
    writer: OnceLock<Thread>,
    /// Whether the configuration served has a `[dnstap]`: the one check a query pays when
    /// it has none.
    active: AtomicBool,
}

struct LaneQueue {
    /// Encoded frames for the writer.
    full: ArrayQueue<Vec<u8>>,
    /// Buffers to encode into.
    free: ArrayQueue<Vec<u8>>,
    /// Buffers this lane has made (at most [`LANE_CAPACITY`]).
    made: AtomicUsize,
}

impl Tap {
    /// Lanes for `workers` UDP workers and the runtime; `host` names labgate in messages
    /// whose `[dnstap]` has no identity.
    pub fn new(workers: usize, host: &str) -> Self {
        Self {
            lanes: (0..=workers)
                .map(|_| LaneQueue {
                    full: ArrayQueue::new(LANE_CAPACITY),
                    free: ArrayQueue::new(LANE_CAPACITY),
                    made: AtomicUsize::new(0),
                })
                .collect(),
            host: host.as_bytes().into(),
            dropped: AtomicU64::new(0),
            writer: OnceLock::new(),
            active: AtomicBool::new(false),
        }
    }

    /// Encodes `m` as `settings` name labgate and leaves it for the writer, or drops and
    /// counts it when its lane has no room. A worker index beyond the lanes made goes to the
    /// shared lane.
    pub fn push(&self, lane: Lane, settings: &DnstapSettings, m: &Message<'_>) {
        let l = &self.lanes[lane.index(self.lanes.len())];
        let mut buf = match l.free.pop() {
            Some(b) => b,
            // Only this lane's thread makes its buffers (the shared lane's tasks may race
            // past the bound by a few; the queue still bounds what is held).
            None if l.made.load(Ordering::Relaxed) < LANE_CAPACITY => {
                l.made.fetch_add(1, Ordering::Relaxed);
                Vec::with_capacity(512)
            }
            None => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let identity = settings
            .identity
            .as_deref()
            .map_or(&self.host[..], str::as_bytes);
        encode(identity, settings.version.as_bytes(), m, &mut buf);
        if l.full.push(buf).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        } else if l.full.len() == LANE_CAPACITY / 2
            && let Some(w) = self.writer.get()
        {
            w.unpark();
        }
    }

    /// Hands each queued frame to `each` (the writer), then returns its buffer to its lane.
    /// Only what is queued now: a busy worker cannot keep the writer here.
    pub fn drain(&self, mut each: impl FnMut(&[u8])) -> u64 {
        let mut n = 0;
        for l in &self.lanes {
            for _ in 0..l.full.len() {
                let Some(mut frame) = l.full.pop() else { break };
                each(&frame);
                n += 1;
                frame.clear();
                if frame.capacity() > KEEP_CAPACITY {
                    frame.shrink_to(KEEP_CAPACITY);
                }
                // The pool has room for every buffer the lane made.
                let _ = l.free.push(frame);
            }
        }
        n
    }

    /// Messages dropped because their lane had no room (the writer fell behind).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Whether messages are taken: the configuration served has a `[dnstap]`.
    pub fn active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    /// Says whether the configuration served has a `[dnstap]` (the writer, on each reload).
    pub fn set_active(&self, on: bool) {
        self.active.store(on, Ordering::Relaxed);
    }

    /// Names the thread woken when a lane fills up (the writer's; set once).
    pub fn wake(&self, writer: Thread) {
        let _ = self.writer.set(writer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Kind;
    use labgate_config::settings::DnstapDestination;
    use labgate_querylog::Transport;

    fn settings(identity: Option<&str>) -> DnstapSettings {
        DnstapSettings {
            destination: DnstapDestination::Tcp("127.0.0.1:1".parse().expect("an address")),
            identity: identity.map(Into::into),
            version: "v".into(),
        }
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

    #[test]
    fn a_lane_holds_its_capacity_drops_past_it_and_reuses_its_buffers() {
        let tap = Tap::new(1, "host-a");
        let s = settings(None);
        for _ in 0..LANE_CAPACITY + 3 {
            tap.push(Lane::Worker(0), &s, &message(b"q"));
        }
        assert_eq!(tap.dropped(), 3);
        // Another lane is not full; a worker past the lanes lands in the shared one.
        tap.push(Lane::Worker(9), &settings(Some("gate")), &message(b"r"));
        let mut frames = Vec::new();
        assert_eq!(
            tap.drain(|f| frames.push(f.to_vec())),
            LANE_CAPACITY as u64 + 1
        );
        assert!(
            frames[0].windows(6).any(|w| w == b"host-a"),
            "default identity"
        );
        assert!(frames[LANE_CAPACITY].windows(4).any(|w| w == b"gate"));
        assert_eq!(tap.drain(|_| panic!("drained twice")), 0);
        // The buffers came back: the lane takes as many again without making more.
        for _ in 0..LANE_CAPACITY {
            tap.push(Lane::Worker(0), &s, &message(b"q"));
        }
        assert_eq!(tap.dropped(), 3);
        assert_eq!(tap.lanes[0].made.load(Ordering::Relaxed), LANE_CAPACITY);
    }

    #[test]
    fn a_large_buffer_goes_back_shrunk() {
        let tap = Tap::new(0, "h");
        tap.push(Lane::Shared, &settings(None), &message(&[0; 60_000]));
        tap.drain(|f| assert!(f.len() > 60_000));
        let kept = tap.lanes[0].free.pop().expect("the buffer came back");
        assert!(kept.is_empty() && kept.capacity() <= KEEP_CAPACITY);
    }
}
