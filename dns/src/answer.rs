//! The decision for one query, as a pure function over the snapshot (A3): answer from the
//! internal data, refuse, or forward. The server and tests call it alike.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::OnceLock;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, SOA};
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};
use labgate_config::Snapshot;
use labgate_config::blocklist::BlockSet;
use labgate_config::network::NetworkKind;
use labgate_config::settings::{BlockAction, BlocklistSource};
use labgate_config::view::{ChainEnd, Lookup};

use crate::Error;

/// What to send back for one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The response code.
    pub rcode: ResponseCode,
    /// Whether the answer comes from an internal zone (AA).
    pub authoritative: bool,
    /// Whether the client may recurse through labgate (RA).
    pub recursion_available: bool,
    /// Answer section.
    pub answers: Vec<Record>,
    /// Authority section: the zone's SOA on negative answers, with the negative TTL.
    pub soa: Vec<Record>,
    /// The blocklist that decided it: its index in the snapshot's blocklists.
    pub blocked: Option<usize>,
}

impl Answer {
    fn error(e: Error) -> Self {
        Self {
            rcode: e.rcode(),
            authoritative: false,
            recursion_available: false,
            answers: Vec::new(),
            soa: Vec::new(),
            blocked: None,
        }
    }

    /// SERVFAIL: the upstreams failed or none is configured.
    pub fn servfail() -> Self {
        Self {
            recursion_available: true,
            ..Self::error(Error::UpstreamFailed)
        }
    }

    /// An answer relayed from upstreams.
    pub fn recursive(rcode: ResponseCode, answers: Vec<Record>, soa: Vec<Record>) -> Self {
        Self {
            rcode,
            authoritative: false,
            recursion_available: true,
            answers,
            soa,
            blocked: None,
        }
    }
}

/// Blocklists fetched from URLs, by URL; filled by the control plane's fetcher.
pub type FetchedLists = HashMap<String, Arc<BlockSet>>;

/// What the server does with a question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Send this answer.
    Answer(Answer),
    /// Resolve through the upstreams (the client's network may recurse).
    Forward,
    /// An internal CNAME chain that leaves the internal zones: resolve its last target
    /// through the upstreams and append what they answer (stub resolvers do not follow a
    /// CNAME themselves).
    Chase {
        /// The internal part, CNAMEs first.
        chain: Answer,
        /// The name the chain ends at.
        target: LowerName,
        /// The type asked.
        rtype: RecordType,
    },
}

/// Decides a question from a client address.
///
/// Clients in no network are always REFUSED (labgate is never an open resolver); so are
/// non-IN classes (`version.bind` reveals nothing) and names outside the internal zones for
/// networks that may not recurse. Private-range reverse names (RFC 6303) are answered here,
/// from the view's addresses, and otherwise forwarded only to a `[[forward]]` for that private
/// zone (or part of it).
pub fn decide(
    s: &Snapshot,
    lists: &FetchedLists,
    client: IpAddr,
    name: &LowerName,
    qtype: RecordType,
    qclass: DNSClass,
) -> Decision {
    let Some(m) = s.networks.lookup(client) else {
        return Decision::Answer(Answer::error(Error::UnknownClient));
    };
    let network = s.networks.get(m.network);
    if network.kind != NetworkKind::Local || qclass != DNSClass::IN {
        return Decision::Answer(Answer::error(Error::RecursionRefused));
    }
    let ra = network.recursion;
    // ANY is answered minimally (RFC 8482) by treating it as the most common question.
    let rtype = if qtype == RecordType::ANY {
        RecordType::A
    } else {
        qtype
    };
    let negative = |soa: Record, rcode| Answer {
        rcode,
        authoritative: true,
        recursion_available: ra,
        answers: Vec::new(),
        soa: vec![soa],
        blocked: None,
    };
    let zone_soa = |zone: labgate_config::view::ZoneId| {
        s.view(network.id).negative_soa(&s.zones[zone.index()])
    };
    Decision::Answer(match s.view(network.id).lookup(&s.zones, name, rtype) {
        Lookup::Outside => match private_reverse_zone(name) {
            Some(apex) => {
                let derived = if rtype == RecordType::PTR {
                    s.view(network.id).derived_ptr(name)
                } else {
                    Vec::new()
                };
                if derived.is_empty() {
                    // A conditional forwarder the user named for this private zone or part
                    // of it (the router that knows its DHCP leases' names) comes before the
                    // local empty zone. SECURITY: one for `arpa.` or the root does not: that
                    // would send private reverse names to the internet.
                    let full = Name::from(name);
                    if ra
                        && s.dns
                            .forwarders
                            .iter()
                            .any(|f| apex.zone_of(&f.domain) && f.domain.zone_of(&full))
                    {
                        return Decision::Forward;
                    }
                    negative(empty_zone_soa(apex), ResponseCode::NXDomain)
                } else {
                    Answer {
                        rcode: ResponseCode::NoError,
                        authoritative: true,
                        recursion_available: ra,
                        answers: derived,
                        soa: Vec::new(),
                        blocked: None,
                    }
                }
            }
            None if !ra => Answer::error(Error::RecursionRefused),
            None => {
                let text = name.to_string();
                let text = text.trim_end_matches('.');
                let list = network.blocklists.iter().copied().find(|&i| {
                    let l = &s.dns.blocklists[i];
                    let names = match &l.source {
                        BlocklistSource::File(_) => Some(&l.names),
                        BlocklistSource::Url(url) => lists.get(url.as_str()),
                    };
                    names.is_some_and(|n| l.blocks(n, text))
                });
                match list {
                    Some(i) => blocked(i, s.dns.blocklists[i].action, name, qtype),
                    None => return Decision::Forward,
                }
            }
        },
        Lookup::NxDomain { zone } => negative(zone_soa(zone), ResponseCode::NXDomain),
        Lookup::NoData { zone } => negative(zone_soa(zone), ResponseCode::NoError),
        Lookup::Answer { records, end, .. } => {
            if let (ChainEnd::Outside(target), true) = (&end, ra) {
                return Decision::Chase {
                    chain: Answer {
                        rcode: ResponseCode::NoError,
                        authoritative: true,
                        recursion_available: ra,
                        answers: records,
                        soa: Vec::new(),
                        blocked: None,
                    },
                    target: LowerName::new(target),
                    rtype,
                };
            }
            let (rcode, soa) = match end {
                ChainEnd::NxDomain(z) => (ResponseCode::NXDomain, vec![zone_soa(z)]),
                ChainEnd::NoData(z) => (ResponseCode::NoError, vec![zone_soa(z)]),
                ChainEnd::Data | ChainEnd::Outside(_) => (ResponseCode::NoError, Vec::new()),
            };
            Answer {
                rcode,
                authoritative: true,
                recursion_available: ra,
                answers: records,
                soa,
                blocked: None,
            }
        }
    })
}

/// TTL of answers made for blocked names.
pub const BLOCKED_TTL: u32 = 60;

/// The answer for a name blocked by list `list`: NXDOMAIN, or the null address for A/AAAA
/// and NODATA for other types (never an A record for an MX question).
fn blocked(list: usize, action: BlockAction, name: &LowerName, qtype: RecordType) -> Answer {
    let null = |data| vec![Record::from_rdata(Name::from(name), BLOCKED_TTL, data)];
    let (rcode, answers) = match (action, qtype) {
        (BlockAction::NxDomain, _) => (ResponseCode::NXDomain, Vec::new()),
        (BlockAction::NullAddress, RecordType::A) => {
            (ResponseCode::NoError, null(RData::A(A::new(0, 0, 0, 0))))
        }
        (BlockAction::NullAddress, RecordType::AAAA) => (
            ResponseCode::NoError,
            null(RData::AAAA(AAAA::from(std::net::Ipv6Addr::UNSPECIFIED))),
        ),
        (BlockAction::NullAddress, _) => (ResponseCode::NoError, Vec::new()),
    };
    Answer {
        blocked: Some(list),
        ..Answer::recursive(rcode, answers, Vec::new())
    }
}

/// RFC 6303 zones: reverse names of private, loopback and link-local ranges, which must
/// never leak to the internet's servers. Returns the zone apex.
fn private_reverse_zone(name: &LowerName) -> Option<Name> {
    let zones = PRIVATE_REVERSE.get_or_init(|| {
        let fixed = [
            "10.in-addr.arpa.",
            "168.192.in-addr.arpa.",
            "127.in-addr.arpa.",
            "254.169.in-addr.arpa.",
            "0.in-addr.arpa.",
            "c.f.ip6.arpa.",
            "d.f.ip6.arpa.",
            "8.e.f.ip6.arpa.",
            "9.e.f.ip6.arpa.",
            "a.e.f.ip6.arpa.",
            "b.e.f.ip6.arpa.",
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa.",
        ]
        .map(str::to_owned);
        let rfc1918 = (16..32).map(|o| format!("{o}.172.in-addr.arpa."));
        let arpa = Name::from_ascii("arpa.").ok().map(|n| LowerName::new(&n));
        let zones = fixed
            .into_iter()
            .chain(rfc1918)
            .filter_map(|z| Name::from_ascii(z).ok().map(|n| LowerName::new(&n)))
            .collect();
        (arpa, zones)
    });
    let (Some(arpa), list) = zones else {
        return None;
    };
    // Most forwarded names are not reverse names: one suffix check decides.
    if !arpa.zone_of(name) {
        return None;
    }
    list.iter().find(|z| z.zone_of(name)).map(Name::from)
}

/// The RFC 6303 apexes, parsed once, under `arpa.`.
static PRIVATE_REVERSE: OnceLock<(Option<LowerName>, Vec<LowerName>)> = OnceLock::new();

/// The SOA of an empty RFC 6303 zone.
fn empty_zone_soa(apex: Name) -> Record {
    let local = Name::from_ascii("localhost.").unwrap_or_else(|_| Name::root());
    let soa = SOA::new(apex.clone(), local, 1, 604_800, 86_400, 2_419_200, 60);
    Record::from_rdata(apex, 60, RData::SOA(soa))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lower(s: &str) -> LowerName {
        LowerName::new(&Name::from_ascii(s).expect("name"))
    }

    #[test]
    fn private_reverse_names_stay_local() {
        assert!(private_reverse_zone(&lower("5.1.0.10.in-addr.arpa.")).is_some());
        assert!(private_reverse_zone(&lower("1.0.20.172.in-addr.arpa.")).is_some());
        assert!(private_reverse_zone(&lower("1.0.32.172.in-addr.arpa.")).is_none());
        assert!(private_reverse_zone(&lower("1.1.1.1.in-addr.arpa.")).is_none());
        assert!(
            private_reverse_zone(&lower(
                "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa."
            ))
            .is_some()
        );
    }
}
