//! Builds each network's view: synthesized apex data, explicit records and records derived
//! from services, refusing data that cannot coexist (CNAME beside other data, an explicit
//! address record on a service's host).

use std::collections::HashMap;
use std::net::IpAddr;

use hickory_proto::rr::rdata::{A, AAAA, NS};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};

use crate::network::{NetworkId, NetworkKind, Networks};
use crate::view::{Node, View, Zone, zone_of};

/// Where a record in a view came from, for conflict messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Origin {
    /// Apex SOA/NS and `ns.<zone>` glue made by labgate.
    Synthesized,
    /// A `[[record]]`, at a place.
    Explicit(String),
    /// Derived from a service, by name.
    Service(String),
}

impl Origin {
    fn describe(&self) -> String {
        match self {
            Self::Synthesized => "labgate's synthesized zone data".to_owned(),
            Self::Explicit(at) => format!("the record at {at}"),
            Self::Service(name) => format!("service `{name}`"),
        }
    }
}

#[derive(Default)]
struct NodeBuilder {
    records: Vec<(Record, Origin)>,
}

/// Views under construction, one per network.
pub(super) struct ViewsBuilder {
    views: Vec<HashMap<LowerName, NodeBuilder>>,
}

impl ViewsBuilder {
    pub(super) fn new(networks: &Networks, zones: &[Zone]) -> Self {
        let mut b = Self {
            views: networks.iter().map(|_| HashMap::new()).collect(),
        };
        for n in networks.iter() {
            // SECURITY: a network that may not see internal names gets empty zones, so every
            // internal name is NXDOMAIN there and nothing about the lab leaks.
            if n.kind != NetworkKind::Local || !n.internal {
                continue;
            }
            for z in zones {
                let apex = Name::from(&z.name);
                b.put(n.id, z.soa.clone(), Origin::Synthesized);
                for ns in &z.ns {
                    let r = Record::from_rdata(apex.clone(), z.ttl, RData::NS(NS(ns.clone())));
                    b.put(n.id, r, Origin::Synthesized);
                }
                if z.synthesized_ns {
                    for ns in &z.ns {
                        for ip in &n.addresses {
                            b.put(
                                n.id,
                                address_record(ns.clone(), z.ttl, *ip),
                                Origin::Synthesized,
                            );
                        }
                    }
                }
            }
        }
        b
    }

    /// Adds a record to a view. `Err` describes the data it conflicts with.
    pub(super) fn add(
        &mut self,
        net: NetworkId,
        record: Record,
        origin: Origin,
    ) -> Result<(), String> {
        let rtype = record.record_type();
        let node = self.views[net.index()]
            .entry(LowerName::new(&record.name))
            .or_default();
        // An explicit SOA, or the first explicit NS, replaces the synthesized apex data.
        if matches!(rtype, RecordType::SOA | RecordType::NS) && origin != Origin::Synthesized {
            node.records
                .retain(|(r, o)| !(r.record_type() == rtype && *o == Origin::Synthesized));
        }
        for (r, o) in &node.records {
            let other = r.record_type();
            if r.data == record.data {
                return Ok(());
            }
            let cname_clash = (rtype == RecordType::CNAME) != (other == RecordType::CNAME)
                || (rtype == RecordType::CNAME && other == RecordType::CNAME);
            let address = |t| matches!(t, RecordType::A | RecordType::AAAA);
            let service_clash = address(rtype)
                && address(other)
                && matches!(
                    (o, &origin),
                    (Origin::Service(_), Origin::Explicit(_))
                        | (Origin::Explicit(_), Origin::Service(_))
                );
            let soa_clash = rtype == RecordType::SOA && other == RecordType::SOA;
            if cname_clash || service_clash || soa_clash {
                return Err(format!("{} ({other})", o.describe()));
            }
        }
        node.records.push((record, origin));
        Ok(())
    }

    fn put(&mut self, net: NetworkId, record: Record, origin: Origin) {
        let node = self.views[net.index()]
            .entry(LowerName::new(&record.name))
            .or_default();
        if !node.records.iter().any(|(r, _)| r.data == record.data) {
            node.records.push((record, origin));
        }
    }

    /// Adds empty non-terminals and freezes the views.
    pub(super) fn finish(self, zones: &[Zone]) -> Vec<View> {
        self.views
            .into_iter()
            .enumerate()
            .map(|(i, map)| {
                let mut reverse: HashMap<IpAddr, Vec<(Name, u32)>> = HashMap::new();
                for (r, origin) in map.values().flat_map(|b| b.records.iter()) {
                    let ip = match &r.data {
                        RData::A(a) => IpAddr::V4(a.0),
                        RData::AAAA(a) => IpAddr::V6(a.0),
                        _ => continue,
                    };
                    // Synthesized `ns.<zone>` glue is labgate itself, not a host to name, and
                    // a wildcard owner (`*.dev`) names no host.
                    if *origin != Origin::Synthesized && !r.name.is_wildcard() {
                        let names = reverse.entry(ip).or_default();
                        names.push((r.name.clone(), r.ttl));
                        names.sort_by(|a, b| a.0.cmp(&b.0));
                        names.dedup_by(|a, b| a.0 == b.0);
                    }
                }
                let mut nodes: HashMap<LowerName, Node> = map
                    .into_iter()
                    .map(|(name, b)| {
                        let records = b.records.into_iter().map(|(r, _)| r).collect();
                        (name, Node { records })
                    })
                    .collect();
                let names: Vec<LowerName> = nodes.keys().cloned().collect();
                for name in names {
                    let Some(zone) = zone_of(zones, &name) else {
                        continue;
                    };
                    let mut parent = name.base_name();
                    while zone.name.zone_of(&parent) {
                        nodes.entry(parent.clone()).or_default();
                        if parent == zone.name {
                            break;
                        }
                        parent = parent.base_name();
                    }
                }
                View {
                    network: NetworkId(i as u8),
                    nodes,
                    reverse,
                }
            })
            .collect()
    }
}

/// An A or AAAA record for an address.
pub(super) fn address_record(name: Name, ttl: u32, ip: IpAddr) -> Record {
    let data = match ip {
        IpAddr::V4(a) => RData::A(A(a)),
        IpAddr::V6(a) => RData::AAAA(AAAA(a)),
    };
    Record::from_rdata(name, ttl, data)
}

#[cfg(test)]
mod tests {
    use hickory_proto::rr::{LowerName, Name, RecordType};

    use crate::testing::{diagnostics, snapshot};

    const LAB: &str = r#"
[[network]]
name = "lab"
cidrs = ["10.0.0.0/16"]
addresses = ["10.0.0.2"]
[[zone]]
name = "lab.test"
[[service]]
host = "app.lab.test"
allow = ["lab"]
backends = ["http://10.0.0.9"]
"#;

    fn record(name: &str, rtype: &str, value: &str) -> String {
        format!("[[record]]\nname = \"{name}\"\ntype = \"{rtype}\"\nvalue = \"{value}\"\n")
    }

    /// Which records may share a name in a view.
    #[test]
    fn what_may_share_a_name() {
        // Name, type and value of a [[record]].
        type Written = (&'static str, &'static str, &'static str);
        let cases: &[(&[Written], &[&str])] = &[
            (
                &[
                    ("nas.lab.test", "A", "10.0.0.9"),
                    ("nas.lab.test", "A", "10.0.0.10"),
                    ("nas.lab.test", "TXT", "x"),
                ],
                &[],
            ),
            (
                &[
                    ("nas.lab.test", "A", "10.0.0.9"),
                    ("nas.lab.test", "A", "10.0.0.9"),
                ],
                &[],
            ),
            (
                &[
                    ("nas.lab.test", "A", "10.0.0.9"),
                    ("nas.lab.test", "CNAME", "app.lab.test"),
                ],
                &[
                    "error `record[1]`: CNAME record for `nas.lab.test` conflicts with the record at test.toml:13:8 (A) in network `lab`",
                ],
            ),
            (
                &[
                    ("www.lab.test", "CNAME", "app.lab.test"),
                    ("www.lab.test", "TXT", "x"),
                ],
                &[
                    "error `record[1]`: TXT record for `www.lab.test` conflicts with the record at test.toml:13:8 (CNAME) in network `lab`",
                ],
            ),
            (
                &[
                    ("www.lab.test", "CNAME", "app.lab.test"),
                    ("www.lab.test", "CNAME", "nas.lab.test"),
                ],
                &[
                    "error `record[1]`: CNAME record for `www.lab.test` conflicts with the record at test.toml:13:8 (CNAME) in network `lab`",
                ],
            ),
            // A service's host gets its addresses from the service, other types may be written.
            (
                &[("app.lab.test", "A", "10.0.0.77")],
                &[
                    "error `service[0].host`: `app.lab.test` conflicts with the record at test.toml:13:8 (A) in network `lab`",
                ],
            ),
            (&[("app.lab.test", "TXT", "v=1")], &[]),
            (
                &[("app.lab.test", "CNAME", "nas.lab.test")],
                &[
                    "error `service[0].host`: `app.lab.test` conflicts with the record at test.toml:13:8 (CNAME) in network `lab`",
                ],
            ),
            // A written SOA or NS replaces labgate's synthesized one; two written SOAs clash.
            (
                &[(
                    "lab.test",
                    "SOA",
                    "ns.lab.test. admin.lab.test. 7 3600 600 604800 30",
                )],
                &[],
            ),
            (
                &[
                    (
                        "lab.test",
                        "SOA",
                        "ns.lab.test. admin.lab.test. 7 3600 600 604800 30",
                    ),
                    (
                        "lab.test",
                        "SOA",
                        "ns.lab.test. admin.lab.test. 8 3600 600 604800 30",
                    ),
                ],
                &[
                    "error `record[1]`: SOA record for `lab.test` conflicts with the record at test.toml:13:8 (SOA) in network `lab`",
                ],
            ),
            (
                &[
                    ("lab.test", "NS", "ns1.elsewhere.test"),
                    ("lab.test", "NS", "ns2.elsewhere.test"),
                ],
                &[],
            ),
        ];
        for (records, expected) in cases {
            let written: String = records.iter().map(|(n, t, v)| record(n, t, v)).collect();
            assert_eq!(
                diagnostics(&format!("{LAB}{written}"), &[]),
                *expected,
                "{records:?}"
            );
        }
    }

    /// The records of a name in the lab view, as `TYPE data` in order.
    fn at(toml: &str, name: &str) -> Vec<String> {
        let s = snapshot(toml);
        let name = LowerName::new(&Name::from_ascii(name).expect("test name"));
        s.views[0]
            .nodes
            .get(&name)
            .map(|n| {
                n.records
                    .iter()
                    .map(|r| format!("{} {}", r.record_type(), r.data))
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn synthesized_and_written_apex_data() {
        let cases: &[(&str, &str, &[&str])] = &[
            ("", "lab.test.", &["SOA", "NS ns.lab.test."]),
            ("", "ns.lab.test.", &["A 10.0.0.2"]),
            (
                &record("lab.test", "NS", "ns1.elsewhere.test"),
                "lab.test.",
                &["SOA", "NS ns1.elsewhere.test."],
            ),
            (
                &record(
                    "lab.test",
                    "SOA",
                    "ns.lab.test. admin.lab.test. 7 3600 600 604800 30",
                ),
                "lab.test.",
                &[
                    "NS ns.lab.test.",
                    "SOA ns.lab.test. admin.lab.test. 7 3600 600 604800 30",
                ],
            ),
        ];
        for (written, name, expected) in cases {
            let got: Vec<String> = at(&format!("{LAB}{written}"), name)
                .into_iter()
                // The synthesized SOA's serial follows the content: its type is enough here.
                .map(|r| {
                    if r.starts_with("SOA ns.lab.test. hostmaster") {
                        "SOA".into()
                    } else {
                        r
                    }
                })
                .collect();
            assert_eq!(got, *expected, "{written} {name}");
        }
    }

    /// Empty non-terminals, and the names each address answers PTR queries with.
    #[test]
    fn finished_views() {
        let toml = format!(
            "{LAB}{}{}{}",
            record("deep.a.b.lab.test", "A", "10.0.0.9"),
            record("*.dev.lab.test", "A", "10.0.0.9"),
            record("nas.lab.test", "A", "10.0.0.9")
        );
        let s = snapshot(&toml);
        let view = &s.views[0];
        for ent in ["a.b.lab.test.", "b.lab.test.", "dev.lab.test."] {
            let name = LowerName::new(&Name::from_ascii(ent).expect("test name"));
            assert!(
                view.nodes.get(&name).is_some_and(|n| n.records.is_empty()),
                "{ent}"
            );
        }
        let cases: &[(&str, &[&str])] = &[
            // Sorted, once each; no wildcard owner.
            ("10.0.0.9", &["deep.a.b.lab.test.", "nas.lab.test."]),
            // labgate's own address names the services, not the synthesized `ns` glue.
            ("10.0.0.2", &["app.lab.test."]),
            ("10.0.0.3", &[]),
        ];
        for (ip, expected) in cases {
            let got: Vec<String> = view
                .reverse
                .get(&ip.parse().expect("ip"))
                .into_iter()
                .flatten()
                .map(|(n, _)| n.to_string())
                .collect();
            assert_eq!(got, *expected, "{ip}");
        }
        let ptr = view.derived_ptr(&LowerName::new(
            &Name::from_ascii("9.0.0.10.in-addr.arpa.").expect("name"),
        ));
        assert_eq!(ptr.len(), 2);
        assert!(ptr.iter().all(|r| r.record_type() == RecordType::PTR));
    }
}
