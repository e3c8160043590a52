//! The real handler driven in-process, bytes in and bytes out, for the `dns_handle` fuzz
//! target, unit tests and benches (H2: the fuzz target is a shim over this). Built for this
//! crate's tests and with the `test-util` feature (benches, fuzz targets), which production
//! never enables: the sample snapshot comes from `labgate_config::testing`.
#![cfg(any(test, feature = "test-util"))]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::{A, CNAME, SOA, TXT};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use crate::resolver::unix_now;
use crate::{Answer, Dns, Metrics};

/// Runs one query's bytes through the general path (see `Dns::answer_bytes`).
pub async fn handle(handler: &Dns, data: &[u8], src: SocketAddr) -> Option<Vec<u8>> {
    handler.answer_bytes(data, src).await
}

/// DNS over a small fixed configuration with no upstreams (nothing leaves the process):
/// views for 127.0.0.1 and 127.0.0.2 (which may not recurse), one zone, a service, a CNAME,
/// and forwarded answers in the cache (see [`remember_sample_answers`]); its state, fast
/// table included, is built.
pub fn sample_handler() -> Dns {
    let handler = Dns::new(Arc::new(sample_snapshot(1)), Arc::new(Metrics::default()));
    remember_sample_answers(&handler);
    handler
}

/// The sample configuration, compiled as generation `generation`.
fn sample_snapshot(generation: u64) -> labgate_config::Snapshot {
    const TOML: &str = r#"
[[network]]
name = "lab"
cidrs = ["127.0.0.1/32"]
addresses = ["10.0.0.2", "fd00::2"]
[[network]]
name = "guest"
cidrs = ["127.0.0.2/32"]
addresses = ["10.0.1.2"]
internal = false
recursion = false
[[zone]]
name = "lab.test"
[[record]]
name = "www.lab.test"
type = "CNAME"
value = "app.lab.test"
[[record]]
name = "*.dev.lab.test"
type = "TXT"
value = "dev"
[[service]]
host = "app.lab.test"
backends = ["http://10.0.0.9"]
allow = ["lab"]
[pair]
nodes = ["127.0.0.1", "127.0.0.2"]
key_file = "pair.pem"
tsig_file = "pair.tsig"
"#;
    let files: &[(&str, &[u8])] = &[("pair.pem", b"pem"), ("pair.tsig", SAMPLE_TSIG_FILE)];
    labgate_config::compile(&labgate_config::testing::loaded(TOML, files), generation)
        .unwrap_or_else(|d| panic!("the sample configuration: {d}"))
}

/// The sample pair's TSIG key name.
pub const SAMPLE_TSIG_NAME: &str = "labgate-pair";
/// The sample pair's TSIG secret (hmac-sha256), as bytes.
pub const SAMPLE_TSIG_SECRET: &[u8] = b"sample-pair-secret-of-32-bytes!!";
/// The sample pair's key file, as `tsig-keygen` writes one (the secret above in base64).
const SAMPLE_TSIG_FILE: &[u8] = b"key \"labgate-pair\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2FtcGxlLXBhaXItc2VjcmV0LW9mLTMyLWJ5dGVzISE=\";\n};\n";

/// `message` signed with the sample pair's key at `now` (seconds since the Unix epoch), and
/// the verifier of its response.
///
/// # Panics
/// Never: the sample key is a valid hmac-sha256 key.
pub fn sign_with_sample_key(
    message: &Message,
    now: u64,
) -> Option<(Vec<u8>, hickory_proto::rr::TSigVerifier)> {
    let signer = hickory_proto::rr::TSigner::new(
        SAMPLE_TSIG_SECRET.to_vec(),
        hickory_proto::rr::rdata::tsig::TsigAlgorithm::HmacSha256,
        Name::from_ascii(SAMPLE_TSIG_NAME).ok()?,
        300,
    )
    .ok()?;
    let (tsig, verifier) = signer.sign_message(message, now).ok()?;
    let mut signed = message.clone();
    signed.signature = Some(tsig);
    Some((signed.to_vec().ok()?, verifier?))
}

/// Puts forwarded answers in the handler's cache as if upstreams had given them: two A
/// records, a CNAME chain, NODATA and NXDOMAIN with a SOA, and a TXT set too large for 512
/// bytes.
pub fn remember_sample_answers(handler: &Dns) {
    let name = |n: &str| Name::from_ascii(n).unwrap_or_else(|_| unreachable!("literal name"));
    let soa = || {
        let apex = name("example.com.");
        let data = SOA::new(
            apex.clone(),
            name("hostmaster.example.com."),
            1,
            7200,
            900,
            1_209_600,
            300,
        );
        vec![Record::from_rdata(apex, 3600, RData::SOA(data))]
    };
    let a = |n: &str, ttl: u32, last: u8| {
        Record::from_rdata(name(n), ttl, RData::A(A::new(192, 0, 2, last)))
    };
    let txt = (0..12)
        .map(|i| {
            Record::from_rdata(
                name("big.example.com."),
                600,
                RData::TXT(TXT::new(vec![format!("{i:02} {}", "x".repeat(60))])),
            )
        })
        .collect();
    let cached = [
        (
            "example.com.",
            RecordType::A,
            Answer::recursive(
                ResponseCode::NoError,
                vec![a("example.com.", 300, 1), a("example.com.", 200, 2)],
                Vec::new(),
            ),
        ),
        (
            "example.com.",
            RecordType::AAAA,
            Answer::recursive(ResponseCode::NoError, Vec::new(), soa()),
        ),
        (
            "nx.example.com.",
            RecordType::A,
            Answer::recursive(ResponseCode::NXDomain, Vec::new(), soa()),
        ),
        (
            "www.example.net.",
            RecordType::A,
            Answer::recursive(
                ResponseCode::NoError,
                vec![
                    Record::from_rdata(
                        name("www.example.net."),
                        120,
                        RData::CNAME(CNAME(name("example.com."))),
                    ),
                    a("example.com.", 300, 1),
                ],
                Vec::new(),
            ),
        ),
        (
            "big.example.com.",
            RecordType::TXT,
            Answer::recursive(ResponseCode::NoError, txt, Vec::new()),
        ),
    ];
    for (n, rtype, answer) in cached {
        handler.remember(&LowerName::new(&name(n)), rtype, &answer);
    }
}

/// Clients of each sample network and a stranger.
const SOURCES: [&str; 3] = ["127.0.0.1:5000", "127.0.0.2:5000", "192.0.2.1:5000"];

fn sources() -> impl Iterator<Item = SocketAddr> {
    SOURCES.iter().map(|s| {
        s.parse()
            .unwrap_or_else(|_| unreachable!("literal address"))
    })
}

/// Runs `f` with this thread's runtime and the shared sample handler.
fn with_sample(f: impl FnOnce(&tokio::runtime::Runtime, &Dns)) {
    static HANDLER: OnceLock<Dns> = OnceLock::new();
    thread_local! {
        static RUNTIME: Option<tokio::runtime::Runtime> =
            tokio::runtime::Builder::new_current_thread().enable_all().build().ok();
    }
    RUNTIME.with(|rt| {
        let Some(rt) = rt else { return };
        f(rt, HANDLER.get_or_init(sample_handler));
    });
}

/// Fuzz entry: any bytes as a query from a client of each network and from a stranger;
/// never panics, and every response is one whole message that carries the query's ID. Bytes
/// that read as an unsigned UPDATE are also sent signed with the pair's key from a node (so
/// the fuzzer reaches the checks behind the signature): its response verifies with that key.
pub fn handle_bytes(data: &[u8]) {
    with_sample(|rt, handler| {
        for src in sources() {
            if let Some(out) = rt.block_on(handle(handler, data, src)) {
                let msg = whole(&out);
                assert_eq!(
                    msg.metadata.id,
                    u16::from_be_bytes([data[0], data[1]]),
                    "response ID"
                );
            }
        }
        let Ok(message) = Message::from_vec(data) else {
            return;
        };
        if message.metadata.op_code != hickory_proto::op::OpCode::Update
            || message.metadata.message_type != hickory_proto::op::MessageType::Query
            || message.signature.is_some()
        {
            return;
        }
        let Some((signed, mut verifier)) = sign_with_sample_key(&message, unix_now()) else {
            return;
        };
        let node = SocketAddr::from(([127, 0, 0, 1], 5000));
        if let Some(out) = rt.block_on(handle(handler, &signed, node)) {
            let msg = whole(&out);
            assert_eq!(msg.metadata.id, message.metadata.id, "response ID");
            // Signed afresh, a message that parsed reaches the checks behind the signature,
            // and its answer is signed with our key, unless it gets FORMERR (a zone section of
            // other than one name) or BADVERS (an EDNS version above 0), which come before
            // any key is looked at.
            let badvers = message.edns.as_ref().is_some_and(|e| e.version() > 0);
            if msg.metadata.response_code != ResponseCode::FormErr
                && !badvers
                && let Err(e) = verifier.verify(&out)
            {
                panic!("the response to a signed update does not verify: {e}: {out:02x?}");
            }
        }
    });
}

/// A response read strictly: it parses, and not a byte is left after its last record.
fn whole(out: &[u8]) -> Message {
    let mut decoder = BinDecoder::new(out);
    let msg = Message::read(&mut decoder)
        .unwrap_or_else(|e| panic!("unparseable response {out:02x?}: {e}"));
    assert!(
        decoder.is_empty(),
        "{} bytes after the last record of {out:02x?}",
        decoder.len()
    );
    msg
}

/// Names the sample answers, large and small, internal and forwarded.
const NAMES: [&str; 8] = [
    "big.example.com.",
    "example.com.",
    "www.example.net.",
    "nx.example.com.",
    "app.lab.test.",
    "www.lab.test.",
    "x.dev.lab.test.",
    "lab.test.",
];
/// Types asked.
const TYPES: [RecordType; 7] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::TXT,
    RecordType::SOA,
    RecordType::ANY,
    RecordType::CNAME,
    RecordType::PTR,
];

/// Fuzz entry: a well-formed query made from the bytes (a name of the sample's or the bytes'
/// own labels, a type, an EDNS size or none, the DO bit) from each source. Every UDP response
/// is one whole message within the client's size, with an OPT exactly when the query had one;
/// it is truncated (TC, no records) only when the whole answer, as TCP gets it, does not fit,
/// and otherwise has every record TCP gets. Threat: an outside conformance run found 4 bytes
/// of a record past the end of a truncated answer, and the OPT lost.
pub fn truncation(data: &[u8]) {
    let [size_hi, size_lo, pick, flags, rest @ ..] = data else {
        return;
    };
    let size = u16::from_be_bytes([*size_hi, *size_lo]);
    let qtype = TYPES[usize::from(pick & 0x0f) % TYPES.len()];
    let name = match NAMES.get(usize::from(pick >> 4)) {
        Some(n) => Name::from_ascii(n).unwrap_or_else(|_| unreachable!("literal name")),
        None => match Name::from_labels(rest.split(|b| *b == b'.').filter(|l| !l.is_empty())) {
            Ok(n) => n,
            Err(_) => return,
        },
    };
    let mut query = Message::query();
    query.metadata.id = 0x5a5a;
    query.metadata.recursion_desired = true;
    query.add_query(hickory_proto::op::Query::query(name, qtype));
    // Sizes under 512 are read as 512 (RFC 6891 §6.2.3); 0 stands for no EDNS at all.
    if size != 0 {
        let mut edns = hickory_proto::op::Edns::new();
        edns.set_max_payload(size);
        edns.set_dnssec_ok(flags & 1 != 0);
        query.set_edns(edns);
    }
    let Ok(bytes) = query.to_vec() else { return };
    let limit = if size == 0 {
        512
    } else {
        usize::from(size.clamp(512, crate::MAX_UDP_PAYLOAD))
    };
    with_sample(|rt, handler| {
        for src in sources() {
            let Some(udp) = rt.block_on(handler.answer_bytes(&bytes, src)) else {
                continue;
            };
            let arrival = crate::log::Arrival::now(
                labgate_querylog::Transport::Tcp,
                labgate_querylog::Lane::Shared,
            );
            let Some(tcp) = rt.block_on(handler.answer_stream(&bytes, src, arrival)) else {
                panic!("answered over UDP, not over TCP")
            };
            let (u, t) = (whole(&udp), whole(&tcp));
            assert!(
                udp.len() <= limit,
                "{} bytes for a {limit}-byte client",
                udp.len()
            );
            assert_eq!(
                u.edns.is_some(),
                size != 0,
                "an OPT back exactly when asked"
            );
            let all = t.answers.len() + t.authorities.len();
            if u.metadata.truncation {
                assert!(tcp.len() > limit, "truncated though the whole answer fits");
                assert_eq!(
                    u.answers.len() + u.authorities.len(),
                    0,
                    "no partial sections"
                );
            } else {
                assert_eq!(
                    u.answers.len() + u.authorities.len(),
                    all,
                    "records left out without TC"
                );
            }
        }
    });
}

/// Fuzz entry: any bytes as a query from each network and a stranger; whenever the fast path
/// answers, its bytes are exactly the general path's.
pub fn fast_matches_general(data: &[u8]) {
    with_sample(|rt, handler| {
        let _ = rt.block_on(compare(handler, data));
    });
}

/// Asks the general path (which keeps a cache hit for the fast path), then both paths;
/// `Some(bytes)` when the fast path answered (and agreed: else a panic).
pub async fn compare(handler: &Dns, data: &[u8]) -> Option<Vec<u8>> {
    let mut answered = None;
    for src in sources() {
        let _ = handler.answer_bytes(data, src).await;
        let mut pair = both(handler, data, src).await;
        if pair
            .as_ref()
            .is_some_and(|(fast, general)| Some(fast) != general.as_ref())
        {
            // Cached TTLs count down in whole seconds: a second that ended between the two
            // calls changes them by one. Ask once more; a real disagreement repeats.
            pair = both(handler, data, src).await;
        }
        let Some((fast, general)) = pair else {
            continue;
        };
        assert_eq!(
            Some(&fast),
            general.as_ref(),
            "fast and general paths differ for {data:02x?} from {src}"
        );
        answered = Some(fast);
    }
    answered
}

/// The fast path's answer, if it gives one, and the general path's right after.
async fn both(handler: &Dns, data: &[u8], src: SocketAddr) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
    let mut out = [0u8; 1232];
    let len = handler.fast_answer_now(src.ip(), data, &mut out)?;
    Some((out[..len].to_vec(), handler.answer_bytes(data, src).await))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for `app.lab.test A`, RD set, id 0x1234.
    fn query(name: &[&str], qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&[0, 1]);
        q
    }

    #[test]
    fn seed_corpus_passes_the_properties() {
        let mut n = 0;
        for e in std::fs::read_dir("../fuzz/corpus/dns_handle").expect("seed corpus") {
            handle_bytes(&std::fs::read(e.expect("entry").path()).expect("seed"));
            n += 1;
        }
        assert!(n >= 3, "seed corpus went missing");
    }

    #[test]
    fn every_name_type_and_size_of_the_truncation_target_holds_its_properties() {
        for size in [0u16, 1, 511, 512, 513, 600, 800, 1000, 1231, 1232, 4096] {
            for pick in 0..=u8::MAX {
                let [hi, lo] = size.to_be_bytes();
                truncation(&[hi, lo, pick, pick & 1, b'a', b'.', b'b']);
            }
        }
        // The seeds the fuzzer starts from pass too.
        for e in std::fs::read_dir("../fuzz/corpus/dns_truncation").expect("seed corpus") {
            truncation(&std::fs::read(e.expect("entry").path()).expect("seed"));
        }
    }

    #[test]
    fn answers_in_process_per_view() {
        let handler = sample_handler();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        let ask = |src: &str, q: &[u8]| {
            let out = rt
                .block_on(handle(&handler, q, src.parse().expect("src")))
                .expect("a response");
            Message::from_vec(&out).expect("parses")
        };
        let a = ask("127.0.0.1:1", &query(&["app", "lab", "test"], 1));
        assert_eq!(a.answers.len(), 1);
        assert!(a.metadata.authoritative);
        let guest = ask("127.0.0.2:1", &query(&["app", "lab", "test"], 1));
        assert_eq!(guest.metadata.response_code, ResponseCode::NXDomain);
        let stranger = ask("192.0.2.1:1", &query(&["app", "lab", "test"], 1));
        assert_eq!(stranger.metadata.response_code, ResponseCode::Refused);
    }

    /// A query with the given flags byte 2 and 3 and an optional OPT of `size`.
    fn query_with(name: &str, qtype: u16, flags: [u8; 2], opt: Option<u16>) -> Vec<u8> {
        let labels: Vec<&str> = name.split('.').collect();
        let mut q = query(&labels, qtype);
        q[2..4].copy_from_slice(&flags);
        if let Some(size) = opt {
            q[11] = 1;
            q.extend_from_slice(&[0, 0, 41]);
            q.extend_from_slice(&size.to_be_bytes());
            q.extend_from_slice(&[0; 6]);
        }
        q
    }

    /// A runtime and the sample handler.
    fn with_fast_table() -> (tokio::runtime::Runtime, Dns) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        (rt, sample_handler())
    }

    #[test]
    fn the_fast_path_answers_plain_questions_exactly_as_the_general_path() {
        let (rt, handler) = with_fast_table();
        let mut fast = 0;
        let mut total = 0;
        for name in [
            "app.lab.test",
            "APP.Lab.TeSt",
            "www.lab.test",
            "lab.test",
            "nope.lab.test",
            "x.dev.lab.test",
            "example.com",
            "ExAmple.COM",
            "nx.example.com",
            "www.example.net",
            "big.example.com",
        ] {
            for qtype in [1u16, 28, 5, 16, 15, 65, 6, 2, 255] {
                for flags in [
                    [0x01, 0x00],
                    [0x00, 0x00],
                    [0x01, 0x20],
                    [0x01, 0x10],
                    [0x81, 0x00],
                ] {
                    for opt in [None, Some(1232), Some(4096), Some(512), Some(100)] {
                        total += 1;
                        let q = query_with(name, qtype, flags, opt);
                        if rt.block_on(compare(&handler, &q)).is_some() {
                            fast += 1;
                        }
                    }
                }
            }
        }
        // The common shapes take the fast path; every answer it gave matched.
        assert!(
            fast > total / 10,
            "the fast path answered {fast} of {total}"
        );
        let q = query_with("app.lab.test", 1, [0x01, 0x00], None);
        let mut out = [0u8; 1232];
        let src = "127.0.0.1".parse().expect("ip");
        assert!(
            handler.fast_answer_now(src, &q, &mut out).is_some(),
            "app.lab.test A is precompiled"
        );
        let do_bit = {
            let mut q = query_with("app.lab.test", 1, [0x01, 0x00], Some(1232));
            let n = q.len();
            q[n - 4] = 0x80;
            q
        };
        assert!(
            handler.fast_answer_now(src, &do_bit, &mut out).is_none(),
            "DO goes to the general path"
        );
    }

    /// The TTLs of a response's answer section.
    fn ttls(response: &[u8]) -> Vec<u32> {
        let msg = Message::from_vec(response).expect("parses");
        msg.answers.iter().map(|r| r.ttl).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn cache_hits_take_the_fast_path_counted_down_until_the_last_tenth_of_their_life() {
        use labgate_config::blocklist::BlockSet;
        use labgate_config::blocklist::BlocklistFormat;
        use std::time::Duration;
        let handler = sample_handler();
        let q = query_with("example.com", 1, [0x01, 0x00], None);
        let lab = "127.0.0.1".parse().expect("ip");
        let mut out = [0u8; 1232];
        assert!(
            handler.fast_answer_now(lab, &q, &mut out).is_none(),
            "cached but not yet hit on the general path: nothing kept"
        );
        let first = compare(&handler, &q)
            .await
            .expect("kept after a general-path hit");
        assert_eq!(ttls(&first), [300, 200]);
        tokio::time::advance(Duration::from_secs(100)).await;
        let n = handler
            .fast_answer_now(lab, &q, &mut out)
            .expect("still kept");
        assert_eq!(ttls(&out[..n]), [200, 100], "counted down on the fast path");
        let later = compare(&handler, &q).await.expect("still on the fast path");
        assert_eq!(ttls(&later), [200, 100]);
        assert!(
            handler
                .fast_answer_now("127.0.0.2".parse().expect("ip"), &q, &mut out)
                .is_none(),
            "guest may not recurse: the general path refuses it"
        );
        // Blocklists fetched since were not part of the decision: nothing kept is served.
        let list = BlockSet::parse("", BlocklistFormat::Domains);
        handler.publish_list("https://lists.example/none.txt", &Arc::new(list));
        assert!(
            handler.fast_answer_now(lab, &q, &mut out).is_none(),
            "new lists"
        );
        assert!(
            compare(&handler, &q).await.is_some(),
            "kept again under them"
        );
        // The cache TTL is 200: from age 180 on, hits are the general path's (prefetch).
        tokio::time::advance(Duration::from_secs(80)).await;
        assert!(
            handler.fast_answer_now(lab, &q, &mut out).is_none(),
            "last tenth"
        );
        let general = handler
            .answer_bytes(&q, SocketAddr::new(lab, 5000))
            .await
            .expect("answer");
        assert_eq!(ttls(&general), [120, 20]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_snapshot_keeps_the_cache_and_the_fetched_lists_and_starts_an_empty_hit_table() {
        use labgate_config::Publish as _;
        use labgate_config::blocklist::BlockSet;
        use labgate_config::blocklist::BlocklistFormat;
        let handler = sample_handler();
        let q = query_with("example.com", 1, [0x01, 0x00], None);
        let lab = "127.0.0.1".parse().expect("ip");
        let mut out = [0u8; 1232];
        compare(&handler, &q)
            .await
            .expect("kept after a general-path hit");
        let list = BlockSet::parse("", BlocklistFormat::Domains);
        handler.publish_list("https://lists.example/none.txt", &Arc::new(list));
        let lists = Arc::clone(&handler.state().inputs.lists);
        handler.publish(Arc::new(sample_snapshot(2)));
        let state = handler.state();
        assert_eq!(state.inputs.snapshot.generation, 2, "published");
        assert!(
            Arc::ptr_eq(&state.inputs.lists, &lists),
            "fetched lists kept"
        );
        assert!(
            handler.fast_answer_now(lab, &q, &mut out).is_none(),
            "nothing kept under the new snapshot yet"
        );
        // The cache (no upstreams here: a lost cache is SERVFAIL) is kept, and its hit kept
        // again for the fast path.
        let again = compare(&handler, &q)
            .await
            .expect("answered from the cache and kept again");
        assert_eq!(ttls(&again), [300, 200]);
        // The precompiled answers are the new snapshot's.
        let internal = query_with("app.lab.test", 1, [0x01, 0x00], None);
        assert!(compare(&handler, &internal).await.is_some());
    }

    #[test]
    fn fast_seed_corpus_agrees_and_takes_the_fast_path() {
        for e in std::fs::read_dir("../fuzz/corpus/dns_handle").expect("seed corpus") {
            fast_matches_general(&std::fs::read(e.expect("entry").path()).expect("seed"));
        }
        let (rt, handler) = with_fast_table();
        let mut fast = 0;
        for e in std::fs::read_dir("../fuzz/corpus/dns_fast").expect("seed corpus") {
            let seed = std::fs::read(e.expect("entry").path()).expect("seed");
            fast += usize::from(rt.block_on(compare(&handler, &seed)).is_some());
        }
        assert!(fast >= 5, "the dns_fast seeds reach the fast path ({fast})");
    }

    /// An UPDATE of `lab.test` (id 0x4242) with one TXT record at `name` of `class`.
    fn txt_update(name: &str, class: hickory_proto::rr::DNSClass, value: &str) -> Message {
        use hickory_proto::op::{MessageType, OpCode, Query};
        let mut m = Message::new(0x4242, MessageType::Query, OpCode::Update);
        m.add_query(Query::query(
            Name::from_ascii("lab.test.").expect("zone"),
            RecordType::SOA,
        ));
        let mut r = Record::from_rdata(
            Name::from_ascii(name).expect("name"),
            0,
            RData::TXT(TXT::new(vec![value.to_owned()])),
        );
        r.dns_class = class;
        m.authorities.push(r);
        m
    }

    /// The TXT values the general path answers at `name`, over UDP from a stranger (the CA).
    async fn served(handler: &Dns, name: &str) -> Vec<String> {
        let mut q = Message::query();
        q.metadata.id = 9;
        q.add_query(hickory_proto::op::Query::query(
            Name::from_ascii(name).expect("name"),
            RecordType::TXT,
        ));
        let bytes = q.to_vec().expect("encode");
        let stranger = "192.0.2.1:53".parse().expect("src");
        let out = handle(handler, &bytes, stranger).await.expect("answered");
        whole(&out)
            .answers
            .iter()
            .map(|r| r.data.to_string())
            .collect()
    }

    #[tokio::test]
    async fn a_signed_update_from_a_node_is_applied_answered_signed_and_never_taken_by_the_fast_path()
     {
        use hickory_proto::rr::DNSClass;
        let handler = sample_handler();
        let at = "_acme-challenge.app.lab.test.";
        let node: SocketAddr = "127.0.0.2:5353".parse().expect("src");
        let now = unix_now();
        let add = txt_update(at, DNSClass::IN, "token-1");
        let (bytes, mut verifier) = sign_with_sample_key(&add, now).expect("signed");
        let mut out = [0u8; 1232];
        assert!(
            handler
                .fast_answer_now(node.ip(), &bytes, &mut out)
                .is_none(),
            "the fast path declines an UPDATE"
        );
        // Even one shaped like a question it holds for the lab (`lab.test SOA`, nothing
        // else).
        let mut empty = txt_update(at, DNSClass::IN, "x");
        empty.authorities.clear();
        let empty = empty.to_vec().expect("encode");
        let lab = "127.0.0.1".parse().expect("lab");
        assert!(
            handler.fast_answer_now(lab, &empty, &mut out).is_none(),
            "the fast path declines an empty UPDATE of a zone's SOA"
        );
        let response = handle(&handler, &bytes, node).await.expect("answered");
        let verified = verifier
            .verify(&response)
            .expect("signed with the pair's key");
        assert_eq!(verified.metadata.response_code, ResponseCode::NoError);
        assert_eq!(verified.metadata.op_code, hickory_proto::op::OpCode::Update);
        assert_eq!(served(&handler, at).await, ["token-1"]);
        let applied = handler
            .metrics()
            .updates(crate::metrics::UpdateResult::Applied);
        assert_eq!(applied, 1);
        // Over TCP too; the value goes.
        let delete = txt_update(at, DNSClass::NONE, "token-1");
        let (bytes, mut verifier) = sign_with_sample_key(&delete, now).expect("signed");
        let arrival = crate::log::Arrival::now(
            labgate_querylog::Transport::Tcp,
            labgate_querylog::Lane::Shared,
        );
        let response = handler
            .answer_stream(&bytes, node, arrival)
            .await
            .expect("answered");
        let verified = verifier
            .verify(&response)
            .expect("signed with the pair's key");
        assert_eq!(verified.metadata.response_code, ResponseCode::NoError);
        assert!(served(&handler, at).await.is_empty());
        // Unsigned, or from a stranger: refused, nothing served, counted.
        let unsigned = add.to_vec().expect("encode");
        let r = whole(&handle(&handler, &unsigned, node).await.expect("answered"));
        assert_eq!(r.metadata.response_code, ResponseCode::NotAuth);
        let stranger = "192.0.2.1:5353".parse().expect("src");
        let (bytes, _) = sign_with_sample_key(&add, now).expect("signed");
        let r = whole(&handle(&handler, &bytes, stranger).await.expect("answered"));
        assert_eq!(r.metadata.response_code, ResponseCode::Refused);
        assert!(r.signature.is_none(), "a stranger's answer is not signed");
        assert!(served(&handler, at).await.is_empty());
        let m = handler.metrics();
        use crate::metrics::UpdateResult::{NotAuth, Refused};
        assert_eq!((m.updates(NotAuth), m.updates(Refused)), (1, 1));
        assert!(
            m.render(&handler.state().inputs.snapshot)
                .contains("labgate_dns_updates_total{result=\"applied\"} 2\n")
        );
    }

    #[tokio::test]
    async fn without_a_pair_an_update_is_not_implemented() {
        let handler = Dns::new(
            Arc::new(labgate_config::testing::snapshot(
                "[[network]]\nname = \"lab\"\ncidrs = [\"127.0.0.0/8\"]\naddresses = [\"10.0.0.2\"]\n[[zone]]\nname = \"lab.test\"\n",
            )),
            Arc::new(Metrics::default()),
        );
        let add = txt_update(
            "_acme-challenge.lab.test.",
            hickory_proto::rr::DNSClass::IN,
            "v",
        );
        let (bytes, _) = sign_with_sample_key(&add, unix_now()).expect("signed");
        let r = whole(
            &handle(&handler, &bytes, "127.0.0.1:53".parse().expect("src"))
                .await
                .expect("answered"),
        );
        assert_eq!(r.metadata.response_code, ResponseCode::NotImp);
        assert!(
            served(&handler, "_acme-challenge.lab.test.")
                .await
                .is_empty()
        );
    }

    #[tokio::test]
    async fn updates_built_by_hickorys_own_client_are_accepted() {
        // What a peer's `Rfc2136` provider sends: hickory's update builder (append without a
        // prerequisite, delete by value, with EDNS), signed as its client signs.
        use hickory_proto::op::update_message;
        use hickory_proto::rr::RecordSet;
        let handler = sample_handler();
        let at = "_acme-challenge.www.lab.test.";
        let zone = Name::from_ascii("lab.test.").expect("zone");
        let rrset = || {
            RecordSet::from(Record::from_rdata(
                Name::from_ascii(at).expect("name"),
                60,
                RData::TXT(TXT::new(vec!["from-hickory".into()])),
            ))
        };
        let node: SocketAddr = "127.0.0.1:5353".parse().expect("src");
        for (message, want) in [
            (
                update_message::append(rrset(), zone.clone(), false, true),
                &["from-hickory"][..],
            ),
            (
                update_message::delete_by_rdata(rrset(), zone.clone(), true),
                &[],
            ),
        ] {
            let (bytes, mut verifier) = sign_with_sample_key(&message, unix_now()).expect("signed");
            let response = handle(&handler, &bytes, node).await.expect("answered");
            let verified = verifier
                .verify(&response)
                .expect("signed with the pair's key");
            assert_eq!(verified.metadata.response_code, ResponseCode::NoError);
            assert_eq!(served(&handler, at).await, want);
        }
    }
}
