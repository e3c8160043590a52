use super::*;

/// One decoded protocol buffer field: number and value (a varint, a fixed32 or bytes).
#[derive(Debug, PartialEq)]
enum V {
    Int(u64),
    Fixed(u32),
    Bytes(Vec<u8>),
}

/// A minimal protocol buffer reader for the encoder's output (the real readers are
/// `dnstap` and `dnstap-ldns` in `tests/dnstap.rs`).
fn fields(mut b: &[u8]) -> Vec<(u32, V)> {
    fn int(b: &mut &[u8]) -> u64 {
        let (mut v, mut shift) = (0u64, 0);
        loop {
            let byte = b[0];
            *b = &b[1..];
            v |= u64::from(byte & 0x7f) << shift;
            shift += 7;
            if byte < 0x80 {
                return v;
            }
        }
    }
    let mut out = Vec::new();
    while !b.is_empty() {
        let k = int(&mut b);
        let field = (k >> 3) as u32;
        let v = match k & 7 {
            0 => V::Int(int(&mut b)),
            5 => {
                let v = u32::from_le_bytes(b[..4].try_into().expect("four bytes"));
                b = &b[4..];
                V::Fixed(v)
            }
            2 => {
                let n = int(&mut b) as usize;
                let v = b[..n].to_vec();
                b = &b[n..];
                V::Bytes(v)
            }
            w => panic!("wire type {w}"),
        };
        out.push((field, v));
    }
    out
}

/// The frame's payload, after checking its length prefix.
fn payload(frame: &[u8]) -> &[u8] {
    let n = u32::from_be_bytes(frame[..4].try_into().expect("four bytes")) as usize;
    assert_eq!(n, frame.len() - 4, "the frame's length is its payload's");
    &frame[4..]
}

fn nested(top: &[(u32, V)]) -> Vec<(u32, V)> {
    match top.iter().find(|(f, _)| *f == 14) {
        Some((_, V::Bytes(b))) => fields(b),
        other => panic!("no message: {other:?}"),
    }
}

#[test]
fn a_client_query_carries_its_addresses_time_and_bytes() {
    let query = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03app\x04demo\x04test\x00\x00\x01\x00\x01";
    let m = Message {
        kind: Kind::ClientQuery,
        transport: Transport::Udp,
        client: Some("10.0.20.7:55142".parse().expect("an address")),
        server: Some("10.0.20.1:53".parse().expect("an address")),
        query_us: 1_609_664_398_355_231,
        response_us: None,
        dns: query,
    };
    let mut out = vec![0xee];
    encode(b"gate-1", b"labgate 0.1.0", &m, &mut out);
    assert_eq!(out[0], 0xee, "appended, nothing before it touched");
    let top = fields(payload(&out[1..]));
    assert_eq!(top[0], (1, V::Bytes(b"gate-1".to_vec())));
    assert_eq!(top[1], (2, V::Bytes(b"labgate 0.1.0".to_vec())));
    assert_eq!(top.last(), Some(&(15, V::Int(1))));
    assert_eq!(
        nested(&top),
        vec![
            (1, V::Int(5)),
            (2, V::Int(1)),
            (3, V::Int(1)),
            (4, V::Bytes(vec![10, 0, 20, 7])),
            (5, V::Bytes(vec![10, 0, 20, 1])),
            (6, V::Int(55142)),
            (7, V::Int(53)),
            (8, V::Int(1_609_664_398)),
            (9, V::Fixed(355_231_000)),
            (10, V::Bytes(query.to_vec())),
        ]
    );
}

#[test]
fn a_response_carries_both_times_and_an_anonymous_one_no_client() {
    let response = vec![0xab; 300];
    let m = Message {
        kind: Kind::ClientResponse,
        transport: Transport::Tls,
        client: None,
        server: Some("[::ffff:10.0.20.1]:853".parse().expect("an address")),
        query_us: 2_000_000,
        response_us: Some(2_000_250),
        dns: &response,
    };
    let mut out = Vec::new();
    encode(b"", b"", &m, &mut out);
    assert_eq!(
        nested(&fields(payload(&out))),
        vec![
            (1, V::Int(6)),
            // The family and address of labgate's side, as IPv4 though the socket said v6.
            (2, V::Int(1)),
            (3, V::Int(3)),
            (5, V::Bytes(vec![10, 0, 20, 1])),
            (7, V::Int(853)),
            (8, V::Int(2)),
            (9, V::Fixed(0)),
            (12, V::Int(2)),
            (13, V::Fixed(250_000)),
            (14, V::Bytes(response)),
        ]
    );
}

#[test]
fn messages_of_every_size_keep_their_nested_length_right() {
    // One, two and three bytes of nested length; the largest DNS message over TCP.
    for size in [0, 100, 127, 128, 5000, 16_383, 16_384, 65_535] {
        let dns = vec![7; size];
        let m = Message {
            kind: Kind::ClientQuery,
            transport: Transport::Tcp,
            client: Some("[fd00:20::7]:4000".parse().expect("an address")),
            server: Some("10.0.0.1:53".parse().expect("an address")),
            query_us: 1,
            response_us: None,
            dns: &dns,
        };
        let mut out = Vec::new();
        encode(b"id", b"v", &m, &mut out);
        let inner = nested(&fields(payload(&out)));
        assert_eq!(inner.last(), Some(&(10, V::Bytes(dns))), "size {size}");
        // An IPv6 client: family 2, and labgate's IPv4 address left out.
        assert!(inner.contains(&(2, V::Int(2))));
        assert!(
            !inner.iter().any(|(f, _)| *f == 5 || *f == 7),
            "size {size}"
        );
        assert!(
            inner.contains(&(
                4,
                V::Bytes(
                    "fd00:20::7"
                        .parse::<std::net::Ipv6Addr>()
                        .expect("an address")
                        .octets()
                        .to_vec()
                )
            ))
        );
    }
}

#[test]
fn varints_are_seven_bits_a_byte_low_first() {
    for (v, want) in [
        (0u64, &[0u8][..]),
        (1, &[1]),
        (127, &[0x7f]),
        (128, &[0x80, 0x01]),
        (300, &[0xac, 0x02]),
        (
            u64::MAX,
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
        ),
    ] {
        let (b, k) = varint_bytes(v);
        assert_eq!(&b[..k], want, "{v}");
    }
}
