//! Waits until every challenge value is served by every authoritative server of its zone,
//! asked directly (never a caching resolver, whose negative cache could hide a new record
//! from us and from the CA alike). The servers come from the configuration, or from the
//! zone's public NS records looked up through the upstreams.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hickory_net::client::{Client, ClientHandle};
use hickory_net::proto::rr::{DNSClass, Name, RData, RecordType};
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::udp::UdpClientStream;

use crate::Error;

/// Longest one query to an authoritative server may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(3);
/// First and longest pause between checks.
const FIRST_PAUSE: Duration = Duration::from_millis(200);
const MAX_PAUSE: Duration = Duration::from_secs(4);

/// Records from the upstream resolvers (never labgate's own views).
#[async_trait]
pub trait Lookup: Send + Sync {
    /// The data of `name`'s records of `rtype`; empty when there are none or on failure.
    async fn records(&self, name: &Name, rtype: RecordType) -> Vec<RData>;
}

/// Which servers must serve the values.
#[derive(Clone)]
pub enum Authorities {
    /// These servers (`acme.propagation_servers`).
    Fixed(Vec<SocketAddr>),
    /// The zone's NS, found through the upstreams.
    Discover(Arc<dyn Lookup>),
}

/// Waits until each `(name, value)` is served by every authoritative server of its zone, or
/// `timeout` passes.
///
/// # Errors
/// [`Error::Propagation`] naming a server and what it lacked.
pub(crate) async fn wait(
    authorities: &Authorities,
    expected: &[(String, String)],
    timeout: Duration,
) -> Result<(), Error> {
    let mut by_name: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, value) in expected {
        by_name.entry(name).or_default().push(value);
    }
    let mut checks = Vec::new();
    for (name, values) in by_name {
        let fqdn = fqdn(name)?;
        let servers = match authorities {
            Authorities::Fixed(s) => s.clone(),
            Authorities::Discover(lookup) => discover(lookup.as_ref(), &fqdn).await?,
        };
        checks.push((fqdn, values, servers));
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = FIRST_PAUSE;
    loop {
        let mut missing = None;
        'all: for (fqdn, values, servers) in &checks {
            for server in servers {
                let served = txt_at(*server, fqdn).await;
                if let Some(v) = values.iter().find(|v| !served.iter().any(|s| s == *v)) {
                    missing = Some((
                        fqdn.to_string(),
                        format!("{server} does not serve the value {v} yet"),
                    ));
                    break 'all;
                }
            }
        }
        let Some((name, what)) = missing else {
            return Ok(());
        };
        if tokio::time::Instant::now() + pause > deadline {
            return Err(Error::Propagation {
                name,
                what: format!(
                    "{what} after {} s: check that the provider writes to the zone these servers serve",
                    timeout.as_secs()
                ),
            });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

fn fqdn(name: &str) -> Result<Name, Error> {
    let mut n = Name::from_ascii(name).map_err(|e| Error::Propagation {
        name: name.to_owned(),
        what: format!("not a DNS name ({e})"),
    })?;
    n.set_fqdn(true);
    Ok(n)
}

/// The TXT strings `server` answers for `name` (each record's strings joined); empty on
/// failure.
async fn txt_at(server: SocketAddr, name: &Name) -> Vec<String> {
    let stream = UdpClientStream::builder(server, TokioRuntimeProvider::default())
        .with_timeout(Some(QUERY_TIMEOUT))
        .build();
    let (mut client, background) = Client::<TokioRuntimeProvider>::from_sender(stream);
    let task = tokio::spawn(background);
    let answer = client
        .query(name.clone(), DNSClass::IN, RecordType::TXT)
        .await;
    task.abort();
    let Ok(response) = answer else {
        return Vec::new();
    };
    response
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(t) => Some(
                t.txt_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// The addresses of the authoritative servers of the zone holding `name`: the closest
/// enclosing name with NS records, and their addresses, all through the upstreams.
async fn discover(lookup: &dyn Lookup, name: &Name) -> Result<Vec<SocketAddr>, Error> {
    let mut zone = name.clone();
    loop {
        let hosts: Vec<Name> = lookup
            .records(&zone, RecordType::NS)
            .await
            .into_iter()
            .filter_map(|d| match d {
                RData::NS(ns) => Some(ns.0),
                _ => None,
            })
            .collect();
        if !hosts.is_empty() {
            let mut out = Vec::new();
            for host in hosts {
                for rtype in [RecordType::A, RecordType::AAAA] {
                    for d in lookup.records(&host, rtype).await {
                        let ip = match d {
                            RData::A(a) => IpAddr::V4(a.0),
                            RData::AAAA(a) => IpAddr::V6(a.0),
                            _ => continue,
                        };
                        out.push(SocketAddr::new(ip, 53));
                    }
                }
            }
            if out.is_empty() {
                break;
            }
            return Ok(out);
        }
        if zone.num_labels() <= 1 {
            break;
        }
        zone = zone.base_name();
    }
    Err(Error::Propagation {
        name: name.to_string(),
        what: "cannot find its zone's authoritative servers through the upstreams: set `acme.propagation_servers`".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_net::proto::rr::rdata::{A, NS};

    /// Upstream data: `lab.example.test` is a zone with two servers, one of them with two
    /// addresses; nothing else has NS records.
    struct Upstream;

    #[async_trait]
    impl Lookup for Upstream {
        async fn records(&self, name: &Name, rtype: RecordType) -> Vec<RData> {
            let n = |s: &str| Name::from_ascii(s).expect("name");
            match (name.to_string().as_str(), rtype) {
                ("lab.example.test.", RecordType::NS) => vec![
                    RData::NS(NS(n("ns1.example.net."))),
                    RData::NS(NS(n("ns2.example.net."))),
                ],
                ("ns1.example.net.", RecordType::A) => vec![RData::A(A::new(192, 0, 2, 1))],
                ("ns2.example.net.", RecordType::A) => vec![
                    RData::A(A::new(192, 0, 2, 2)),
                    RData::A(A::new(192, 0, 2, 3)),
                ],
                _ => Vec::new(),
            }
        }
    }

    #[tokio::test]
    async fn the_closest_enclosing_zone_with_ns_gives_every_server_address() {
        let name = fqdn("_acme-challenge.app.lab.example.test").expect("name");
        let servers = discover(&Upstream, &name).await.expect("found");
        let want: Vec<SocketAddr> = ["192.0.2.1:53", "192.0.2.2:53", "192.0.2.3:53"]
            .iter()
            .map(|s| s.parse().expect("addr"))
            .collect();
        assert_eq!(servers, want);
        let e = discover(
            &Upstream,
            &fqdn("_acme-challenge.other.test").expect("name"),
        )
        .await
        .expect_err("no zone");
        assert!(e.to_string().contains("acme.propagation_servers"), "{e}");
    }
}
