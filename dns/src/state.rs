//! Everything DNS derives from one snapshot, built off the data path and published whole:
//! the general path's [`Inputs`] (the snapshot, the fetched blocklists, the forwarders) and the
//! UDP fast path's two tables (precompiled answers, kept cache hits). The control plane builds
//! a [`DnsState`] for each new snapshot (`DnsState::build`) or new blocklists, then stores it
//! with one swap (`front::Dns`); a query loads one state and decides with it alone, so nothing
//! on the query path builds, compares generations or locks to rebuild.

use std::sync::Arc;

use labgate_config::Snapshot;

use crate::answer::FetchedLists;
use crate::fast::FastTable;
use crate::forward::Forwarders;
use crate::hits::HitTable;
use crate::resolver::Inputs;

/// DNS's derived state of one snapshot and one set of fetched blocklists.
pub struct DnsState {
    /// What the general path decides with.
    pub(crate) inputs: Arc<Inputs>,
    /// The fast path's precompiled answers (internal names: blocklists play no part).
    pub(crate) fast: Arc<FastTable>,
    /// The fast path's cache hits, kept from general-path answers decided with `inputs`.
    pub(crate) hits: HitTable,
}

impl DnsState {
    /// The state of `snapshot`, keeping from `previous` (none at start) the fetched
    /// blocklists and the forwarders' resolvers, health and cache where their settings did not
    /// change; the fast path's answers are compiled by the general path itself, and no cache
    /// hit is kept yet.
    pub fn build(snapshot: Arc<Snapshot>, previous: Option<&Self>) -> Self {
        let (forwarders, lists) = match previous {
            Some(p) => (
                Forwarders::build(&snapshot, &p.inputs.forwarders),
                Arc::clone(&p.inputs.lists),
            ),
            None => (
                Forwarders::build(&snapshot, &Forwarders::empty()),
                Arc::default(),
            ),
        };
        let inputs = Arc::new(Inputs {
            snapshot,
            lists,
            forwarders: Arc::new(forwarders),
        });
        Self {
            fast: Arc::new(FastTable::build(&inputs)),
            inputs,
            hits: HitTable::default(),
        }
    }

    /// The same state with other fetched blocklists: the kept cache hits, decided with the
    /// old ones, start afresh.
    pub(crate) fn with_lists(&self, lists: Arc<FetchedLists>) -> Self {
        Self {
            inputs: Arc::new(Inputs {
                snapshot: Arc::clone(&self.inputs.snapshot),
                lists,
                forwarders: Arc::clone(&self.inputs.forwarders),
            }),
            fast: Arc::clone(&self.fast),
            hits: HitTable::default(),
        }
    }
}
