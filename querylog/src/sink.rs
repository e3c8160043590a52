//! [`Sink`]: where answering threads leave records. One bounded lock-free queue per UDP
//! worker (no other worker pushes to it) and one for the runtime's tasks (TCP, TLS, answers
//! that waited for the upstreams); a push never allocates and never waits. A full queue drops
//! the record and counts it: the answer is never delayed for the log.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::Thread;

use crossbeam_queue::ArrayQueue;

use crate::record::Record;

/// Records one queue holds: at 50,000 queries a second on one worker, 40 ms of them.
pub const QUEUE_CAPACITY: usize = 2048;

/// The queues between the answering threads and the writer.
pub struct Sink {
    queues: Box<[ArrayQueue<Record>]>,
    dropped: AtomicU64,
    /// The writer's thread, woken when a queue is half full.
    writer: OnceLock<Thread>,
}

/// Which queue a record goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// The UDP worker with this index.
    Worker(usize),
    /// Any task of the runtime.
    Shared,
}

impl Lane {
    /// The index of this lane's queue among `queues` (the workers' first, the shared one
    /// last): a worker index beyond them goes to the shared queue.
    pub fn index(self, queues: usize) -> usize {
        let shared = queues - 1;
        match self {
            Self::Worker(i) => i.min(shared),
            Self::Shared => shared,
        }
    }
}

impl Sink {
    /// Queues for `workers` UDP workers and the runtime.
    pub fn new(workers: usize) -> Self {
        Self {
            queues: (0..=workers)
                .map(|_| ArrayQueue::new(QUEUE_CAPACITY))
                .collect(),
            dropped: AtomicU64::new(0),
            writer: OnceLock::new(),
        }
    }

    /// Leaves `record` for the writer, or drops and counts it when its queue is full. A worker
    /// index beyond the queues made goes to the shared queue.
    pub fn push(&self, lane: Lane, record: Record) {
        let queue = &self.queues[lane.index(self.queues.len())];
        if queue.push(record).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        } else if queue.len() == QUEUE_CAPACITY / 2
            && let Some(writer) = self.writer.get()
        {
            writer.unpark();
        }
    }

    /// Moves every queued record into `out` (the writer).
    pub fn drain(&self, out: &mut Vec<Record>) {
        for queue in &self.queues {
            // Only what is there now: a busy worker cannot keep the writer here.
            for _ in 0..queue.len() {
                match queue.pop() {
                    Some(r) => out.push(r),
                    None => break,
                }
            }
        }
    }

    /// Records dropped because their queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Names the thread woken when a queue fills up (the writer's; set once).
    pub fn wake(&self, writer: Thread) {
        let _ = self.writer.set(writer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Transport;

    fn record(t: i64) -> Record {
        Record::new(b"\x00", Transport::Udp, t)
    }

    #[test]
    fn a_full_queue_drops_and_counts_while_others_take_records() {
        let sink = Sink::new(1);
        for t in 0..QUEUE_CAPACITY as i64 + 5 {
            sink.push(Lane::Worker(0), record(t));
        }
        assert_eq!(sink.dropped(), 5);
        sink.push(Lane::Shared, record(-1));
        // An index past the workers lands in the shared queue, not out of bounds.
        sink.push(Lane::Worker(7), record(-2));
        let mut out = Vec::new();
        sink.drain(&mut out);
        assert_eq!(out.len(), QUEUE_CAPACITY + 2);
        assert_eq!(out[0].time_us, 0);
        assert_eq!(out[QUEUE_CAPACITY].time_us, -1);
        assert_eq!(sink.dropped(), 5);
        out.clear();
        sink.drain(&mut out);
        assert!(out.is_empty());
    }
}
