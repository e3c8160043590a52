//! Resolves backends given by host name, in the background and never on the request path,
//! the way all of labgate's own clients do ([`Names`]: its records, then the system's
//! resolver, then its upstreams).

use std::sync::Arc;
use std::time::Duration;

use labgate_config::route::BackendHost;
use labgate_outbound::{Names, Site};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::status::Shared;

/// Time between resolutions of every named backend.
const REFRESH: Duration = Duration::from_secs(30);

/// Resolves named backends after every reload and every 30 seconds (`REFRESH`).
pub async fn run(
    shared: Arc<Shared>,
    proxy: Arc<labgate_proxy::Proxy>,
    names: Arc<Names>,
    cancel: CancellationToken,
) {
    let mut published = shared.published.subscribe();
    let mut tick = tokio::time::interval(REFRESH);
    tick.tick().await;
    loop {
        tokio::select! {
            changed = published.changed() => if changed.is_err() { return },
            _ = tick.tick() => {}
            () = cancel.cancelled() => return,
        }
        resolve_all(&proxy, &names).await;
    }
}

/// Resolves every named backend once.
pub async fn resolve_all(proxy: &labgate_proxy::Proxy, names: &Names) {
    let state = proxy.state();
    for b in state.pools.all() {
        let BackendHost::Name(name) = &b.backend.host else {
            continue;
        };
        match names.addresses(name, Site::Local).await.first() {
            Some(&ip) => b.set_address(ip),
            None => {
                warn!(backend = %b.backend.url, "cannot resolve {name}; requests to it get 502 until it resolves")
            }
        }
    }
}
