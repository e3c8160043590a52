//! Fetches URL blocklists in the background with labgate's own client ([`Client`]: hosts
//! never found through labgate's own listeners, so nothing waits for them to boot), bounded
//! in size and time, refreshed on each list's interval; a failed fetch keeps the last good
//! list.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use labgate_config::blocklist::BlockSet;
use labgate_config::blocklist::BlocklistFormat;
use labgate_config::settings::BlocklistSource;
use labgate_outbound::{Client, Limits, Redacted};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::status::Shared;

/// What one download may take: the largest list accepted, and the longest a whole download
/// (redirects included) may take.
pub const LIMITS: Limits = Limits {
    body: 32 << 20,
    time: Duration::from_secs(60),
};
/// Longest wait before retrying a failed download.
pub const RETRY_AFTER: Duration = Duration::from_secs(60);

/// Runs until cancelled.
pub async fn run(
    shared: Arc<Shared>,
    dns: labgate_dns::Dns,
    client: Client,
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
                r = fetch(&client, url) => r,
                () = cancel.cancelled() => return,
            };
            let next = match fetched {
                Ok(text) => {
                    let set = BlockSet::parse(&text, l.format);
                    info!(list = %l.name, url = %Redacted(url), names = set.len(), skipped = set.skipped, "blocklist fetched");
                    dns.publish_list(url.as_str(), &Arc::new(set));
                    shared.list_fetches[0].fetch_add(1, Ordering::Relaxed);
                    l.refresh
                }
                Err(e) => {
                    warn!(list = %l.name, url = %Redacted(url), "blocklist fetch failed: {e:#}; the last good list stays");
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
async fn fetch(client: &Client, url: &url::Url) -> anyhow::Result<String> {
    let body = client.get(url, LIMITS).await?;
    String::from_utf8(body.to_vec()).map_err(|_| anyhow::anyhow!("the list is not UTF-8 text"))
}
