//! The fast path's idle backend connections, kept per worker thread, newest last.
//!
//! pingora's pool watches each idle connection with a task of its own, so taking one wakes
//! that task and waits for it to let go: two passes of the thread's run queue, which under a
//! burst of new TLS connections last milliseconds each; and each release spawns a task and a
//! timer. Here a connection rests in its thread's list (pingora's runtime has one per thread,
//! and a connection stays with the thread whose driver it is registered with) and is checked
//! when taken: one idle past `POOL_IDLE`, or whose close or unasked bytes the thread's I/O
//! driver has seen, is dropped instead (as in pingora's pool, a close still in flight is
//! found by the request, and an idempotent one is retried). A timer per thread, not per
//! connection, closes the expired ones.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Waker};

use pingora::protocols::Stream;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::backends::POOL_IDLE;

/// Idle connections kept per thread, over all backends; past it the oldest is closed.
const PER_THREAD: usize = 256;

struct Idle {
    /// The backend's `reuse_hash`.
    key: u64,
    stream: Stream,
    since: Instant,
}

/// One thread's idle connections, oldest first, and its sweep timer while one runs.
struct Kept {
    conns: VecDeque<Idle>,
    /// The sweep task, owned here: it ends when no connection is left, and is aborted with
    /// the thread's connections when the thread ends (pingora's shutdown).
    sweep: Option<AbortHandle>,
}

impl Drop for Kept {
    fn drop(&mut self) {
        if let Some(sweep) = self.sweep.take() {
            sweep.abort();
        }
    }
}

thread_local! {
    static KEPT: RefCell<Kept> = const {
        RefCell::new(Kept {
            conns: VecDeque::new(),
            sweep: None,
        })
    };
}

/// Keeps `stream`, a connection to the backend `key` idle since `since` (its last exchange
/// ended then), for the next request on this thread. Must run on a tokio runtime (it may
/// start the sweep timer).
pub(crate) fn put(key: u64, stream: Stream, since: Instant) {
    let now = Instant::now();
    if now.duration_since(since) >= POOL_IDLE {
        return;
    }
    let start_sweeping = KEPT.with_borrow_mut(|kept| {
        expire(&mut kept.conns, now);
        if kept.conns.len() >= PER_THREAD {
            kept.conns.pop_front();
        }
        // Oldest first: a connection idle longer than the newest kept goes before it.
        let at = kept.conns.partition_point(|i| i.since <= since);
        kept.conns.insert(at, Idle { key, stream, since });
        kept.sweep.is_none()
    });
    if start_sweeping {
        // pingora's runtimes are one per thread: the timer runs on this thread, and cannot
        // run before its handle is kept (nothing here yields).
        let sweep = tokio::spawn(sweep()).abort_handle();
        KEPT.with_borrow_mut(|kept| kept.sweep = Some(sweep));
    }
}

/// The newest idle connection to the backend `key` on this thread that is still open and
/// clean; the ones passed over on the way are closed.
pub(crate) fn take(key: u64) -> Option<Stream> {
    let now = Instant::now();
    KEPT.with_borrow_mut(|kept| {
        while let Some(at) = kept.conns.iter().rposition(|i| i.key == key) {
            let mut idle = kept.conns.remove(at)?;
            if now.duration_since(idle.since) < POOL_IDLE && open_and_clean(&mut idle.stream) {
                return Some(idle.stream);
            }
        }
        None
    })
}

/// Closes the connections idle for `POOL_IDLE` (they are oldest first).
fn expire(conns: &mut VecDeque<Idle>, now: Instant) {
    while conns
        .front()
        .is_some_and(|i| now.duration_since(i.since) >= POOL_IDLE)
    {
        conns.pop_front();
    }
}

/// Closes expired connections until this thread keeps none.
async fn sweep() {
    loop {
        let next = KEPT.with_borrow_mut(|kept| {
            expire(&mut kept.conns, Instant::now());
            let next = kept.conns.front().map(|i| i.since + POOL_IDLE);
            if next.is_none() {
                kept.sweep = None;
            }
            next
        });
        match next {
            Some(at) => tokio::time::sleep_until(at).await,
            None => return,
        }
    }
}

/// Whether a read on an idle connection would wait: the backend has neither closed it nor
/// sent anything (a response to nothing would be taken for the next request's).
pub(crate) fn open_and_clean(stream: &mut Stream) -> bool {
    let mut byte = [0u8; 1];
    let mut buf = ReadBuf::new(&mut byte);
    // Unconstrained: a task that has spent its cooperative budget gets `Pending` from tokio
    // without a read, and a closed connection would pass (pingora's pool does the same).
    let mut read = tokio::task::unconstrained(std::future::poll_fn(|cx| {
        Pin::new(&mut *stream).poll_read(cx, &mut buf)
    }));
    let mut cx = Context::from_waker(Waker::noop());
    Pin::new(&mut read).poll(&mut cx).is_pending()
}
