//! Where labgate's own clients ([`labgate_outbound`]) find hosts: labgate's own records, read
//! from the current snapshot, and its DNS upstreams. The order they are asked in, and the
//! system's resolver, are [`labgate_outbound::Names`]'.

use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use hickory_proto::rr::{LowerName, Name, RData, RecordType};
use labgate_config::Snapshot;
use labgate_config::view::Lookup;
use labgate_outbound::{Names, Resolve};

/// labgate's DNS, whose upstreams the client asks: the one `labgate_dns` item used here.
type Dns = labgate_dns::Dns;

/// labgate's sources in labgate's order: the `snapshot`'s records and `dns`'s upstreams.
pub fn names(snapshot: Arc<ArcSwap<Snapshot>>, dns: Dns) -> Names {
    Names::new(Arc::new(OwnRecords(snapshot)), Arc::new(Upstreams(dns)))
}

/// The records of the current snapshot's views.
struct OwnRecords(Arc<ArcSwap<Snapshot>>);

#[async_trait]
impl Resolve for OwnRecords {
    async fn addresses(&self, host: &str) -> Vec<IpAddr> {
        own_records(&self.0.load(), host)
    }
}

/// labgate's DNS upstreams, asked directly (never labgate's own listeners, so nothing waits
/// for them to start).
struct Upstreams(Dns);

#[async_trait]
impl Resolve for Upstreams {
    async fn addresses(&self, host: &str) -> Vec<IpAddr> {
        self.0.resolve_upstream(host).await
    }
}

/// The name's A records (else its AAAA records) in the first view that has any.
fn own_records(s: &Snapshot, name: &str) -> Vec<IpAddr> {
    let Ok(mut fqdn) = Name::from_str(name) else {
        return Vec::new();
    };
    fqdn.set_fqdn(true);
    let lower = LowerName::from(fqdn);
    for rtype in [RecordType::A, RecordType::AAAA] {
        for view in &s.views {
            if let Lookup::Answer { records, .. } = view.lookup(&s.zones, &lower, rtype) {
                let ips: Vec<IpAddr> = records
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::A(a) => Some(IpAddr::V4(a.0)),
                        RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                        _ => None,
                    })
                    .collect();
                if !ips.is_empty() {
                    return ips;
                }
            }
        }
    }
    Vec::new()
}
