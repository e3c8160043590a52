//! Resolves backends given by host name, in the background and never on the request path:
//! labgate's own DNS data first (any view that has the name), then the system resolver.

use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::rr::{LowerName, Name, RData, RecordType};
use labgate_config::Snapshot;
use labgate_config::route::BackendHost;
use labgate_config::view::Lookup;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::status::Shared;

/// Time between resolutions of every named backend.
const REFRESH: Duration = Duration::from_secs(30);
/// Longest one system lookup may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Resolves named backends after every reload and every [`REFRESH`].
pub async fn run(shared: Arc<Shared>, proxy: Arc<labgate_proxy::Proxy>, cancel: CancellationToken) {
    let mut published = shared.published.subscribe();
    let mut tick = tokio::time::interval(REFRESH);
    tick.tick().await;
    loop {
        tokio::select! {
            changed = published.changed() => if changed.is_err() { return },
            _ = tick.tick() => {}
            () = cancel.cancelled() => return,
        }
        resolve_all(&proxy).await;
    }
}

/// Resolves every named backend once.
pub async fn resolve_all(proxy: &labgate_proxy::Proxy) {
    let state = proxy.state();
    for b in state.pools.all() {
        let BackendHost::Name(name) = &b.backend.host else {
            continue;
        };
        match resolve(&state.snapshot, name, b.backend.port).await {
            Some(ip) => b.set_address(ip),
            None => {
                warn!(backend = %b.backend.url, "cannot resolve {name}; requests to it get 502 until it resolves")
            }
        }
    }
}

/// One address for a name: from the configuration's own records, else the system resolver.
pub async fn resolve(s: &Snapshot, name: &str, port: u16) -> Option<IpAddr> {
    if let Some(ip) = own_record(s, name) {
        debug!("{name} resolved from labgate's own records: {ip}");
        return Some(ip);
    }
    let lookup = tokio::net::lookup_host((name, port));
    let addrs = tokio::time::timeout(LOOKUP_TIMEOUT, lookup)
        .await
        .ok()?
        .ok()?;
    addrs.map(|a| a.ip()).min_by_key(IpAddr::is_ipv6)
}

/// An A (else AAAA) record for the name in the first view that has one.
fn own_record(s: &Snapshot, name: &str) -> Option<IpAddr> {
    let mut fqdn = Name::from_str(name).ok()?;
    fqdn.set_fqdn(true);
    let lower = LowerName::from(fqdn);
    for rtype in [RecordType::A, RecordType::AAAA] {
        for view in &s.views {
            if let Lookup::Answer { records, .. } = view.lookup(&s.zones, &lower, rtype) {
                let ip = records.iter().find_map(|r| match &r.data {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                    _ => None,
                });
                if ip.is_some() {
                    return ip;
                }
            }
        }
    }
    None
}
