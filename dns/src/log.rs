//! The query log's capture: one fixed-size [`Record`] per answered query, filled from bytes
//! the answering thread already has and left in its own queue of the sink (see
//! `labgate_querylog`); and the dnstap stream's, one message per query and per response as
//! they crossed the wire, encoded into a buffer of the thread's own lane (see
//! `labgate_dnstap`). Nothing here waits; a network whose log is off costs a lookup.

use std::net::{IpAddr, SocketAddr};

use labgate_config::Snapshot;
use labgate_config::network::{LogLevel, NetworkId};
use labgate_dnstap::{Kind, Message, Tap};
use labgate_querylog::{Lane, Record, Sink, Source, Transport};
use tokio::time::Instant;

use crate::update::is_update;

/// The question of labgate's own probe of its DNS listener (`labgate-probe.invalid. CH TXT`,
/// refused at once by the general path, never sent upstream): counted like any query, never
/// logged nor streamed, so a self-check every few seconds leaves no trace in the log.
pub const PROBE_QUESTION: &[u8] = b"\x0dlabgate-probe\x07invalid\x00\x00\x10\x00\x03";

/// Whether a message's bytes from its question on (offset 12) are labgate's own probe.
fn is_probe(question: &[u8]) -> bool {
    question.starts_with(PROBE_QUESTION)
}

/// Whether dnstap carries a message: not labgate's own probe, and not an UPDATE of a pair's
/// peer, which is no client query (`labgate_dns_updates_total` and the log say what it did;
/// dnstap's UPDATE_QUERY type is not one labgate writes). Without `[pair]`, an UPDATE is a
/// query answered NOTIMP, streamed as any other.
fn streamed(snapshot: &Snapshot, dns: &[u8]) -> bool {
    !(dns.get(12..).is_some_and(is_probe) || (snapshot.pair.is_some() && is_update(dns)))
}

/// How and when one query arrived.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Arrival {
    /// How it came.
    pub(crate) transport: Transport,
    /// The queue its record goes to.
    pub(crate) lane: Lane,
    /// When it was received, for its latency.
    pub(crate) at: Instant,
    /// When it was received: microseconds since the Unix epoch.
    pub(crate) wall_us: i64,
}

impl Arrival {
    /// A query received now.
    pub(crate) fn now(transport: Transport, lane: Lane) -> Self {
        Self {
            transport,
            lane,
            at: Instant::now(),
            wall_us: labgate_querylog::unix_us(std::time::SystemTime::now()),
        }
    }

    /// Whether it came over UDP (a response then respects the client's size).
    pub(crate) fn udp(&self) -> bool {
        self.transport == Transport::Udp
    }
}

/// What the log keeps of one answer besides its bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Answered<'a> {
    /// The question section (or the query from its name on).
    pub(crate) question: &'a [u8],
    /// Query type and class.
    pub(crate) qtype: u16,
    /// Query class.
    pub(crate) qclass: u16,
    /// The response code, extended codes included.
    pub(crate) rcode: u16,
    /// Where the answer came from.
    pub(crate) source: Source,
    /// DO, RD and STALE (TC is read from the response).
    pub(crate) flags: u8,
}

/// Leaves the record of `response` to a query from `client` in `network` (as the caller
/// looked it up in `snapshot`, which decided the query), in `sink`, unless the client's
/// network or address is not logged.
pub(crate) fn capture(
    sink: &Sink,
    snapshot: &Snapshot,
    arrival: &Arrival,
    (client, network): (IpAddr, Option<NetworkId>),
    answered: &Answered<'_>,
    response: &[u8],
) {
    let level = network.map(|n| snapshot.networks.get(n).query_log);
    let level = snapshot.query_log.level(level, client);
    if level == LogLevel::Off || is_probe(answered.question) {
        return;
    }
    let mut r = Record::new(answered.question, arrival.transport, arrival.wall_us);
    r.latency_us = u32::try_from(arrival.at.elapsed().as_micros()).unwrap_or(u32::MAX);
    r.generation = snapshot.generation as u32;
    r.client = (level == LogLevel::Full).then_some(client);
    r.network = network.and_then(|n| u16::try_from(n.index()).ok());
    r.qtype = answered.qtype;
    r.qclass = answered.qclass;
    r.rcode = answered.rcode;
    r.source = answered.source;
    let truncated = if response.get(2).is_some_and(|b| b & 0x02 != 0) {
        labgate_querylog::Flags::TC
    } else {
        0
    };
    r.flags = labgate_querylog::Flags(answered.flags | truncated);
    r.summarize(response);
    sink.push(arrival.lane, r);
}

/// Leaves a dnstap message of `dns` (the query as `client` sent it to labgate's `server`, or
/// the response) in `tap`, when `snapshot` has a `[dnstap]` and the client's network and
/// address may be recorded (`anonymous`: without the client's address).
pub(crate) fn tap(
    tap: &Tap,
    snapshot: &Snapshot,
    arrival: &Arrival,
    (kind, client, server): (Kind, SocketAddr, Option<SocketAddr>),
    dns: &[u8],
) {
    let Some(settings) = &snapshot.dnstap else {
        return;
    };
    if !streamed(snapshot, dns) {
        return;
    }
    let network = snapshot.networks.lookup(client.ip()).map(|m| m.network);
    let level = network.map(|n| snapshot.networks.get(n).query_log);
    let level = snapshot.query_log.privacy(level, client.ip());
    if level == LogLevel::Off {
        return;
    }
    let response_us = (kind == Kind::ClientResponse)
        .then(|| labgate_querylog::unix_us(std::time::SystemTime::now()));
    let m = Message {
        kind,
        transport: arrival.transport,
        client: (level == LogLevel::Full).then_some(client),
        server,
        query_us: arrival.wall_us,
        response_us,
        dns,
    };
    tap.push(arrival.lane, settings, &m);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_probe_question_is_the_probe() {
        assert!(is_probe(PROBE_QUESTION));
        // With an OPT record after it, as a response echoes it.
        assert!(is_probe(&[PROBE_QUESTION, b"\x00\x00\x29"].concat()));
        for other in [
            &b"\x0dlabgate-probe\x07invalid\x00\x00\x10\x00\x01"[..],
            b"\x0dlabgate-probe\x07invalid\x00\x00\x01\x00\x03",
            b"\x0dlabgate-probe\x07invalie\x00\x00\x10\x00\x03",
            b"\x03app\x04demo\x04test\x00\x00\x01\x00\x01",
            b"",
        ] {
            assert!(!is_probe(other), "{other:?}");
        }
    }

    #[test]
    fn a_pair_peers_updates_are_not_streamed_as_queries() {
        let plain = labgate_config::testing::snapshot("");
        let key = b"c2FtcGxlLXBhaXItc2VjcmV0LW9mLTMyLWJ5dGVzISE=";
        let pair = "[pair]\nnodes = [\"10.0.0.1\", \"10.0.0.2\"]\nkey_file = \"k.pem\"\ntsig_file = \"k.tsig\"\n";
        let files: &[(&str, &[u8])] = &[("k.pem", b"pem"), ("k.tsig", key)];
        let paired = labgate_config::compile(&labgate_config::testing::loaded(pair, files), 1)
            .unwrap_or_else(|d| panic!("{d}"));
        // Header: ID, QR 0 and opcode, counts; an UPDATE (opcode 5) and its response.
        let update = [0, 1, 5 << 3, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        let response = [0, 1, 0x80 | 5 << 3, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        let query = [0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        assert!(!streamed(&paired, &update));
        assert!(!streamed(&paired, &response));
        assert!(streamed(&paired, &query));
        assert!(
            streamed(&plain, &update),
            "without [pair], a query answered NOTIMP"
        );
        let probe = [&query[..], PROBE_QUESTION].concat();
        assert!(!streamed(&plain, &probe));
    }
}
