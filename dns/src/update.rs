//! RFC 2136 UPDATEs from a pair's peer (`[pair]`): the ACME challenge values the node that
//! orders publishes with its `builtin` provider, sent to the other node so that the CA's
//! query finds them whichever node it reaches. Accepted only from the pair's two addresses,
//! signed with the pair's TSIG key (RFC 8945), for `_acme-challenge` TXT records inside an
//! internal zone, with no prerequisites.
//!
//! ```text
//! UPDATE ─▶ source a node? ─▶ TSIG key, MAC, time ─▶ zone, prerequisites, every RR ─▶ changes
//!            └ REFUSED           └ NOTAUTH (BADKEY,     └ NOTAUTH, REFUSED, NOTZONE
//!                                   BADSIG, BADTIME)
//! ```
//!
//! [`decide`] is pure (the request, the settings, the zones, the time); the general path
//! (`resolver`) applies its changes to `Challenges` all or none, counts, logs, and answers
//! with the response signed as [`sign`] says.

use std::net::IpAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::rdata::tsig::TsigError;
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};
use hickory_proto::rr::{TSigResponseContext, TSigner};
use hickory_server::server::Request;
use labgate_config::pair::{PairSettings, TsigKey};
use labgate_config::view::Zone;

use crate::challenges::{Change, LABEL};

/// How far the signature's time may be from ours, either way (RFC 8945 §10: 300 s).
pub(crate) const FUDGE: u16 = 300;
/// The longest value accepted: a DNS-01 value is 43 characters; one TXT string holds 255.
pub(crate) const MAX_VALUE: usize = 255;

/// What [`decide`] made of an UPDATE: the changes to apply, or why none is, and how the
/// response is signed.
pub(crate) struct Verdict {
    /// How the response is signed.
    pub(crate) seal: Seal,
    /// The changes, checked whole, or the refusal.
    pub(crate) outcome: Result<Vec<Change>, Refusal>,
}

/// How the response to an UPDATE is signed (RFC 8945 §5.3).
pub(crate) enum Seal {
    /// Not at all: the request was not from a node, or not signed.
    None,
    /// An unsigned TSIG record naming the request's unknown key (BADKEY).
    UnknownKey(Name),
    /// An unsigned TSIG record of our key (BADSIG).
    BadSignature(TSigner),
    /// Signed with our key over the request's MAC.
    Signed(TSigner, Vec<u8>),
}

/// Why an UPDATE changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Its source is neither node's address.
    Stranger,
    /// It carries no TSIG record.
    Unsigned,
    /// Its TSIG names another key or algorithm.
    BadKey,
    /// Its MAC does not verify.
    BadSig,
    /// Its signature's time is more than [`FUDGE`] from ours.
    BadTime,
    /// Its zone section is not one internal zone (class IN, type SOA).
    NotOurZone,
    /// It has prerequisites, which labgate does not evaluate.
    Prerequisites,
    /// An update RR is outside the zone.
    OutsideZone,
    /// An update RR is not a challenge value: another type, name, class or value.
    NotChallenge,
    /// Applying it would hold more values than the limits allow (see `Challenges::apply`).
    Full,
}

impl Refusal {
    /// The response code (RFC 2136 §3, RFC 8945 §5.2).
    pub(crate) fn rcode(self) -> ResponseCode {
        match self {
            Self::Stranger | Self::Prerequisites | Self::NotChallenge | Self::Full => {
                ResponseCode::Refused
            }
            Self::Unsigned | Self::BadKey | Self::BadSig | Self::BadTime | Self::NotOurZone => {
                ResponseCode::NotAuth
            }
            Self::OutsideZone => ResponseCode::NotZone,
        }
    }

    /// The TSIG error of the response, if any.
    pub(crate) fn tsig_error(self) -> Option<TsigError> {
        match self {
            Self::BadKey => Some(TsigError::BadKey),
            Self::BadSig => Some(TsigError::BadSig),
            Self::BadTime => Some(TsigError::BadTime),
            _ => None,
        }
    }

    /// What the log says.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Self::Stranger => "the source is not one of [pair] nodes",
            Self::Unsigned => "not signed",
            Self::BadKey => "signed with another key",
            Self::BadSig => "its signature does not verify",
            Self::BadTime => "its signature's time is more than 300 s from ours",
            Self::NotOurZone => "its zone is not an internal zone",
            Self::Prerequisites => "it has prerequisites",
            Self::OutsideZone => "a record is outside its zone",
            Self::NotChallenge => "a record is not an _acme-challenge TXT value",
            Self::Full => "it would hold more challenge values than the limits",
        }
    }
}

/// Decides an UPDATE (RFC 2136) received at `now` (seconds since the Unix epoch) against the
/// pair's settings and the internal zones: every check passes before any change is returned.
pub(crate) fn decide(request: &Request, pair: &PairSettings, zones: &[Zone], now: u64) -> Verdict {
    let refuse = |seal, refusal| Verdict {
        seal,
        outcome: Err(refusal),
    };
    // SECURITY: the key alone is not enough: a copy of it elsewhere on the network still
    // cannot publish. (A spoofed UDP source gets past this; the MAC does not.)
    let src = canonical(request.src().ip());
    if !pair.nodes.iter().any(|n| canonical(*n) == src) {
        return refuse(Seal::None, Refusal::Stranger);
    }
    let Some(tsig) = request.signature.as_deref() else {
        // No key to name in a TSIG record: NOTAUTH alone.
        return refuse(Seal::None, Refusal::Unsigned);
    };
    let Some(signer) = signer(&pair.tsig) else {
        return refuse(Seal::UnknownKey(tsig.name.clone()), Refusal::BadKey);
    };
    if tsig.name != *signer.signer_name() || tsig.data.algorithm != *signer.algorithm() {
        return refuse(Seal::UnknownKey(tsig.name.clone()), Refusal::BadKey);
    }
    if tsig.data.time < u64::from(tsig.data.fudge) {
        // hickory subtracts the fudge from the time unchecked; a signature made before 1970
        // plus its fudge is nobody's clock.
        return refuse(Seal::BadSignature(signer), Refusal::BadSig);
    }
    let Ok((mac, time, _)) = signer.verify_message_byte(request.as_slice(), None, true) else {
        return refuse(Seal::BadSignature(signer), Refusal::BadSig);
    };
    let seal = Seal::Signed(signer, mac);
    // SECURITY: our fudge, not the request's: a replay is good for 5 minutes at most.
    if now.abs_diff(time) > u64::from(FUDGE) {
        return refuse(seal, Refusal::BadTime);
    }
    Verdict {
        outcome: changes(request, zones),
        seal,
    }
}

/// The TSIG record that signs (or, for a refused signature, accompanies) the response whose
/// bytes are then given to `TSigResponseContext::sign`; `None` for an unsigned response.
pub(crate) fn sign(
    seal: Seal,
    refusal: Option<Refusal>,
    id: u16,
    now: u64,
) -> Option<TSigResponseContext> {
    Some(match seal {
        Seal::None => return None,
        Seal::UnknownKey(name) => TSigResponseContext::unknown_key(id, now, name),
        Seal::BadSignature(signer) => TSigResponseContext::bad_signature(id, now, signer),
        Seal::Signed(signer, mac) => {
            TSigResponseContext::new(id, now, signer, mac, refusal.and_then(Refusal::tsig_error))
        }
    })
}

/// Whether a message's header says UPDATE (opcode 5), read from its bytes.
pub(crate) fn is_update(message: &[u8]) -> bool {
    message.get(2).is_some_and(|b| (b >> 3) & 0x0F == 5)
}

/// The address as the nodes are written: an IPv4 client of an IPv6 socket is its IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// Our key as hickory signs with it; `None` if hickory cannot (it can: both algorithms are
/// ring's).
fn signer(key: &TsigKey) -> Option<TSigner> {
    TSigner::new(
        key.secret.clone(),
        key.algorithm.hickory(),
        key.name.clone(),
        FUDGE,
    )
    .ok()
}

/// The changes of a signed UPDATE, every record checked before any is returned.
fn changes(request: &Request, zones: &[Zone]) -> Result<Vec<Change>, Refusal> {
    // RFC 2136 §3.1.1: one zone, SOA, of ours (`plan` answers FORMERR for other counts).
    let [zone] = request.queries.queries() else {
        return Err(Refusal::NotOurZone);
    };
    if zone.query_class() != DNSClass::IN || zone.query_type() != RecordType::SOA {
        return Err(Refusal::NotOurZone);
    }
    let Some(zone) = zones.iter().find(|z| z.name == *zone.name()) else {
        return Err(Refusal::NotOurZone);
    };
    // RFC 2136 §3.2: labgate keeps no copy of the zone a prerequisite could be checked
    // against, and the peer needs none.
    if !request.answers.is_empty() {
        return Err(Refusal::Prerequisites);
    }
    request
        .authorities
        .iter()
        .map(|rr| change(rr, zone))
        .collect()
}

/// One update RR (RFC 2136 §2.5) as a change of challenge values.
fn change(rr: &Record, zone: &Zone) -> Result<Change, Refusal> {
    let name = LowerName::new(&rr.name);
    // RFC 2136 §3.4.1.3.
    if !zone.name.zone_of(&name) || zone.delegated.iter().any(|d| d.zone_of(&name)) {
        return Err(Refusal::OutsideZone);
    }
    // SECURITY: the peer publishes challenge values and nothing else: no address, no other
    // name, nothing a client of a view could be sent to.
    if !rr
        .name
        .iter()
        .next()
        .is_some_and(|label| label.eq_ignore_ascii_case(LABEL))
    {
        return Err(Refusal::NotChallenge);
    }
    match (rr.dns_class, &rr.data) {
        (DNSClass::IN, RData::TXT(txt)) => Ok(Change::Add(name, value(txt)?.into())),
        (DNSClass::NONE, RData::TXT(txt)) => Ok(Change::Remove(name, value(txt)?.into())),
        (DNSClass::ANY, RData::Update0(RecordType::TXT)) => Ok(Change::Clear(name)),
        _ => Err(Refusal::NotChallenge),
    }
}

/// A TXT record's value: its strings joined, UTF-8, 1 to [`MAX_VALUE`] bytes.
fn value(txt: &TXT) -> Result<String, Refusal> {
    let bytes = txt.txt_data.concat();
    if bytes.is_empty() || bytes.len() > MAX_VALUE {
        return Err(Refusal::NotChallenge);
    }
    String::from_utf8(bytes).map_err(|_| Refusal::NotChallenge)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use hickory_proto::op::{Message, OpCode, Query};
    use hickory_server::net::xfer::Protocol;

    use super::*;
    use hickory_proto::rr::rdata::tsig::TsigAlgorithm as Algorithm;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const NOW: u64 = 1_800_000_000;

    fn snapshot() -> labgate_config::Snapshot {
        let key = b"key \"labgate-pair\" {\n\talgorithm hmac-sha256;\n\tsecret \"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\";\n};\n";
        let toml = r#"
[[network]]
name = "lab"
cidrs = ["10.0.0.0/24"]
addresses = ["10.0.0.2"]
[[zone]]
name = "lab.test"
[[zone]]
name = "other.test"
[[forward]]
domain = "far.lab.test"
upstreams = ["udp://10.9.9.9"]
[pair]
nodes = ["10.0.0.11", "fd00::12"]
key_file = "pair.pem"
tsig_file = "pair.tsig"
"#;
        labgate_config::compile(
            &labgate_config::testing::loaded(toml, &[("pair.pem", b"pem"), ("pair.tsig", key)]),
            1,
        )
        .unwrap_or_else(|d| panic!("{d}"))
    }

    fn name(n: &str) -> Name {
        Name::from_ascii(n).expect("name")
    }

    fn txt(n: &str, class: DNSClass, strings: &[&str]) -> Record {
        let mut r = Record::from_rdata(
            name(n),
            0,
            RData::TXT(TXT::new(strings.iter().map(|s| s.to_string()).collect())),
        );
        r.dns_class = class;
        r
    }

    fn clear(n: &str, rtype: RecordType) -> Record {
        let mut r = Record::update0(name(n), 0, rtype);
        r.dns_class = DNSClass::ANY;
        r
    }

    /// An UPDATE of `zone` with `updates` (and `prereqs`), id 7.
    fn update(
        zone: &str,
        ztype: RecordType,
        prereqs: Vec<Record>,
        updates: Vec<Record>,
    ) -> Message {
        let mut m = Message::new(7, hickory_proto::op::MessageType::Query, OpCode::Update);
        m.add_query(Query::query(name(zone), ztype));
        m.answers = prereqs;
        m.authorities = updates;
        m
    }

    /// The message signed with `key` (name, secret) at `time`, as bytes received from `src`.
    fn signed(m: &Message, key: Key, time: u64, src: &str) -> Request {
        let mut m = m.clone();
        if let Some((key, secret, algorithm)) = key {
            let signer =
                TSigner::new(secret.to_vec(), algorithm, name(key), FUDGE).expect("signer");
            let (tsig, _) = signer.sign_message(&m, time).expect("sign");
            m.signature = Some(tsig);
        }
        let bytes = m.to_vec().expect("encode");
        let src: SocketAddr = src.parse().expect("src");
        Request::from_bytes(bytes, src, Protocol::Udp).expect("parses")
    }

    /// A key to sign with (name, secret, algorithm), or none.
    type Key = Option<(&'static str, &'static [u8], Algorithm)>;
    /// What `decide` returns of the changes.
    type Outcome = Result<Vec<Change>, Refusal>;

    /// A zone, its type, prerequisites, updates and the outcome.
    type Case = (&'static str, RecordType, Vec<Record>, Vec<Record>, Outcome);

    const KEY: Key = Some(("labgate-pair", SECRET, Algorithm::HmacSha256));
    const NODE: &str = "10.0.0.11:5353";

    fn verdict(req: &Request) -> (Result<Vec<Change>, Refusal>, &'static str) {
        let s = snapshot();
        let v = decide(req, s.pair.as_ref().expect("pair"), &s.zones, NOW);
        let seal = match v.seal {
            Seal::None => "none",
            Seal::UnknownKey(_) => "unknown key",
            Seal::BadSignature(_) => "bad signature",
            Seal::Signed(..) => "signed",
        };
        (v.outcome, seal)
    }

    fn lower(n: &str) -> LowerName {
        LowerName::new(&name(n))
    }

    #[test]
    fn only_a_node_signing_with_the_pairs_key_within_the_fudge_may_update() {
        let m = update(
            "lab.test.",
            RecordType::SOA,
            vec![],
            vec![txt("_acme-challenge.lab.test.", DNSClass::IN, &["v"])],
        );
        let ok = Ok(vec![Change::Add(
            lower("_acme-challenge.lab.test."),
            "v".into(),
        )]);
        // (key, signature time, source, outcome, seal)
        let table: &[(Key, u64, &str, Outcome, &str)] = &[
            (KEY, NOW, NODE, ok.clone(), "signed"),
            (KEY, NOW, "[fd00::12]:5353", ok.clone(), "signed"),
            (KEY, NOW, "[::ffff:10.0.0.11]:5353", ok.clone(), "signed"),
            (KEY, NOW - 300, NODE, ok.clone(), "signed"),
            (KEY, NOW + 300, NODE, ok, "signed"),
            (KEY, NOW, "10.0.0.12:5353", Err(Refusal::Stranger), "none"),
            (KEY, NOW, "127.0.0.1:5353", Err(Refusal::Stranger), "none"),
            (None, NOW, NODE, Err(Refusal::Unsigned), "none"),
            (
                Some(("other-key", SECRET, Algorithm::HmacSha256)),
                NOW,
                NODE,
                Err(Refusal::BadKey),
                "unknown key",
            ),
            (
                Some(("labgate-pair", SECRET, Algorithm::HmacSha512)),
                NOW,
                NODE,
                Err(Refusal::BadKey),
                "unknown key",
            ),
            (
                Some((
                    "labgate-pair",
                    b"another secret, 32 bytes long...",
                    Algorithm::HmacSha256,
                )),
                NOW,
                NODE,
                Err(Refusal::BadSig),
                "bad signature",
            ),
            (KEY, NOW - 301, NODE, Err(Refusal::BadTime), "signed"),
            (KEY, NOW + 301, NODE, Err(Refusal::BadTime), "signed"),
            (KEY, 10, NODE, Err(Refusal::BadSig), "bad signature"),
        ];
        for (key, time, src, outcome, seal) in table {
            let got = verdict(&signed(&m, key.clone(), *time, src));
            assert_eq!(got, (outcome.clone(), *seal), "{key:?} {time} {src}");
        }
    }

    #[test]
    fn a_tampered_message_does_not_verify() {
        let m = update(
            "lab.test.",
            RecordType::SOA,
            vec![],
            vec![txt("_acme-challenge.lab.test.", DNSClass::IN, &["v"])],
        );
        let good = signed(&m, KEY, NOW, NODE);
        let mut bytes = good.as_slice().to_vec();
        // The value's last byte: `v` becomes `w`.
        let at = bytes.iter().position(|b| *b == b'v').expect("value");
        bytes[at] = b'w';
        let req =
            Request::from_bytes(bytes, NODE.parse().expect("src"), Protocol::Udp).expect("parses");
        assert_eq!(verdict(&req), (Err(Refusal::BadSig), "bad signature"));
    }

    #[test]
    fn only_challenge_values_inside_an_internal_zone_are_changed_all_or_none() {
        let at = "_acme-challenge.lab.test.";
        let v = |s: &str| Change::Add(lower(at), s.into());
        // (zone, zone type, prerequisites, updates, outcome)
        let table: Vec<Case> = vec![
            ("lab.test.", RecordType::SOA, vec![], vec![], Ok(vec![])),
            (
                "lab.test.",
                RecordType::SOA,
                vec![],
                vec![
                    txt(at, DNSClass::IN, &["a"]),
                    txt("_ACME-Challenge.App.lab.test.", DNSClass::IN, &["b"]),
                    txt(at, DNSClass::IN, &["c", "d"]),
                    txt(at, DNSClass::NONE, &["a"]),
                    clear(at, RecordType::TXT),
                ],
                Ok(vec![
                    v("a"),
                    Change::Add(lower("_acme-challenge.app.lab.test."), "b".into()),
                    v("cd"),
                    Change::Remove(lower(at), "a".into()),
                    Change::Clear(lower(at)),
                ]),
            ),
            // The zone section.
            ("other.test.", RecordType::SOA, vec![], vec![], Ok(vec![])),
            (
                "nope.test.",
                RecordType::SOA,
                vec![],
                vec![],
                Err(Refusal::NotOurZone),
            ),
            (
                "app.lab.test.",
                RecordType::SOA,
                vec![],
                vec![],
                Err(Refusal::NotOurZone),
            ),
            (
                "lab.test.",
                RecordType::A,
                vec![],
                vec![],
                Err(Refusal::NotOurZone),
            ),
            // Prerequisites.
            (
                "lab.test.",
                RecordType::SOA,
                vec![clear(at, RecordType::TXT)],
                vec![txt(at, DNSClass::IN, &["a"])],
                Err(Refusal::Prerequisites),
            ),
            // Outside the zone, or delegated out of it: NOTZONE, whatever comes before.
            (
                "lab.test.",
                RecordType::SOA,
                vec![],
                vec![
                    txt(at, DNSClass::IN, &["a"]),
                    txt("_acme-challenge.other.test.", DNSClass::IN, &["a"]),
                ],
                Err(Refusal::OutsideZone),
            ),
            (
                "lab.test.",
                RecordType::SOA,
                vec![],
                vec![txt("_acme-challenge.far.lab.test.", DNSClass::IN, &["a"])],
                Err(Refusal::OutsideZone),
            ),
            // Not a challenge value: one bad record refuses the lot.
            (
                "lab.test.",
                RecordType::SOA,
                vec![],
                vec![
                    txt(at, DNSClass::IN, &["a"]),
                    txt("www.lab.test.", DNSClass::IN, &["a"]),
                ],
                Err(Refusal::NotChallenge),
            ),
            (
                "lab.test.",
                RecordType::SOA,
                vec![],
                vec![txt("x._acme-challenge.lab.test.", DNSClass::IN, &["a"])],
                Err(Refusal::NotChallenge),
            ),
            (
                "lab.test.",
                RecordType::SOA,
                vec![],
                vec![Record::from_rdata(
                    name(at),
                    0,
                    RData::A(hickory_proto::rr::rdata::A::new(10, 0, 0, 66)),
                )],
                Err(Refusal::NotChallenge),
            ),
            (
                "lab.test.",
                RecordType::SOA,
                vec![],
                vec![txt(at, DNSClass::CH, &["a"])],
                Err(Refusal::NotChallenge),
            ),
            (
                "lab.test.",
                RecordType::SOA,
                vec![],
                vec![clear(at, RecordType::ANY)],
                Err(Refusal::NotChallenge),
            ),
            (
                "lab.test.",
                RecordType::SOA,
                vec![],
                vec![clear(at, RecordType::A)],
                Err(Refusal::NotChallenge),
            ),
            (
                "lab.test.",
                RecordType::SOA,
                vec![],
                vec![txt(at, DNSClass::IN, &[""])],
                Err(Refusal::NotChallenge),
            ),
            (
                "lab.test.",
                RecordType::SOA,
                vec![],
                vec![txt(at, DNSClass::IN, &[&"x".repeat(200), &"y".repeat(56)])],
                Err(Refusal::NotChallenge),
            ),
            (
                "lab.test.",
                RecordType::SOA,
                vec![],
                vec![txt(at, DNSClass::IN, &[&"x".repeat(200), &"y".repeat(55)])],
                Ok(vec![v(&format!("{}{}", "x".repeat(200), "y".repeat(55)))]),
            ),
        ];
        for (zone, ztype, prereqs, updates, outcome) in table {
            let m = update(zone, ztype, prereqs, updates);
            let got = verdict(&signed(&m, KEY, NOW, NODE));
            assert_eq!(
                got,
                (outcome.clone(), "signed"),
                "{zone} {ztype}: {:?}",
                m.authorities
            );
        }
    }

    #[test]
    fn refusals_map_to_rfc_codes_and_tsig_errors() {
        use Refusal::*;
        // (refusal, rcode, TSIG error)
        let table = [
            (Stranger, ResponseCode::Refused, None),
            (Unsigned, ResponseCode::NotAuth, None),
            (BadKey, ResponseCode::NotAuth, Some(TsigError::BadKey)),
            (BadSig, ResponseCode::NotAuth, Some(TsigError::BadSig)),
            (BadTime, ResponseCode::NotAuth, Some(TsigError::BadTime)),
            (NotOurZone, ResponseCode::NotAuth, None),
            (Prerequisites, ResponseCode::Refused, None),
            (OutsideZone, ResponseCode::NotZone, None),
            (NotChallenge, ResponseCode::Refused, None),
            (Full, ResponseCode::Refused, None),
        ];
        for (r, rcode, error) in table {
            assert_eq!((r.rcode(), r.tsig_error()), (rcode, error), "{r:?}");
        }
    }

    #[test]
    fn the_opcode_is_read_from_the_header() {
        let m = update("lab.test.", RecordType::SOA, vec![], vec![]);
        assert!(is_update(&m.to_vec().expect("encode")));
        assert!(!is_update(&Message::query().to_vec().expect("encode")));
        assert!(!is_update(&[0, 0]));
    }
}
