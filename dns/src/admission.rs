//! The bound on queries waiting for the upstreams (Unbound's `num-queries-per-thread`, with a
//! share per client): only queries that must be forwarded take a place; internal names,
//! blocked names and cache hits are answered without one and never wait behind them.
//!
//! Policy beyond the bound: the query is answered at once, from a stale cache entry if there
//! is one, else SERVFAIL, and counted by the limit it met. SERVFAIL rather than silence: a
//! stub resolver moves to its next server at once instead of waiting out its timeout, and the
//! answer is no larger than the query, so it amplifies nothing.
//!
//! Three limits, all counted with atomics on the query path (no lock, no allocation):
//! - in total, over every listener ([`labgate_config::settings::DnsSettings::max_in_flight`]);
//! - per UDP worker, an equal share of the total, so one listening address cannot take the
//!   places of the others;
//! - per client (an IPv4 address, an IPv6 /64), so one device cannot take every place.
//!   Clients are counted in [`CLIENT_SLOTS`] hashed slots: two clients that share a slot share
//!   its limit.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Slots clients are hashed into for their share.
pub(crate) const CLIENT_SLOTS: usize = 4096;

/// Which limit a query met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    /// Every place over all listeners is taken.
    Total,
    /// The UDP worker's share is taken.
    Worker,
    /// The client's share is taken.
    Client,
}

impl Limit {
    /// Every limit, in the order metrics show them.
    pub(crate) const ALL: [Self; 3] = [Self::Total, Self::Worker, Self::Client];

    /// The metric label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Total => "total",
            Self::Worker => "worker",
            Self::Client => "client",
        }
    }
}

/// The limits in force: from the snapshot, the worker's share from the number of workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) total: usize,
    pub(crate) worker: usize,
    pub(crate) client: usize,
}

impl Limits {
    /// The limits for `total` places over `workers` UDP workers, `client` per client.
    pub(crate) fn new(total: usize, workers: usize, client: usize) -> Self {
        Self {
            total,
            worker: total.div_ceil(workers.max(1)),
            client,
        }
    }
}

/// Something counted per client, in [`CLIENT_SLOTS`] hashed slots (no lock, no allocation
/// per client: a flood of new addresses costs nothing).
pub(crate) struct PerClient(Box<[AtomicUsize]>);

impl Default for PerClient {
    fn default() -> Self {
        Self((0..CLIENT_SLOTS).map(|_| AtomicUsize::new(0)).collect())
    }
}

impl PerClient {
    /// Counts one more for `client`: its slot and the count before.
    pub(crate) fn raise(&self, client: IpAddr) -> (usize, usize) {
        let slot = client_slot(client);
        (slot, self.0[slot].fetch_add(1, Ordering::AcqRel))
    }

    /// Counts one less in `slot`.
    pub(crate) fn lower(&self, slot: usize) {
        self.0[slot].fetch_sub(1, Ordering::AcqRel);
    }
}

/// The places taken, shared by every listener.
#[derive(Default)]
pub(crate) struct Admission {
    total: AtomicUsize,
    clients: PerClient,
}

/// One UDP worker's places, and how many workers share the total.
#[derive(Debug, Clone)]
pub(crate) struct WorkerShare {
    places: Arc<AtomicUsize>,
    workers: usize,
}

impl WorkerShare {
    /// The places of one of `workers` UDP workers.
    pub(crate) fn new(workers: usize) -> Self {
        Self {
            places: Arc::default(),
            workers,
        }
    }
}

impl Admission {
    /// Takes a place for a query from `client` (over UDP: in `worker`'s share) with `total`
    /// places over every listener and `per_client` for each client, or names the limit it
    /// met. The place is given back when the ticket drops.
    pub(crate) fn enter(
        self: &Arc<Self>,
        client: IpAddr,
        worker: Option<&WorkerShare>,
        total: usize,
        per_client: usize,
    ) -> Result<Ticket, Limit> {
        let limits = Limits::new(total, worker.map_or(1, |w| w.workers), per_client);
        // The client's count first, and the next only once it passed: a client at its share
        // never holds, even for a moment, a place another client needs. Each count is raised
        // and then checked, and lowered again by the ticket on refusal, so no two racing
        // queries both take the last place.
        let (slot, client) = self.clients.raise(client);
        let mut ticket = Ticket {
            admission: Arc::clone(self),
            slot,
            worker: None,
            total: false,
        };
        if client >= limits.client {
            return Err(Limit::Client);
        }
        if let Some(w) = worker {
            let taken = w.places.fetch_add(1, Ordering::AcqRel);
            ticket.worker = Some(Arc::clone(&w.places));
            if taken >= limits.worker {
                return Err(Limit::Worker);
            }
        }
        ticket.total = true;
        if self.total.fetch_add(1, Ordering::AcqRel) >= limits.total {
            return Err(Limit::Total);
        }
        Ok(ticket)
    }

    /// Queries waiting for the upstreams now.
    pub(crate) fn in_flight(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }
}

/// A place taken (or, while it is being taken, the counts raised so far); given back on drop.
pub(crate) struct Ticket {
    admission: Arc<Admission>,
    slot: usize,
    worker: Option<Arc<AtomicUsize>>,
    total: bool,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.admission.clients.lower(self.slot);
        if let Some(w) = &self.worker {
            w.fetch_sub(1, Ordering::AcqRel);
        }
        if self.total {
            self.admission.total.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// The slot a client is counted in: an IPv4 address, or an IPv6 address's /64 (one host's
/// privacy addresses share it).
fn client_slot(ip: IpAddr) -> usize {
    let key = match labgate_config::network::canonical(ip) {
        IpAddr::V4(a) => u64::from(u32::from(a)),
        IpAddr::V6(a) => (u128::from(a) >> 64) as u64 ^ 0x9e37_79b9_7f4a_7c15,
    };
    // Fibonacci hashing: the top bits of the product spread neighbouring addresses.
    let hashed = key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - CLIENT_SLOTS.trailing_zeros());
    usize::try_from(hashed).unwrap_or(0) % CLIENT_SLOTS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_share_is_checked_first_and_a_refusal_holds_nothing() {
        let a = Arc::new(Admission::default());
        let worker = WorkerShare::new(1);
        let flood: IpAddr = "10.0.0.66".parse().expect("ip");
        let other: IpAddr = "10.0.0.7".parse().expect("ip");
        // The flooder holds its share (2) of a total of 3 and keeps asking: each refusal is
        // named for its share, and leaves the total and the worker as they were.
        let held: Vec<_> = (0..2)
            .map(|_| {
                a.enter(flood, Some(&worker), 3, 2)
                    .expect("within its share")
            })
            .collect();
        for _ in 0..5 {
            assert_eq!(
                a.enter(flood, Some(&worker), 3, 2).err(),
                Some(Limit::Client)
            );
            assert_eq!(a.in_flight(), 2);
            assert_eq!(worker.places.load(Ordering::Relaxed), 2);
        }
        // A worker's share, then the total, are named when they are what is full.
        let w = WorkerShare::new(1);
        let _third = a.enter(other, None, 3, 2).expect("the last place");
        assert_eq!(a.enter(other, Some(&w), 3, 2).err(), Some(Limit::Total));
        assert_eq!(
            w.places.load(Ordering::Relaxed),
            0,
            "a refusal gives the worker's back"
        );
        let small = WorkerShare::new(3);
        drop(held);
        let _mine = a
            .enter("10.0.0.9".parse().expect("ip"), Some(&small), 3, 2)
            .expect("a place");
        assert_eq!(
            a.enter("10.0.0.10".parse().expect("ip"), Some(&small), 3, 2)
                .err(),
            Some(Limit::Worker),
            "a third of 3 places is one"
        );
    }

    #[test]
    fn a_worker_gets_an_equal_share_of_the_total() {
        assert_eq!(Limits::new(1024, 2, 64).worker, 512);
        assert_eq!(Limits::new(1024, 3, 64).worker, 342);
        assert_eq!(Limits::new(1024, 0, 64).worker, 1024);
    }

    #[test]
    fn places_are_given_back_and_a_refusal_takes_none() {
        let a = Arc::new(Admission::default());
        let worker = WorkerShare::new(1);
        let flood: IpAddr = "10.0.0.66".parse().expect("ip");
        let other: IpAddr = "10.0.0.7".parse().expect("ip");
        assert_ne!(client_slot(flood), client_slot(other));
        let enter = |ip, worker| a.enter(ip, worker, 3, 2);
        let one = enter(flood, Some(&worker)).expect("first");
        let two = enter(flood, Some(&worker)).expect("second");
        assert_eq!(enter(flood, Some(&worker)).err(), Some(Limit::Client));
        // Another client of the same network still gets the last place.
        let three = enter(other, None).expect("another client");
        assert_eq!(enter(other, None).err(), Some(Limit::Total));
        assert_eq!(a.in_flight(), 3);
        assert_eq!(worker.places.load(Ordering::Relaxed), 2);
        drop((one, two, three));
        assert_eq!(a.in_flight(), 0);
        assert_eq!(worker.places.load(Ordering::Relaxed), 0);
        assert!(a.clients.0.iter().all(|c| c.load(Ordering::Relaxed) == 0));
    }

    #[test]
    fn an_ipv6_host_is_one_client_across_its_privacy_addresses() {
        let a: IpAddr = "fd00:1:2:3::1".parse().expect("ip");
        let b: IpAddr = "fd00:1:2:3:abcd:ef01:2345:6789".parse().expect("ip");
        let c: IpAddr = "fd00:1:2:4::1".parse().expect("ip");
        assert_eq!(client_slot(a), client_slot(b));
        assert_ne!(client_slot(a), client_slot(c));
        // An IPv4-mapped address is its IPv4 client.
        let mapped: IpAddr = "::ffff:10.0.0.66".parse().expect("ip");
        assert_eq!(
            client_slot(mapped),
            client_slot("10.0.0.66".parse().expect("ip"))
        );
    }

    #[test]
    fn neighbouring_addresses_spread_over_the_slots() {
        let slots: std::collections::HashSet<usize> = (0..256u32)
            .map(|i| client_slot(IpAddr::V4((0x0a00_0000 | i).into())))
            .collect();
        assert!(slots.len() > 240, "{} distinct slots of 256", slots.len());
    }
}
