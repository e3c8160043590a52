//! The UDP fast path: answers for internal names, precompiled per snapshot as the general
//! path's own response bytes, served by patching the query's ID, RD bit, question bytes and
//! the client's EDNS size (cache hits, the other half of the fast path, are in `hits`).
//! Anything unusual goes to the general path, which is the reference: a differential test and
//! fuzz target check that both give the same bytes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use hickory_proto::serialize::binary::BinEncodable;
use labgate_config::Snapshot;
use labgate_config::view::{ChainEnd, Lookup};

use crate::log::Arrival;
use crate::resolver::{Inputs, MAX_UDP_PAYLOAD, Plan, Resolver};
use labgate_querylog::{Lane, Transport};

/// Key bytes: network index (2), query type (2), lower-case wire name (up to 255).
const KEY_MAX: usize = 4 + 255;

/// Precompiled answers of one snapshot.
#[derive(Debug)]
pub(crate) struct FastTable {
    entries: HashMap<Box<[u8]>, Entry>,
}

/// The response to one (network, type, name) question, as the general path encodes it for a
/// query with ID 0 and RD set: without EDNS, and with an OPT of the largest UDP size.
#[derive(Debug)]
struct Entry {
    plain: Option<Box<[u8]>>,
    edns: Option<Box<[u8]>>,
    rcode: ResponseCode,
}

/// A query the fast path can take, read without allocating.
pub(crate) struct Parsed {
    key: [u8; KEY_MAX],
    key_len: usize,
    /// The query type.
    pub(crate) qtype: u16,
    /// End of the question section.
    question_end: usize,
    /// The client's EDNS UDP size, if it sent a plain OPT.
    pub(crate) edns_size: Option<u16>,
}

impl Parsed {
    /// The lookup key: network index, query type, lower-case wire name.
    pub(crate) fn key(&self) -> &[u8] {
        &self.key[..self.key_len]
    }
}

impl FastTable {
    /// Precompiles the internal names of every view: A and AAAA and each type present at a
    /// name, as the general path answers them with `inputs`.
    pub(crate) fn build(inputs: &Arc<Inputs>) -> Self {
        // Counts nothing and knows no challenge value: the fast path never takes a challenge
        // name (`parse`).
        let general = Resolver::new(Arc::default(), Arc::default(), None);
        let snapshot: &Snapshot = &inputs.snapshot;
        let mut entries = HashMap::new();
        for view in &snapshot.views {
            let network = snapshot.networks.get(view.network);
            // A client address of this network, if one maps to it (a more specific network
            // could own every address of its first range).
            let Some(client) =
                network.cidrs.iter().map(|c| c.network()).find(|ip| {
                    snapshot.networks.lookup(*ip).map(|m| m.network) == Some(network.id)
                })
            else {
                continue;
            };
            let src = SocketAddr::new(client, 53);
            for (owner, node) in &view.nodes {
                let mut types = vec![RecordType::A, RecordType::AAAA];
                for r in &node.records {
                    if !types.contains(&r.record_type()) {
                        types.push(r.record_type());
                    }
                }
                let name = Name::from(owner.clone());
                for rtype in types {
                    // A chain that leaves the internal data is completed by the upstreams,
                    // per query: not a fixed answer.
                    if let Lookup::Answer {
                        end: ChainEnd::Outside(_),
                        ..
                    } = view.lookup(&snapshot.zones, owner, rtype)
                    {
                        continue;
                    }
                    let Some(entry) = precompile(&general, inputs, &name, rtype, src) else {
                        continue;
                    };
                    let mut key = Vec::with_capacity(4 + 64);
                    let index = u16::try_from(view.network.index()).unwrap_or(u16::MAX);
                    key.extend_from_slice(&index.to_be_bytes());
                    key.extend_from_slice(&u16::from(rtype).to_be_bytes());
                    key.extend_from_slice(&name.to_lowercase().to_bytes().unwrap_or_default());
                    entries.insert(key.into_boxed_slice(), entry);
                }
            }
        }
        Self { entries }
    }

    /// Writes the precompiled answer to the parsed `query` into `out`: its length and rcode,
    /// or `None` when the general path must answer.
    pub(crate) fn answer(
        &self,
        p: &Parsed,
        query: &[u8],
        out: &mut [u8],
    ) -> Option<(usize, ResponseCode)> {
        let entry = self.entries.get(p.key())?;
        let template = match p.edns_size {
            None => entry.plain.as_deref()?,
            Some(_) => entry.edns.as_deref()?,
        };
        Some((patch(template, p, query, out)?, entry.rcode))
    }
}

/// Copies a response `template` made for the canonical form of `query` into `out` with the
/// query's ID, RD bit, question bytes (0x20 case kept) and EDNS size; `None` when it would
/// not fit the client's UDP size (the general path sets TC) or `out`.
pub(crate) fn patch(template: &[u8], p: &Parsed, query: &[u8], out: &mut [u8]) -> Option<usize> {
    let limit = p
        .edns_size
        .map_or(512, |size| usize::from(size.clamp(512, MAX_UDP_PAYLOAD)));
    if template.len() > limit || template.len() > out.len() {
        return None;
    }
    let out = &mut out[..template.len()];
    out.copy_from_slice(template);
    out[..2].copy_from_slice(&query[..2]);
    out[2] = (out[2] & !0x01) | (query[2] & 0x01);
    out[12..p.question_end].copy_from_slice(&query[12..p.question_end]);
    if let Some(size) = p.edns_size {
        // The OPT is last, root-named, with no options: its CLASS is the UDP size.
        let at = out.len() - 8;
        out[at..at + 2].copy_from_slice(&size.clamp(512, MAX_UDP_PAYLOAD).to_be_bytes());
    }
    Some(out.len())
}

/// The general path's answers to the two canonical queries; `None` unless authoritative and
/// untruncated.
fn precompile(
    general: &Resolver,
    inputs: &Arc<Inputs>,
    name: &Name,
    rtype: RecordType,
    src: SocketAddr,
) -> Option<Entry> {
    let mut msg = Message::query();
    msg.metadata.id = 0;
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(name.to_lowercase(), rtype));
    let plain_query = msg.to_vec().ok()?;
    let mut edns = Edns::new();
    edns.set_max_payload(MAX_UDP_PAYLOAD);
    msg.set_edns(edns);
    let edns_query = msg.to_vec().ok()?;
    // An internal name is answered without waiting: a name the upstreams complete is no
    // fixed answer.
    let arrival = Arrival::now(Transport::Udp, Lane::Shared);
    let answer = |query: &[u8]| match general.plan(inputs, query, src, arrival) {
        Plan::Ready(out, _) => Some(out).filter(|o| !o.is_empty()),
        Plan::Upstream(_) => None,
    };
    let plain = answer(&plain_query);
    let edns = answer(&edns_query);
    let usable = |r: &Option<Vec<u8>>, with_opt: bool| -> Option<Box<[u8]>> {
        let r = r.as_ref()?;
        let (flags, rest) = (r.get(2..4)?, r.len());
        let authoritative = flags[0] & 0x04 != 0;
        let truncated = flags[0] & 0x02 != 0;
        let opt_last = rest >= 12 + 11 && r[rest - 11] == 0 && r[rest - 10..rest - 8] == [0, 41];
        (authoritative && !truncated && (!with_opt || opt_last))
            .then(|| r.clone().into_boxed_slice())
    };
    let rcode = ResponseCode::from(0, plain.as_ref()?.get(3)? & 0x0F);
    let entry = Entry {
        plain: usable(&plain, false),
        edns: usable(&edns, true),
        rcode,
    };
    (entry.plain.is_some() || entry.edns.is_some()).then_some(entry)
}

/// Reads a query from a client of network `index` that the fast path may answer: a standard
/// query (QR 0, opcode 0, no AA/TC, no CD, no Z, rcode 0; RD and AD free), one uncompressed
/// IN question, nothing else but a plain OPT (version 0, no DO, no options). Anything else is
/// `None`.
pub(crate) fn parse(q: &[u8], index: u16) -> Option<Parsed> {
    let header = q.get(..12)?;
    if header[2] & 0xFE != 0 || header[3] & !0x20 != 0 {
        return None;
    }
    let count = |i: usize| u16::from_be_bytes([header[i], header[i + 1]]);
    let additional = count(10);
    if count(4) != 1 || count(6) != 0 || count(8) != 0 || additional > 1 {
        return None;
    }
    let mut p = Parsed {
        key: [0; KEY_MAX],
        key_len: 4,
        qtype: 0,
        question_end: 0,
        edns_size: None,
    };
    p.key[..2].copy_from_slice(&index.to_be_bytes());
    let mut i = 12;
    loop {
        let len = usize::from(*q.get(i)?);
        if len & 0xC0 != 0 {
            return None;
        }
        let label = q.get(i..=i + len)?;
        let end = p.key_len + label.len();
        if end > KEY_MAX {
            return None;
        }
        for (k, b) in p.key[p.key_len..end].iter_mut().zip(label) {
            *k = b.to_ascii_lowercase();
        }
        p.key_len = end;
        if i == 12 && p.key[5..end] == *crate::challenges::LABEL {
            // ACME challenge names: the built-in provider's values are the general path's.
            return None;
        }
        i += 1 + len;
        if len == 0 {
            break;
        }
    }
    let tail = q.get(i..i + 4)?;
    if tail[2..4] != [0, 1] {
        return None;
    }
    p.qtype = u16::from_be_bytes([tail[0], tail[1]]);
    p.key[2..4].copy_from_slice(&tail[..2]);
    i += 4;
    p.question_end = i;
    match additional {
        0 if q.len() == i => {}
        1 => {
            let opt = q.get(i..)?;
            // Root name, TYPE 41, CLASS = size, TTL 0 (rcode, version, DO, Z), RDLEN 0.
            if opt.len() != 11 || opt[..3] != [0, 0, 41] || opt[5..] != [0; 6] {
                return None;
            }
            p.edns_size = Some(u16::from_be_bytes([opt[3], opt[4]]));
        }
        _ => return None,
    }
    Some(p)
}
