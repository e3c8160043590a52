//! The one way a subsystem takes a new snapshot.

use std::sync::Arc;

use crate::Snapshot;

/// A subsystem that serves from a snapshot (the proxy, DNS, the certificates).
///
/// The reload task calls [`Publish::publish`] for each subsystem in a fixed order with every
/// new snapshot. The subsystem builds its derived state there, on the caller's thread and off
/// its own data path (pools, forwarders, fast tables, the certificate map), then serves it
/// with one swap: a request sees the old state or the new one, never a mix.
pub trait Publish: Send + Sync {
    /// The subsystem's name, for logs.
    fn name(&self) -> &'static str;

    /// Builds the state for `snapshot` and serves it from the next request on. It may block
    /// (read files, sign keys): the reload task calls it from a blocking thread.
    fn publish(&self, snapshot: Arc<Snapshot>);
}
