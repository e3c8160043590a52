//! [`Dns`], what the listeners and the control plane hold: the published [`DnsState`] (one
//! `ArcSwap`, stored once per new snapshot or new blocklists) and the general path
//! (`resolver`) behind the UDP fast path. A UDP query is answered from the state's precompiled
//! answers or kept cache hits when it can be, else by the general path, whose fresh cache hits
//! the front keeps; TCP and TLS queries go to the general path alone.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use arc_swap::ArcSwap;
use hickory_proto::rr::{Name, RData, RecordType};
use labgate_config::blocklist::BlockSet;
use labgate_config::{Publish, Snapshot};
use labgate_dnstap::{Kind, Tap};
use labgate_querylog::{Flags, Lane, Sink, Source, Transport};

use crate::answer::FetchedLists;
use crate::cache::Lifetime;
use crate::challenges::Challenges;
use crate::fast;
use crate::log::{Answered, Arrival, capture};
use crate::metrics::{CacheEvent, Metrics};
use crate::resolver::{Plan, Resolver};
use crate::state::DnsState;

/// DNS as the binary holds it: the state it serves, and the general path. Clones share both.
#[derive(Clone)]
pub struct Dns {
    general: Resolver,
    state: Arc<ArcSwap<DnsState>>,
    /// Where the dnstap stream's messages go, if it runs.
    tap: Option<Arc<Tap>>,
}

impl Dns {
    /// DNS serving `snapshot` (its state built now), counting into `metrics`.
    pub fn new(snapshot: Arc<Snapshot>, metrics: Arc<Metrics>) -> Self {
        Self {
            general: Resolver::new(metrics, Arc::default(), None),
            state: Arc::new(ArcSwap::from_pointee(DnsState::build(snapshot, None))),
            tap: None,
        }
    }

    /// The same DNS, leaving a dnstap message of each query and response in `tap` while the
    /// snapshot served has a `[dnstap]`.
    #[must_use]
    pub fn tapping(self, tap: Arc<Tap>) -> Self {
        Self {
            tap: Some(tap),
            ..self
        }
    }

    /// Leaves a dnstap message of `dns` (`kind` says query or response) between `client` and
    /// labgate's `server`, if the stream runs.
    pub(crate) fn tap(
        &self,
        arrival: &Arrival,
        (kind, client, server): (Kind, SocketAddr, Option<SocketAddr>),
        dns: &[u8],
    ) {
        if let Some(tap) = self.tap.as_deref().filter(|t| t.active()) {
            let state = self.state.load();
            let snapshot = &state.inputs.snapshot;
            crate::log::tap(tap, snapshot, arrival, (kind, client, server), dns);
        }
    }

    /// The same DNS, leaving a record of each answered query in `log` (the query log's sink).
    #[must_use]
    pub fn logging(self, log: Arc<Sink>) -> Self {
        let general = Resolver::new(
            Arc::clone(self.general.metrics()),
            Arc::clone(self.general.challenges()),
            Some(log),
        );
        Self { general, ..self }
    }

    /// Serves the blocklist fetched from `url` from the next query on.
    pub fn publish_list(&self, url: &str, set: &Arc<BlockSet>) {
        self.state.rcu(|previous| {
            let mut lists = FetchedLists::clone(&previous.inputs.lists);
            lists.insert(url.to_owned(), Arc::clone(set));
            previous.with_lists(Arc::new(lists))
        });
    }

    /// Its counters.
    pub fn metrics(&self) -> &Metrics {
        self.general.metrics()
    }

    /// Where the ACME `builtin` provider publishes challenge values.
    pub fn challenges(&self) -> Arc<Challenges> {
        Arc::clone(self.general.challenges())
    }

    /// Resolves a host name through the upstreams directly (never labgate's own views, so a
    /// list download does not depend on labgate's own DNS).
    pub async fn resolve_upstream(&self, host: &str) -> Vec<IpAddr> {
        let forwarders = Arc::clone(&self.state.load().inputs.forwarders);
        forwarders.addresses(host).await
    }

    /// The data of `name`'s `rtype` records through the upstreams (never labgate's own views,
    /// never the cache): how ACME finds a zone's authoritative servers.
    pub async fn upstream_records(&self, name: &Name, rtype: RecordType) -> Vec<RData> {
        let forwarders = Arc::clone(&self.state.load().inputs.forwarders);
        forwarders.records(name, rtype).await
    }

    /// Answers a UDP query that arrived as `arrival` says into `out` from the precompiled
    /// table or the kept cache hits of the state now served; `None` sends it to the general
    /// path.
    pub(crate) fn fast_answer(
        &self,
        src: IpAddr,
        query: &[u8],
        out: &mut [u8],
        arrival: &Arrival,
    ) -> Option<usize> {
        let state = self.state.load();
        let matched = state.inputs.snapshot.networks.lookup(src)?.network;
        let network = matched.index();
        let p = fast::parse(query, u16::try_from(network).ok()?)?;
        let metrics = self.general.metrics();
        let (len, rcode, source) = match state.fast.answer(&p, query, out) {
            Some((len, rcode)) => (len, rcode, Source::Internal),
            None => {
                let (len, rcode) = state.hits.answer(&p, query, out)?;
                metrics.cache(CacheEvent::Hit);
                (len, rcode, Source::Cache)
            }
        };
        metrics.query(Some(network), RecordType::from(p.qtype), rcode);
        metrics.fast_answer();
        if let Some(sink) = self.general.log() {
            // `parse` took only uncompressed IN questions with the RD bit free and no DO.
            let rd = if query[2] & 0x01 != 0 { Flags::RD } else { 0 };
            let answered = Answered {
                question: &query[12..],
                qtype: p.qtype,
                qclass: 1,
                rcode: u16::from(rcode),
                source,
                flags: rd,
            };
            let snapshot = &state.inputs.snapshot;
            let client = (src, Some(matched));
            capture(sink, snapshot, arrival, client, &answered, &out[..len]);
        }
        Some(len)
    }

    /// The fast path as the UDP workers take it, for benches and tests: a query received now.
    pub fn fast_answer_now(&self, src: IpAddr, query: &[u8], out: &mut [u8]) -> Option<usize> {
        let arrival = Arrival::now(Transport::Udp, Lane::Shared);
        self.fast_answer(src, query, out, &arrival)
    }

    /// Runs one query's bytes through the general path as a UDP query from `src`, waiting for
    /// the upstreams without a bound (fuzzing, tests and benches; the UDP workers take places):
    /// the response bytes, or `None` when the query deserves silence.
    pub async fn answer_bytes(&self, data: &[u8], src: SocketAddr) -> Option<Vec<u8>> {
        let arrival = Arrival::now(Transport::Udp, Lane::Shared);
        let out = match self.plan_udp(data, src, arrival) {
            Plan::Ready(out, _) => out,
            Plan::Upstream(p) => self.general.complete(*p, None).await,
        };
        (!out.is_empty()).then_some(out)
    }

    /// The general path's plan for a UDP query, with the state now served; a fresh cache hit's
    /// response is kept for the fast path, in that state's table.
    pub(crate) fn plan_udp(&self, data: &[u8], src: SocketAddr, arrival: Arrival) -> Plan {
        let state = self.state.load();
        let plan = self.general.plan(&state.inputs, data, src, arrival);
        if let Plan::Ready(out, Some(life)) = &plan {
            keep_hit(&state, src, data, out, *life);
        }
        plan
    }

    /// Runs one query's bytes through the general path as a TCP or TLS (`transport`) query
    /// from `src` (see `Resolver::answer_stream`).
    pub(crate) async fn answer_stream(
        &self,
        data: &[u8],
        src: SocketAddr,
        arrival: Arrival,
    ) -> Option<Vec<u8>> {
        let inputs = Arc::clone(&self.state.load().inputs);
        self.general
            .answer_stream(&inputs, data, (src, arrival))
            .await
    }

    /// The general path, for the queries that wait for the upstreams.
    pub(crate) fn general(&self) -> &Resolver {
        &self.general
    }

    /// The state now served.
    #[cfg(test)]
    pub(crate) fn state(&self) -> Arc<DnsState> {
        self.state.load_full()
    }

    /// Caches a forwarded answer as if an upstream had given it (fuzzing and tests).
    #[cfg(any(test, feature = "test-util"))]
    pub(crate) fn remember(
        &self,
        name: &hickory_proto::rr::LowerName,
        rtype: RecordType,
        answer: &crate::answer::Answer,
    ) {
        self.state
            .load()
            .inputs
            .forwarders
            .remember(name, rtype, answer);
    }
}

/// Keeps a cache hit's response in `state`'s table (whose inputs decided it) if the query is
/// one the fast path takes.
fn keep_hit(state: &DnsState, src: SocketAddr, query: &[u8], response: &[u8], life: Lifetime) {
    let snapshot = &state.inputs.snapshot;
    let Some(network) = snapshot.networks.lookup(src.ip()) else {
        return;
    };
    let Some(p) = u16::try_from(network.network.index())
        .ok()
        .and_then(|index| fast::parse(query, index))
    else {
        return;
    };
    state
        .hits
        .keep(snapshot.dns.cache_size.get(), &p, response, life);
}

impl Publish for Dns {
    fn name(&self) -> &'static str {
        "dns"
    }

    /// Serves a new snapshot from the next query on: its state (forwarders, fast table, an
    /// empty hit table) is built here, on the caller's thread, then stored with one swap.
    fn publish(&self, snapshot: Arc<Snapshot>) {
        // A list fetched while the state was built is not lost: the swap is retried over it.
        self.state
            .rcu(|previous| DnsState::build(Arc::clone(&snapshot), Some(previous)));
    }
}
