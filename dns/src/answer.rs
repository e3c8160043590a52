//! The decision for one query, as a pure function over the snapshot (A3): which records,
//! which response code, whether labgate is authoritative. The server and tests call it alike.

use std::net::IpAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, LowerName, Record, RecordType};
use labgate_config::Snapshot;
use labgate_config::network::NetworkKind;
use labgate_config::view::Lookup;

use crate::Error;

/// What to send back for one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The response code.
    pub rcode: ResponseCode,
    /// Whether the answer comes from an internal zone (AA).
    pub authoritative: bool,
    /// Answer section.
    pub answers: Vec<Record>,
    /// Authority section: the zone's SOA on negative answers, with the negative TTL.
    pub soa: Vec<Record>,
}

impl Answer {
    fn error(e: Error) -> Self {
        Self {
            rcode: e.rcode(),
            authoritative: false,
            answers: Vec::new(),
            soa: Vec::new(),
        }
    }
}

/// Answers a question from a client address.
///
/// Names outside the internal zones are REFUSED until the forwarder lands; clients in no
/// network are always REFUSED (labgate is never an open resolver).
pub fn answer(
    s: &Snapshot,
    client: IpAddr,
    name: &LowerName,
    qtype: RecordType,
    qclass: DNSClass,
) -> Answer {
    let Some(m) = s.networks.lookup(client) else {
        return Answer::error(Error::UnknownClient);
    };
    let network = s.networks.get(m.network);
    if network.kind != NetworkKind::Local || qclass != DNSClass::IN {
        return Answer::error(Error::RecursionRefused);
    }
    // ANY is answered minimally (RFC 8482) by treating it as the most common question.
    let rtype = if qtype == RecordType::ANY {
        RecordType::A
    } else {
        qtype
    };
    let negative = |zone: labgate_config::view::ZoneId, rcode| {
        let z = &s.zones[zone.index()];
        let mut soa = z.soa.clone();
        soa.ttl = z.negative_ttl;
        Answer {
            rcode,
            authoritative: true,
            answers: Vec::new(),
            soa: vec![soa],
        }
    };
    match s.view(network.id).lookup(&s.zones, name, rtype) {
        Lookup::Outside => Answer::error(Error::RecursionRefused),
        Lookup::NxDomain { zone } => negative(zone, ResponseCode::NXDomain),
        Lookup::NoData { zone } => negative(zone, ResponseCode::NoError),
        Lookup::Answer { records, .. } => Answer {
            rcode: ResponseCode::NoError,
            authoritative: true,
            answers: records,
            soa: Vec::new(),
        },
    }
}
