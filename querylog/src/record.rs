//! [`Record`]: one query as the log keeps it, fixed in size and `Copy`, so the answering
//! thread fills it from bytes it already has without allocating; the writer turns it into text.

use std::net::IpAddr;

/// Longest wire-format name (RFC 1035 §3.1).
const NAME_MAX: usize = 255;
/// Room for the answer summary: four IPv6 addresses, or the start of a CNAME target.
const SUMMARY_MAX: usize = 64;

/// Microseconds since the Unix epoch of `t` (0 before it): the unit of a record's time.
pub fn unix_us(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// How the query reached labgate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Plain DNS over UDP.
    Udp,
    /// Plain DNS over TCP.
    Tcp,
    /// DNS over TLS (RFC 7858).
    Tls,
}

impl Transport {
    /// Its name in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
            Self::Tls => "tls",
        }
    }
}

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The internal zones of the client's view (records, services, derived PTRs, the RFC 6303
    /// local zones).
    Internal,
    /// An ACME DNS-01 challenge value of the `builtin` provider.
    Challenge,
    /// A blocklist: its index in the snapshot's `[[blocklist]]`s.
    Blocked(u16),
    /// The answer cache (with [`Flags::STALE`]: an expired answer served while the upstreams
    /// are silent or down).
    Cache,
    /// The upstreams: 0 the `[dns] upstreams`, `i + 1` the `[[forward]]` `i` (hickory picks the
    /// server within the group). SERVFAIL when they failed.
    Upstream(u16),
    /// No upstream is configured for the name: SERVFAIL.
    NoUpstream,
    /// Refused: a client in no network, recursion or class not allowed.
    Refused,
    /// Answered at once because a bound on queries waiting for the upstreams was met (stale
    /// answer or SERVFAIL).
    Overload,
    /// A query labgate could not take: FORMERR, NOTIMP, BADVERS.
    Malformed,
}

impl Source {
    /// Every source's name, as [`Source::name`] gives it.
    pub const NAMES: [&'static str; 9] = [
        "internal",
        "challenge",
        "blocklist",
        "cache",
        "upstream",
        "no-upstream",
        "refused",
        "overload",
        "malformed",
    ];

    /// Its name in the log.
    pub fn name(self) -> &'static str {
        let i = match self {
            Self::Internal => 0,
            Self::Challenge => 1,
            Self::Blocked(_) => 2,
            Self::Cache => 3,
            Self::Upstream(_) => 4,
            Self::NoUpstream => 5,
            Self::Refused => 6,
            Self::Overload => 7,
            Self::Malformed => 8,
        };
        Self::NAMES[i]
    }
}

/// Flags of a query and its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags(pub u8);

impl Flags {
    /// The query asked for DNSSEC records (EDNS DO bit).
    pub const DO: u8 = 1;
    /// The answer was truncated (TC): the client asks again over TCP.
    pub const TC: u8 = 2;
    /// The answer was served stale (RFC 8767).
    pub const STALE: u8 = 4;
    /// The query asked for recursion (RD).
    pub const RD: u8 = 8;

    /// Whether `flag` is set.
    pub fn has(self, flag: u8) -> bool {
        self.0 & flag != 0
    }
}

/// One query and its answer.
#[derive(Clone, Copy)]
pub struct Record {
    /// When it was received: microseconds since the Unix epoch.
    pub time_us: i64,
    /// From reception to the answer, in microseconds.
    pub latency_us: u32,
    /// Low 32 bits of the generation of the snapshot that decided it: what its network and
    /// list indexes refer to.
    pub generation: u32,
    /// The client's address; `None` when its network's log is anonymous.
    pub client: Option<IpAddr>,
    /// Index of the client's network in that snapshot; `None`: in no network.
    pub network: Option<u16>,
    /// Query type, class and the answer's rcode (extended rcodes included).
    pub qtype: u16,
    /// Query class.
    pub qclass: u16,
    /// Response code.
    pub rcode: u16,
    /// How the query came.
    pub transport: Transport,
    /// Where the answer came from.
    pub source: Source,
    /// Query and answer flags.
    pub flags: Flags,
    name: [u8; NAME_MAX],
    name_len: u8,
    summary: Summary,
}

/// The first addresses of an answer, or the CNAME it starts with, as bytes.
#[derive(Clone, Copy)]
struct Summary {
    kind: SummaryKind,
    len: u8,
    bytes: [u8; SUMMARY_MAX],
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum SummaryKind {
    None,
    V4,
    V6,
    /// A wire-format name, cut at `SUMMARY_MAX` bytes (`len`).
    Cname,
}

impl Record {
    /// A record for a question whose wire-format name starts `question` (the question section
    /// or the query from its name on); the name is cut where it stops being a valid
    /// uncompressed name. Every other field is given by the caller afterwards.
    pub fn new(question: &[u8], transport: Transport, time_us: i64) -> Self {
        let mut r = Self {
            time_us,
            latency_us: 0,
            generation: 0,
            client: None,
            network: None,
            qtype: 0,
            qclass: 0,
            rcode: 0,
            transport,
            source: Source::Malformed,
            flags: Flags::default(),
            name: [0; NAME_MAX],
            name_len: 0,
            summary: Summary {
                kind: SummaryKind::None,
                len: 0,
                bytes: [0; SUMMARY_MAX],
            },
        };
        let end = wire_name_len(question, 0).unwrap_or(0);
        r.name[..end].copy_from_slice(&question[..end]);
        r.name_len = end as u8;
        r
    }

    /// Reads the answer summary from `response` (a whole DNS message): the addresses of the
    /// answer section (up to four of the first family), else the target of its first CNAME.
    /// Malformed bytes leave it empty.
    pub fn summarize(&mut self, response: &[u8]) {
        self.summary = summarize(response).unwrap_or(Summary {
            kind: SummaryKind::None,
            len: 0,
            bytes: [0; SUMMARY_MAX],
        });
    }

    /// The question's name, lower-case, dotted, without the final dot (`.` for the root);
    /// bytes outside printable ASCII and `.` `\` inside labels as `\DDD`.
    pub fn name(&self) -> String {
        let text = wire_to_text(&self.name[..usize::from(self.name_len)], false);
        text.to_ascii_lowercase()
    }

    /// The answer summary as text: addresses separated by `, `, or `CNAME target`; empty
    /// when the answer has neither.
    pub fn answer(&self) -> String {
        let s = &self.summary;
        let data = &s.bytes[..usize::from(s.len)];
        match s.kind {
            SummaryKind::None => String::new(),
            SummaryKind::V4 => join(data.chunks_exact(4).map(|a| {
                let a: [u8; 4] = a.try_into().unwrap_or_default();
                IpAddr::from(a).to_string()
            })),
            SummaryKind::V6 => join(data.chunks_exact(16).map(|a| {
                let a: [u8; 16] = a.try_into().unwrap_or_default();
                IpAddr::from(a).to_string()
            })),
            SummaryKind::Cname => format!("CNAME {}", wire_to_text(data, true)),
        }
    }
}

fn join(parts: impl Iterator<Item = String>) -> String {
    parts.collect::<Vec<_>>().join(", ")
}

/// Length of the uncompressed name at `at` (its final zero label included), if it is one.
fn wire_name_len(msg: &[u8], at: usize) -> Option<usize> {
    let mut i = at;
    loop {
        let len = usize::from(*msg.get(i)?);
        if len & 0xC0 != 0 || i + 1 + len - at > NAME_MAX {
            return None;
        }
        i += 1 + len;
        if len == 0 {
            return Some(i - at);
        }
    }
}

/// Skips the possibly compressed name at `at`: the offset after it.
fn skip_name(msg: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *msg.get(at)?;
        match len & 0xC0 {
            0 if len == 0 => return Some(at + 1),
            0 => at += 1 + usize::from(len),
            0xC0 => return Some(at + 2),
            _ => return None,
        }
    }
}

/// Copies the possibly compressed name at `at` uncompressed into `out` (cut at its end):
/// the bytes written, and whether the whole name fit.
fn copy_name(msg: &[u8], mut at: usize, out: &mut [u8]) -> Option<(usize, bool)> {
    let mut n = 0;
    // Each pointer must go backwards: no loops.
    let mut limit = at;
    loop {
        let len = *msg.get(at)?;
        match len & 0xC0 {
            0 => {
                let label = msg.get(at..=at + usize::from(len))?;
                if n + label.len() > out.len() {
                    let room = out.len() - n;
                    out[n..].copy_from_slice(&label[..room]);
                    return Some((out.len(), false));
                }
                out[n..n + label.len()].copy_from_slice(label);
                n += label.len();
                if len == 0 {
                    return Some((n, true));
                }
                at += label.len();
            }
            0xC0 => {
                let to = usize::from(u16::from_be_bytes([len, *msg.get(at + 1)?]) & 0x3FFF);
                if to >= limit {
                    return None;
                }
                limit = to;
                at = to;
            }
            _ => return None,
        }
    }
}

fn summarize(msg: &[u8]) -> Option<Summary> {
    let header = msg.get(..12)?;
    let count = |i: usize| usize::from(u16::from_be_bytes([header[i], header[i + 1]]));
    let (questions, answers) = (count(4), count(6));
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(msg, at)? + 4;
    }
    let mut s = Summary {
        kind: SummaryKind::None,
        len: 0,
        bytes: [0; SUMMARY_MAX],
    };
    let mut cname: Option<usize> = None;
    for _ in 0..answers {
        at = skip_name(msg, at)?;
        let fixed = msg.get(at..at + 10)?;
        let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        let rdlen = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
        let rdata = at + 10;
        let data = msg.get(rdata..rdata + rdlen)?;
        let (kind, size) = match rtype {
            1 if rdlen == 4 => (SummaryKind::V4, 4),
            28 if rdlen == 16 => (SummaryKind::V6, 16),
            5 => {
                cname.get_or_insert(rdata);
                (SummaryKind::None, 0)
            }
            _ => (SummaryKind::None, 0),
        };
        let fits = usize::from(s.len) + size <= SUMMARY_MAX;
        if size > 0 && (s.kind == SummaryKind::None || s.kind == kind) && fits {
            s.kind = kind;
            s.bytes[usize::from(s.len)..usize::from(s.len) + size].copy_from_slice(data);
            s.len += size as u8;
        }
        at = rdata + rdlen;
    }
    if s.kind == SummaryKind::None
        && let Some(target) = cname
    {
        let (n, _) = copy_name(msg, target, &mut s.bytes)?;
        s.kind = SummaryKind::Cname;
        s.len = n as u8;
    }
    Some(s)
}

/// A wire-format name (possibly cut short: `partial`) as dotted text without the final dot.
fn wire_to_text(wire: &[u8], partial: bool) -> String {
    let mut out = String::with_capacity(wire.len());
    let mut i = 0;
    while let Some(&len) = wire.get(i) {
        if len == 0 {
            break;
        }
        let end = (i + 1 + usize::from(len)).min(wire.len());
        if !out.is_empty() {
            out.push('.');
        }
        for &b in &wire[i + 1..end] {
            if b.is_ascii_graphic() && b != b'.' && b != b'\\' {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("\\{b:03}"));
            }
        }
        i = end;
    }
    if partial && wire.last().is_some_and(|&b| b != 0) {
        out.push('…');
    }
    if out.is_empty() {
        out.push('.');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answer records: type and rdata.
    type Answers = [(u16, Vec<u8>)];

    /// A response to `www.example.com A` with the given answer records.
    fn response(answers: &Answers) -> Vec<u8> {
        let mut m = vec![0, 1, 0x81, 0x80, 0, 1, 0, answers.len() as u8, 0, 0, 0, 0];
        m.extend_from_slice(b"\x03www\x07example\x03com\x00\x00\x01\x00\x01");
        for (t, data) in answers {
            m.extend_from_slice(&[0xC0, 12]);
            m.extend_from_slice(&t.to_be_bytes());
            m.extend_from_slice(&[0, 1, 0, 0, 0, 60]);
            m.extend_from_slice(&(data.len() as u16).to_be_bytes());
            m.extend_from_slice(data);
        }
        m
    }

    fn summary_of(msg: &[u8]) -> String {
        let mut r = Record::new(msg.get(12..).unwrap_or_default(), Transport::Udp, 0);
        r.summarize(msg);
        r.answer()
    }

    #[test]
    fn a_record_stays_small_enough_to_copy_per_query() {
        // The queues' memory (ARCHITECTURE.md: 2048 records per queue) and the copy per query.
        assert!(size_of::<Record>() <= 384, "{}", size_of::<Record>());
    }

    #[test]
    fn names_are_read_from_the_question_and_written_lower_case() {
        let r = Record::new(b"\x03WwW\x07Example\x03com\x00\x00\x01", Transport::Udp, 0);
        assert_eq!(r.name(), "www.example.com");
        assert_eq!(Record::new(b"\x00", Transport::Udp, 0).name(), ".");
        assert_eq!(
            Record::new(b"\x03a.b\x00", Transport::Udp, 0).name(),
            "a\\046b"
        );
        // A compression pointer or a name running off the end: nothing is kept.
        assert_eq!(Record::new(b"\xC0\x0C", Transport::Udp, 0).name(), ".");
        assert_eq!(Record::new(b"\x05ab", Transport::Udp, 0).name(), ".");
    }

    #[test]
    fn summaries_keep_the_first_addresses_or_the_cname() {
        let cases: &[(&Answers, &str)] = &[
            (&[], ""),
            (&[(1, vec![10, 0, 0, 1])], "10.0.0.1"),
            (
                &[(1, vec![10, 0, 0, 1]), (1, vec![10, 0, 0, 2])],
                "10.0.0.1, 10.0.0.2",
            ),
            (
                &[(28, [0xfd; 16].to_vec())],
                "fdfd:fdfd:fdfd:fdfd:fdfd:fdfd:fdfd:fdfd",
            ),
            // A CNAME before the addresses: the addresses are the summary.
            (
                &[(5, b"\x03cdn\xC0\x10".to_vec()), (1, vec![1, 2, 3, 4])],
                "1.2.3.4",
            ),
            // A CNAME alone: its target, the pointer followed.
            (&[(5, b"\x03cdn\xC0\x10".to_vec())], "CNAME cdn.example.com"),
            // An MX: nothing to show.
            (&[(15, b"\x00\x0a\xC0\x0C".to_vec())], ""),
            // A wrong-length A is not an address.
            (&[(1, vec![1, 2, 3])], ""),
        ];
        for (answers, want) in cases {
            assert_eq!(summary_of(&response(answers)), *want, "{answers:?}");
        }
    }

    #[test]
    fn a_summary_holds_four_ipv6_addresses_and_cuts_a_long_cname() {
        let six: Vec<_> = (0..6u8).map(|i| (28, [i; 16].to_vec())).collect();
        assert_eq!(summary_of(&response(&six)).matches(", ").count(), 3);
        let mut long = Vec::new();
        for _ in 0..10 {
            long.extend_from_slice(b"\x09abcdefghi");
        }
        long.push(0);
        let text = summary_of(&response(&[(5, long)]));
        assert!(
            text.starts_with("CNAME abcdefghi.") && text.ends_with('…'),
            "{text}"
        );
    }

    #[test]
    fn malformed_responses_give_no_summary_and_no_panic() {
        let good = response(&[(5, b"\x03cdn\xC0\x10".to_vec()), (1, vec![1, 2, 3, 4])]);
        for cut in 0..good.len() {
            let _ = summary_of(&good[..cut]);
        }
        // A pointer loop in the CNAME target.
        let looped = response(&[(5, b"\xC0\x2D".to_vec())]);
        assert_eq!(summary_of(&looped), "");
    }
}
