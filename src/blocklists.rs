//! Fetches URL blocklists in the background: hosts found as all of labgate's own clients find
//! them ([`Outbound`]: never through labgate's own listeners, so nothing waits for them to
//! boot), bounded in size and time, refreshed on each list's interval, and a failed fetch
//! keeps the last good list.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use labgate_config::blocklist::BlockSet;
use labgate_config::blocklist::BlocklistFormat;
use labgate_config::settings::BlocklistSource;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::outbound::{Outbound, Redacted};
use crate::status::Shared;

/// Largest list accepted.
pub const MAX_LIST_BYTES: usize = 32 << 20;
/// Longest a whole download may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait before retrying a failed download.
pub const RETRY_AFTER: Duration = Duration::from_secs(60);

/// Runs until cancelled.
pub async fn run(
    shared: Arc<Shared>,
    dns: labgate_dns::Dns,
    outbound: Outbound,
    cancel: CancellationToken,
) {
    // By URL, format and interval: a list whose format or interval a reload changed is
    // fetched again at once (it was parsed with the old format until its next refresh).
    let mut due: HashMap<(String, BlocklistFormat, Duration), Instant> = HashMap::new();
    loop {
        let snapshot = shared.snapshot.load_full();
        for l in &snapshot.dns.blocklists {
            let BlocklistSource::Url(url) = &l.source else {
                continue;
            };
            let key = (url.to_string(), l.format, l.refresh);
            if due.get(&key).is_some_and(|d| *d > Instant::now()) {
                continue;
            }
            let fetched = tokio::select! {
                r = tokio::time::timeout(FETCH_TIMEOUT, fetch(&outbound, url)) => r,
                () = cancel.cancelled() => return,
            };
            let next = match fetched {
                Ok(Ok(text)) => {
                    let set = BlockSet::parse(&text, l.format);
                    info!(list = %l.name, url = %Redacted(url), names = set.len(), skipped = set.skipped, "blocklist fetched");
                    dns.publish_list(url.as_str(), &Arc::new(set));
                    shared.list_fetches[0].fetch_add(1, Ordering::Relaxed);
                    l.refresh
                }
                failed => {
                    let why = match failed {
                        Ok(Err(e)) => e,
                        _ => format!("no answer within {FETCH_TIMEOUT:?}"),
                    };
                    warn!(list = %l.name, url = %Redacted(url), "blocklist fetch failed: {why}; the last good list stays");
                    shared.list_fetches[1].fetch_add(1, Ordering::Relaxed);
                    l.refresh.min(RETRY_AFTER)
                }
            };
            due.insert(key, Instant::now() + next);
        }
        // New snapshots may add lists: look again within a second (with nothing due, in a
        // second, not at once: that would spin).
        let relook = Instant::now() + Duration::from_secs(1);
        let wake = due
            .values()
            .min()
            .map_or(relook, |&at| at.clamp(Instant::now(), relook));
        tokio::select! {
            () = tokio::time::sleep_until(wake) => {}
            () = cancel.cancelled() => return,
        }
    }
}

/// One download, the body as text.
async fn fetch(outbound: &Outbound, url: &url::Url) -> Result<String, String> {
    let body = outbound.get(url, MAX_LIST_BYTES).await?;
    String::from_utf8(body.to_vec()).map_err(|_| "the list is not UTF-8 text".to_owned())
}
