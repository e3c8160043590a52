//! Open client connections of one listener, in all and per client address, bounded by
//! `server.max_connections` and `server.max_connections_per_address`.
//!
//! A connection is counted from the moment its task starts, before its TLS handshake, until
//! its task ends: the count lives in a [`Hold`] that the connection's task owns, so no path
//! can end a connection without releasing it. pingora's `ConnectionFilter` sees the accept
//! earlier but has no release callback, and work that can fail runs between it and the task.
//! A connection beyond a bound is closed at once, before any byte is read or written.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use labgate_config::settings::ConnectionLimits;

/// Why a connection was closed as it was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The listener holds `server.max_connections`.
    Listener,
    /// The client's address holds `server.max_connections_per_address` on this listener.
    Address,
}

impl Refused {
    /// Every reason, in the order of their counters.
    pub const ALL: [Self; 2] = [Self::Listener, Self::Address];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Listener => "listener",
            Self::Address => "address",
        }
    }
}

/// One listener's open connections and refusals.
#[derive(Debug, Default)]
pub struct Open {
    // PERF: one lock, taken twice per connection (open and close) for a map lookup, never
    // across an await and never in the handshake itself (C4 is about the certificate
    // resolver, which every handshake reads).
    counts: Mutex<Counts>,
    refused: [AtomicU64; Refused::ALL.len()],
}

impl Open {
    /// Counts a new connection from `client` (`None`: not bounded per address) if the bounds
    /// allow it; the [`Hold`] releases it when dropped.
    ///
    /// # Errors
    /// The bound it would pass, counted.
    pub fn admit(
        &self,
        client: Option<IpAddr>,
        limits: ConnectionLimits,
    ) -> Result<Hold<'_>, Refused> {
        let admitted = self
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .admit(client, limits);
        match admitted {
            Ok(()) => Ok(Hold { open: self, client }),
            Err(why) => {
                self.refused[why as usize].fetch_add(1, Ordering::Relaxed);
                Err(why)
            }
        }
    }

    /// Connections open now.
    pub fn count(&self) -> u32 {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }

    /// Connections refused so far, for a reason.
    pub fn refused(&self, why: Refused) -> u64 {
        self.refused[why as usize].load(Ordering::Relaxed)
    }
}

/// A counted connection: released when dropped.
#[derive(Debug)]
pub struct Hold<'a> {
    open: &'a Open,
    client: Option<IpAddr>,
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        self.open
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .release(self.client);
    }
}

/// The counts themselves: the decision, without locks or I/O.
#[derive(Debug, Default)]
struct Counts {
    total: u32,
    /// Addresses with at least one connection open.
    by_address: HashMap<IpAddr, u32>,
}

impl Counts {
    fn admit(&mut self, client: Option<IpAddr>, limits: ConnectionLimits) -> Result<(), Refused> {
        if self.total >= limits.per_listener.get() {
            return Err(Refused::Listener);
        }
        if let Some(ip) = client {
            let n = self.by_address.entry(ip).or_default();
            if *n >= limits.per_address.get() {
                return Err(Refused::Address);
            }
            *n += 1;
        }
        self.total += 1;
        Ok(())
    }

    fn release(&mut self, client: Option<IpAddr>) {
        debug_assert!(self.total > 0, "a release without an admit");
        self.total = self.total.saturating_sub(1);
        if let Some(ip) = client
            && let Some(n) = self.by_address.get_mut(&ip)
        {
            *n -= 1;
            if *n == 0 {
                // The map holds only addresses with connections: it is bounded by the
                // listener's bound, whatever the number of addresses seen.
                self.by_address.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;

    fn limits(per_listener: u32, per_address: u32) -> ConnectionLimits {
        ConnectionLimits {
            per_listener: NonZeroU32::new(per_listener).expect("nonzero"),
            per_address: NonZeroU32::new(per_address).expect("nonzero"),
        }
    }

    #[test]
    fn r21_an_address_at_its_bound_is_refused_while_others_are_served() {
        let open = Open::default();
        let (a, b): (IpAddr, IpAddr) = (
            "10.0.0.1".parse().expect("ip"),
            "10.0.0.2".parse().expect("ip"),
        );
        let l = limits(5, 2);
        let a1 = open.admit(Some(a), l).expect("first");
        let a2 = open.admit(Some(a), l).expect("second");
        assert_eq!(open.admit(Some(a), l).err(), Some(Refused::Address));
        let b1 = open.admit(Some(b), l).expect("another address");
        // Unbounded per address (the tunnel): only the listener's bound.
        let t1 = open.admit(None, l).expect("tunnel");
        let t2 = open.admit(None, l).expect("tunnel");
        assert_eq!(open.count(), 5);
        assert_eq!(open.admit(Some(b), l).err(), Some(Refused::Listener));
        assert_eq!(open.admit(None, l).err(), Some(Refused::Listener));
        drop(a1);
        let a3 = open.admit(Some(a), l).expect("a slot came free");
        drop((a2, a3, b1, t1, t2));
        assert_eq!(open.count(), 0);
        assert!(open.counts.lock().expect("lock").by_address.is_empty());
        assert_eq!(
            (
                open.refused(Refused::Address),
                open.refused(Refused::Listener)
            ),
            (1, 2)
        );
    }
}
