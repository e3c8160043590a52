//! Where labgate's own clients find a host's addresses: labgate's own records first (a
//! private ACME server, a list on the NAS), then, for hosts on the internet (blocklist URLs,
//! Cloudflare Access keys, the ACME server, Cloudflare's API), the upstreams before the
//! system's resolver, and for backends the system's resolver (`/etc/hosts`, Docker's names)
//! before the upstreams. On the VM labgate runs on, `/etc/resolv.conf` often points at
//! labgate itself, where the VM's own address is in no network and gets REFUSED: the
//! system's resolver alone would fail there. Reading the snapshot's records needs no running
//! DNS server, so nothing here waits for labgate's own listeners.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tracing::debug;

/// Longest one system lookup may take.
const SYSTEM_LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// One source of a host's addresses. The binary supplies labgate's own records and its DNS
/// upstreams through it; [`Names`] is one too, the one the [`crate::Client`] asks.
#[async_trait]
pub trait Resolve: Send + Sync {
    /// The addresses of `host` (a name, not an address literal); empty when it has none.
    async fn addresses(&self, host: &str) -> Vec<IpAddr>;
}

/// Where a host is expected, which decides whether the upstreams or the system's resolver
/// is asked first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Site {
    /// A public service: the upstreams first.
    Internet,
    /// A backend: the system's resolver first (`/etc/hosts`, container names).
    Local,
}

/// labgate's order of sources (see the module's documentation).
pub struct Names {
    own: Arc<dyn Resolve>,
    upstreams: Arc<dyn Resolve>,
}

impl std::fmt::Debug for Names {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Names").finish_non_exhaustive()
    }
}

impl Names {
    /// Names found in labgate's `own` records, then in its `upstreams` and the system's
    /// resolver.
    pub fn new(own: Arc<dyn Resolve>, upstreams: Arc<dyn Resolve>) -> Self {
        Self { own, upstreams }
    }

    /// The addresses of `host` (IPv4 first), from the first source that has any.
    pub async fn addresses(&self, host: &str, site: Site) -> Vec<IpAddr> {
        let host = host.trim_end_matches('.');
        let sources = match plan(host, site) {
            Plan::Loopback => {
                return vec![
                    IpAddr::V4(Ipv4Addr::LOCALHOST),
                    IpAddr::V6(Ipv6Addr::LOCALHOST),
                ];
            }
            Plan::Ask(sources) => sources,
        };
        for source in sources {
            let mut ips = match source {
                Source::Own => self.own.addresses(host).await,
                Source::Upstreams => self.upstreams.addresses(host).await,
                Source::System => system(host).await,
            };
            if !ips.is_empty() {
                debug!("{host} resolved from {source:?}: {ips:?}");
                ips.sort_by_key(IpAddr::is_ipv6);
                return ips;
            }
        }
        Vec::new()
    }
}

#[async_trait]
impl Resolve for Names {
    /// Hosts the client is asked for are on the internet: the upstreams first.
    async fn addresses(&self, host: &str) -> Vec<IpAddr> {
        Self::addresses(self, host, Site::Internet).await
    }
}

/// A source of addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// labgate's own records.
    Own,
    /// labgate's DNS upstreams.
    Upstreams,
    /// The system's resolver.
    System,
}

/// How a name is resolved.
#[derive(Debug, PartialEq, Eq)]
enum Plan {
    /// To the loopback addresses, asking no one.
    Loopback,
    /// By asking these sources in turn until one has addresses.
    Ask([Source; 3]),
}

/// How `host` (without its trailing dot) is resolved for a client at `site`.
fn plan(host: &str, site: Site) -> Plan {
    // RFC 6761 §6.3: localhost is the loopback, whatever a resolver says.
    if host.eq_ignore_ascii_case("localhost") {
        return Plan::Loopback;
    }
    // labgate's records first: a name the configuration defines means what labgate answers.
    Plan::Ask(match site {
        Site::Internet => [Source::Own, Source::Upstreams, Source::System],
        Site::Local => [Source::Own, Source::System, Source::Upstreams],
    })
}

/// The system's resolver (`getaddrinfo`: `/etc/hosts`, then `/etc/resolv.conf`).
async fn system(host: &str) -> Vec<IpAddr> {
    let lookup = tokio::net::lookup_host((host, 0));
    match tokio::time::timeout(SYSTEM_LOOKUP_TIMEOUT, lookup).await {
        Ok(Ok(addrs)) => addrs.map(|a| a.ip()).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_site_orders_the_sources_and_localhost_asks_no_one() {
        use Source::{Own, System, Upstreams};
        let table = [
            ("localhost", Site::Internet, Plan::Loopback),
            ("LocalHost", Site::Local, Plan::Loopback),
            (
                "lists.example",
                Site::Internet,
                Plan::Ask([Own, Upstreams, System]),
            ),
            ("nas.lab", Site::Local, Plan::Ask([Own, System, Upstreams])),
            // Only localhost itself: a name under it is asked about like any other.
            (
                "app.localhost",
                Site::Local,
                Plan::Ask([Own, System, Upstreams]),
            ),
        ];
        for (host, site, want) in table {
            assert_eq!(plan(host, site), want, "{host} {site:?}");
        }
    }

    /// A source that knows one answer for every name.
    struct Fixed(Vec<IpAddr>);

    #[async_trait]
    impl Resolve for Fixed {
        async fn addresses(&self, _: &str) -> Vec<IpAddr> {
            self.0.clone()
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    #[tokio::test]
    async fn the_first_source_with_addresses_answers_ipv4_first() {
        let names = |own: &[&str], upstreams: &[&str]| {
            Names::new(
                Arc::new(Fixed(own.iter().map(|s| ip(s)).collect())),
                Arc::new(Fixed(upstreams.iter().map(|s| ip(s)).collect())),
            )
        };
        // labgate's own record wins over the upstreams, at either site.
        let both = names(&["192.168.1.10"], &["203.0.113.7"]);
        for site in [Site::Internet, Site::Local] {
            assert_eq!(both.addresses("nas.lab.", site).await, [ip("192.168.1.10")]);
        }
        let upstream = names(&[], &["2001:db8::7", "203.0.113.7"]);
        assert_eq!(
            upstream.addresses("lists.example", Site::Internet).await,
            [ip("203.0.113.7"), ip("2001:db8::7")]
        );
        assert_eq!(
            upstream.addresses("localhost.", Site::Internet).await,
            [ip("127.0.0.1"), ip("::1")]
        );
    }
}
