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
            Authorities::Fixed(s) => s.iter().map(|a| vec![*a]).collect(),
            Authorities::Discover(lookup) => discover(lookup.as_ref(), &fqdn).await?,
        };
        checks.push((fqdn, values, servers));
    }
    wait_for(&checks, timeout).await
}

/// Each server, by any one of its addresses: a name server's IPv4 and IPv6 addresses are
/// the same server, and a host without IPv6 reaches it by the first.
type Servers = Vec<Vec<SocketAddr>>;

/// Polls until every server of every name serves all its values, or `timeout` passes.
async fn wait_for(checks: &[(Name, Vec<&str>, Servers)], timeout: Duration) -> Result<(), Error> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = FIRST_PAUSE;
    loop {
        let mut missing = None;
        'all: for (fqdn, values, servers) in checks {
            for addresses in servers {
                if let Err(what) = serves(addresses, fqdn, values).await {
                    missing = Some((fqdn.to_string(), what));
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

/// Whether one of a server's `addresses` serves every value at `name`; else what the
/// first lacks.
async fn serves(addresses: &[SocketAddr], name: &Name, values: &[&str]) -> Result<(), String> {
    let mut first_lack = None;
    for server in addresses {
        match first_lacking(&txt_at(*server, name).await, values) {
            None => return Ok(()),
            Some(v) => {
                first_lack
                    .get_or_insert_with(|| format!("{server} does not serve the value {v} yet"));
            }
        }
    }
    Err(first_lack.unwrap_or_else(|| "a name server without addresses".into()))
}

/// The first of `values` that is not among the `served` TXT strings, exactly (a value is
/// the whole string: one that a longer string contains is not served).
fn first_lacking<'v>(served: &[String], values: &[&'v str]) -> Option<&'v str> {
    values
        .iter()
        .find(|v| !served.iter().any(|s| s == *v))
        .copied()
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

/// The authoritative servers of the zone holding `name`, each with its addresses (IPv4
/// first): the closest enclosing name with NS records, all through the upstreams.
async fn discover(lookup: &dyn Lookup, name: &Name) -> Result<Servers, Error> {
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
                let mut addresses = Vec::new();
                for rtype in [RecordType::A, RecordType::AAAA] {
                    for d in lookup.records(&host, rtype).await {
                        let ip = match d {
                            RData::A(a) => IpAddr::V4(a.0),
                            RData::AAAA(a) => IpAddr::V6(a.0),
                            _ => continue,
                        };
                        addresses.push(SocketAddr::new(ip, 53));
                    }
                }
                if !addresses.is_empty() {
                    out.push(addresses);
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

    #[test]
    fn every_value_must_be_served_whole() {
        let served = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        // (served TXT strings, expected values, the first lacking)
        let table: [(&[&str], &[&str], Option<&str>); 8] = [
            (&["a"], &["a"], None),
            (&["b", "a"], &["a", "b"], None),
            (&["a", "b", "other"], &["a"], None),
            (&[], &["a"], Some("a")),
            (&["a"], &["a", "b"], Some("b")),
            (&["b"], &["a", "b"], Some("a")),
            (&["xay", "a2"], &["a"], Some("a")),
            (&["A"], &["a"], Some("a")),
        ];
        for (txt, values, lacking) in table {
            assert_eq!(
                first_lacking(&served(txt), values),
                lacking,
                "{txt:?} {values:?}"
            );
        }
    }

    #[tokio::test]
    async fn the_closest_enclosing_zone_with_ns_gives_every_server_address() {
        let name = fqdn("_acme-challenge.app.lab.example.test").expect("name");
        let servers = discover(&Upstream, &name).await.expect("found");
        let addr = |s: &str| s.parse::<SocketAddr>().expect("addr");
        let want = vec![
            vec![addr("192.0.2.1:53")],
            vec![addr("192.0.2.2:53"), addr("192.0.2.3:53")],
        ];
        assert_eq!(servers, want);
        let e = discover(
            &Upstream,
            &fqdn("_acme-challenge.other.test").expect("name"),
        )
        .await
        .expect_err("no zone");
        assert!(e.to_string().contains("acme.propagation_servers"), "{e}");
    }

    /// A UDP server on 127.0.0.1 that answers every query with one TXT record, `value`.
    fn txt_server(value: &'static str) -> SocketAddr {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = socket.local_addr().expect("addr");
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = socket.recv_from(&mut buf) {
                // The question: the name's labels, then type and class.
                let mut end = 12;
                while end < n && buf[end] != 0 {
                    end += 1 + usize::from(buf[end]);
                }
                let question = &buf[12..(end + 5).min(n)];
                let mut answer = vec![buf[0], buf[1], 0x84, 0, 0, 1, 0, 1, 0, 0, 0, 0];
                answer.extend_from_slice(question);
                answer.extend_from_slice(&[0xC0, 12, 0, 16, 0, 1, 0, 0, 0, 0]);
                let len = u8::try_from(value.len()).expect("short value");
                answer.extend_from_slice(&[0, len + 1, len]);
                answer.extend_from_slice(value.as_bytes());
                let _ = socket.send_to(&answer, from);
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_server_passes_when_any_of_its_addresses_serves_the_value() {
        // An IPv6 address first, as the NS of a host without IPv6 have (no route, or a
        // documentation address that never answers), then one that serves the value.
        let unreachable: SocketAddr = "[2001:db8::1]:53".parse().expect("addr");
        let serving = txt_server("token-1");
        let name = fqdn("_acme-challenge.app.lab.example.test").expect("name");
        wait_for(
            &[(
                name.clone(),
                vec!["token-1"],
                vec![vec![unreachable, serving]],
            )],
            Duration::from_secs(20),
        )
        .await
        .expect("served by its second address");
        let e = wait_for(
            &[(name, vec!["token-2"], vec![vec![serving]])],
            Duration::from_millis(300),
        )
        .await
        .expect_err("not served");
        assert!(
            e.to_string()
                .contains(&format!("{serving} does not serve the value token-2")),
            "{e}"
        );
    }
}
