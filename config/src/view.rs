//! Per-network DNS data: the internal zones and each view's records, with the lookup rules
//! (answer, CNAME chain inside internal data, NODATA, NXDOMAIN, wildcards, empty
//! non-terminals) that the DNS server and `explain` both use.

use std::collections::HashMap;
use std::net::IpAddr;

use hickory_proto::rr::rdata::PTR;
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};

use crate::network::NetworkId;

/// Index of a zone in the snapshot's zones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ZoneId(pub(crate) u16);

impl ZoneId {
    /// Position in the snapshot's zones.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// An internal domain, answered authoritatively.
#[derive(Debug, Clone)]
pub struct Zone {
    /// Its id.
    pub id: ZoneId,
    /// The apex, lower-case and fully qualified.
    pub name: LowerName,
    /// The SOA record (also in every view's apex node).
    pub soa: Record,
    /// Subdomains a `[[forward]]` delegates to another server: not part of the zone.
    pub delegated: Vec<LowerName>,
    /// Name servers at the apex.
    pub ns: Vec<Name>,
    /// Whether `ns` is the synthesized `ns.<zone>`, which resolves to labgate in each view.
    pub synthesized_ns: bool,
    /// TTL of records derived for this zone.
    pub ttl: u32,
}

/// Records of one name in one view; an empty node is an empty non-terminal.
#[derive(Debug, Clone, Default)]
pub struct Node {
    /// The records, grouped by type in insertion order.
    pub records: Vec<Record>,
}

impl Node {
    /// Records of one type.
    pub fn of_type(&self, rtype: RecordType) -> impl Iterator<Item = &Record> {
        self.records
            .iter()
            .filter(move |r| r.record_type() == rtype)
    }

    fn cname(&self) -> Option<&Record> {
        self.of_type(RecordType::CNAME).next()
    }
}

/// What one network sees of the internal zones.
#[derive(Debug, Clone)]
pub struct View {
    /// The network this view is for.
    pub network: NetworkId,
    /// Every name with data or below which data exists, lower-case.
    pub nodes: HashMap<LowerName, Node>,
    /// Owner names of the view's A/AAAA records (explicit and from services), by address:
    /// the source of derived PTR answers.
    pub reverse: HashMap<IpAddr, Vec<(Name, u32)>>,
}

/// The most CNAMEs followed inside internal data before answering with what was found.
pub const MAX_CNAME_CHAIN: usize = 8;

/// The outcome of looking a name up in a view's internal data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The name is in no internal zone: forward it (if the network may recurse).
    Outside,
    /// The name does not exist in this view.
    NxDomain {
        /// The zone that answers.
        zone: ZoneId,
    },
    /// The name exists but has no data of that type.
    NoData {
        /// The zone that answers.
        zone: ZoneId,
    },
    /// Records, CNAMEs first when a chain was followed.
    Answer {
        /// The zone of the queried name.
        zone: ZoneId,
        /// The answer section.
        records: Vec<Record>,
        /// How a CNAME chain ended.
        end: ChainEnd,
    },
}

/// How the last name of an answer's CNAME chain fared (RFC 6604: the rcode follows it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainEnd {
    /// Records of the asked type (or no chain at all).
    Data,
    /// The chain ends at a name that does not exist in this view: NXDOMAIN, that zone's SOA.
    NxDomain(ZoneId),
    /// The chain ends at a name without the asked type: NOERROR, that zone's SOA.
    NoData(ZoneId),
    /// The chain leaves the internal zones here; a resolver continues.
    Outside(Name),
}

impl View {
    /// The SOA of `zone` for negative answers in this view: the apex's own (an explicit
    /// `[[record]]` of type SOA replaces the synthesized one, as SOA queries see), with the
    /// negative TTL of RFC 2308, min(SOA TTL, SOA minimum).
    pub fn negative_soa(&self, zone: &Zone) -> Record {
        let mut soa = self
            .nodes
            .get(&zone.name)
            .and_then(|apex| {
                apex.records
                    .iter()
                    .find(|r| r.record_type() == RecordType::SOA)
            })
            .unwrap_or(&zone.soa)
            .clone();
        if let RData::SOA(data) = &soa.data {
            soa.ttl = soa.ttl.min(data.minimum);
        }
        soa
    }

    /// PTR records derived from this view's addresses for the reverse name of one address;
    /// empty when the name is not such a name or no record has that address.
    pub fn derived_ptr(&self, name: &LowerName) -> Vec<Record> {
        let Ok(net) = Name::from(name).parse_arpa_name() else {
            return Vec::new();
        };
        if net.prefix_len() != net.max_prefix_len() {
            return Vec::new();
        }
        self.reverse
            .get(&net.addr())
            .into_iter()
            .flatten()
            .map(|(target, ttl)| {
                Record::from_rdata(Name::from(name), *ttl, RData::PTR(PTR(target.clone())))
            })
            .collect()
    }

    /// Looks a name up, following CNAMEs inside the internal zones. PTR questions for an
    /// address of this view without an explicit PTR get the derived one.
    pub fn lookup(&self, zones: &[Zone], name: &LowerName, rtype: RecordType) -> Lookup {
        let Some(zone) = zone_of(zones, name) else {
            return Lookup::Outside;
        };
        if rtype == RecordType::PTR
            && self
                .nodes
                .get(name)
                .is_none_or(|n| n.of_type(RecordType::PTR).next().is_none())
        {
            let derived = self.derived_ptr(name);
            if !derived.is_empty() {
                return answer(zone.id, derived, ChainEnd::Data);
            }
        }
        let mut records = Vec::new();
        let mut current = name.clone();
        let mut current_zone = zone.id;
        for _ in 0..=MAX_CNAME_CHAIN {
            let Some((node, owner)) = self.find(zone_of(zones, &current), &current) else {
                return if records.is_empty() {
                    Lookup::NxDomain { zone: zone.id }
                } else {
                    answer(zone.id, records, ChainEnd::NxDomain(current_zone))
                };
            };
            let matching: Vec<Record> = node.of_type(rtype).map(|r| rename(r, &owner)).collect();
            // A CNAME question ends here too: a node with a CNAME has data of its type, and
            // one without has no CNAME to follow.
            if !matching.is_empty() {
                records.extend(matching);
                return answer(zone.id, records, ChainEnd::Data);
            }
            let Some(cname) = node.cname() else {
                return if records.is_empty() {
                    Lookup::NoData { zone: zone.id }
                } else {
                    answer(zone.id, records, ChainEnd::NoData(current_zone))
                };
            };
            records.push(rename(cname, &owner));
            let RData::CNAME(target) = &cname.data else {
                break;
            };
            let target = LowerName::new(&target.0);
            match zone_of(zones, &target) {
                Some(z) => current_zone = z.id,
                None => return answer(zone.id, records, ChainEnd::Outside(Name::from(&target))),
            }
            current = target;
        }
        // A chain longer than MAX_CNAME_CHAIN: answer what was found.
        answer(zone.id, records, ChainEnd::Data)
    }

    /// The node for a name: exact, or synthesized from a wildcard at the closest encloser
    /// (RFC 4592). Returns the node and the owner name to put on its records.
    fn find(&self, zone: Option<&Zone>, name: &LowerName) -> Option<(&Node, LowerName)> {
        if let Some(node) = self.nodes.get(name) {
            return Some((node, name.clone()));
        }
        let zone = zone?;
        let mut encloser = name.base_name();
        while encloser.num_labels() >= zone.name.num_labels() {
            if self.nodes.contains_key(&encloser) {
                let wildcard = Name::from(&encloser).prepend_label("*").ok()?;
                return self
                    .nodes
                    .get(&LowerName::new(&wildcard))
                    .map(|n| (n, name.clone()));
            }
            encloser = encloser.base_name();
        }
        None
    }
}

/// The internal zone a name falls in (the longest apex that is a suffix of it), unless a
/// subdomain delegated out of that zone holds the name.
pub fn zone_of<'z>(zones: &'z [Zone], name: &LowerName) -> Option<&'z Zone> {
    zones
        .iter()
        .filter(|z| z.name.zone_of(name))
        .max_by_key(|z| z.name.num_labels())
        .filter(|z| !z.delegated.iter().any(|d| d.zone_of(name)))
}

fn rename(record: &Record, owner: &LowerName) -> Record {
    if record.name.is_wildcard() {
        let mut r = record.clone();
        r.name = Name::from(owner);
        r
    } else {
        record.clone()
    }
}

fn answer(zone: ZoneId, records: Vec<Record>, end: ChainEnd) -> Lookup {
    Lookup::Answer { zone, records, end }
}

// The tables compile TOML through the `testing` module, which is above this one: in a file of
// their own they are a module on top of the graph, not part of this one.
#[cfg(test)]
mod tests;
