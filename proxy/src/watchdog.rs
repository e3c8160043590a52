//! One timer per connection bounding every wait on it. A `tokio::time::timeout` per read
//! registers a timer in the wheel and removes it again, twice per request; here the timer
//! stays registered and each wait only moves a deadline. The timer is touched when it fires
//! before the current deadline (it is pushed to the deadline) or when a wait needs an
//! earlier deadline than the one it is set for.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::task::Poll;
use std::time::Duration;

use tokio::time::{Instant, Sleep, sleep_until};

/// A wait outlived its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Elapsed;

/// The connection's timer and the deadline of the wait at hand.
pub(crate) struct Watchdog {
    timer: Pin<Box<Sleep>>,
    deadline: Instant,
}

impl Watchdog {
    /// A watchdog whose timer is registered on the first wait.
    pub(crate) fn new() -> Self {
        let now = Instant::now();
        Self {
            // Not registered until polled; the first wait sets its real deadline.
            timer: Box::pin(sleep_until(now + Duration::from_secs(86_400))),
            deadline: now,
        }
    }

    /// Runs `fut` for at most `limit` from its first wait.
    pub(crate) async fn limit<F: Future>(
        &mut self,
        limit: Duration,
        fut: F,
    ) -> Result<F::Output, Elapsed> {
        self.run(Limit::For(limit), fut).await
    }

    /// Runs `fut` until `deadline` at the latest.
    pub(crate) async fn until<F: Future>(
        &mut self,
        deadline: Instant,
        fut: F,
    ) -> Result<F::Output, Elapsed> {
        self.run(Limit::Until(deadline), fut).await
    }

    async fn run<F: Future>(&mut self, limit: Limit, fut: F) -> Result<F::Output, Elapsed> {
        let mut fut = pin!(fut);
        let mut armed = false;
        poll_fn(|cx| {
            if let Poll::Ready(out) = fut.as_mut().poll(cx) {
                return Poll::Ready(Ok(out));
            }
            if !armed {
                // Only a wait that blocks reads the clock and sets the timer: most writes
                // and many reads complete on their first poll.
                armed = true;
                self.deadline = match limit {
                    Limit::For(d) => Instant::now() + d,
                    Limit::Until(t) => t,
                };
                if self.timer.deadline() > self.deadline {
                    let deadline = self.deadline;
                    self.timer.as_mut().reset(deadline);
                }
            }
            loop {
                match self.timer.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    // It fired at its own deadline: the wait's deadline is not later.
                    Poll::Ready(()) if self.timer.deadline() >= self.deadline => {
                        return Poll::Ready(Err(Elapsed));
                    }
                    // An earlier wait's deadline passed; this wait's is later. Poll again
                    // to register the pushed timer.
                    Poll::Ready(()) => {
                        let deadline = self.deadline;
                        self.timer.as_mut().reset(deadline);
                    }
                }
            }
        })
        .await
    }
}

/// How long a wait may last.
#[derive(Clone, Copy)]
enum Limit {
    For(Duration),
    Until(Instant),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Within the timer wheel's millisecond of `secs`.
    fn close_to(took: Duration, secs: u64) -> bool {
        let want = Duration::from_secs(secs);
        took >= want && took <= want + Duration::from_millis(5)
    }

    #[tokio::test(start_paused = true)]
    async fn each_wait_gets_its_own_limit() {
        let mut w = Watchdog::new();
        // Done in time.
        let got = w.limit(Duration::from_secs(5), async { 7 }).await;
        assert_eq!(got, Ok(7));
        // A short limit after a long one.
        let never = std::future::pending::<()>();
        let start = Instant::now();
        assert_eq!(w.limit(Duration::from_secs(60), async {}).await, Ok(()));
        assert_eq!(w.limit(Duration::from_secs(2), never).await, Err(Elapsed));
        assert!(close_to(start.elapsed(), 2));
        // A long limit after a short one: the timer fires at the old deadline first and
        // the wait goes on to its own.
        let start = Instant::now();
        let _ = w.limit(Duration::from_secs(1), async {}).await;
        let slow = tokio::time::sleep(Duration::from_secs(20));
        assert_eq!(w.limit(Duration::from_secs(30), slow).await, Ok(()));
        assert!(close_to(start.elapsed(), 20));
        let start = Instant::now();
        let never = std::future::pending::<()>();
        assert_eq!(w.limit(Duration::from_secs(30), never).await, Err(Elapsed));
        assert!(close_to(start.elapsed(), 30));
    }
}
