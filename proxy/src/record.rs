//! What every executor does once a request is over: its counters and its access line. One
//! function each, so no path counts differently.

use std::time::Duration;

use labgate_config::Snapshot;

use crate::Proxy;
use crate::access::Entry;
use crate::plan::{Refused, Served};
use crate::rewrite::Head;

/// Method, host and target of a request, for the access log: taken while the head is at hand,
/// and only when the log is on.
#[derive(Debug)]
pub struct Logged {
    method: String,
    host: String,
    target: String,
}

/// When a request starts, for the `took` that [`Proxy::served`] records: std's clock, the time
/// that really passes, since a latency measured on a paused test clock would read zero.
#[allow(
    clippy::disallowed_methods,
    reason = "a latency is the time that really passed, not the test clock's"
)]
pub(crate) fn started() -> std::time::Instant {
    std::time::Instant::now()
}

impl Proxy {
    /// What the access log needs of `head`, if it is on.
    pub fn logged(&self, head: &impl Head) -> Option<Box<Logged>> {
        self.access.enabled().then(|| {
            Box::new(Logged {
                method: head.method().to_owned(),
                host: String::from_utf8_lossy(head.host().unwrap_or_default()).into_owned(),
                target: head.target().to_owned(),
            })
        })
    }

    /// Records a request that reached its service: `status` is what the client got (`None`
    /// when no response reached it), `took` from its head to its end.
    pub fn served(
        &self,
        s: &Snapshot,
        served: Served,
        logged: Option<Box<Logged>>,
        status: Option<u16>,
        took: Duration,
    ) {
        self.metrics
            .request(served.service.index(), served.network.index(), status, took);
        if let Some(l) = logged {
            let service = s.service(served.service).name.to_string();
            self.access_line(*l, (served.client, served.ray), service, (status, took));
        }
    }

    /// Queues the access line of a request.
    fn access_line(
        &self,
        logged: Logged,
        (client, ray): (std::net::IpAddr, Option<String>),
        service: String,
        (status, took): (Option<u16>, Duration),
    ) {
        let Logged {
            method,
            host,
            target,
        } = logged;
        self.access.send(Entry {
            client,
            ray,
            service,
            method,
            host,
            path: target,
            status,
            took,
        });
    }

    /// Records a request from `client` refused before it reached a service (`status`: what it
    /// got), with its access line when `logged` (from [`Proxy::logged`]).
    pub fn refused(
        &self,
        r: Refused,
        (client, status): (std::net::IpAddr, u16),
        logged: Option<Box<Logged>>,
    ) {
        match r {
            Refused::Route(r) => self.metrics.refusal(r),
            Refused::Access(r) => self.metrics.access_refused(r),
        }
        if let Some(l) = logged {
            self.access_line(
                *l,
                (client, None),
                String::new(),
                (Some(status), Duration::ZERO),
            );
        }
    }
}
