//! The first flight of a TLS client, read before rustls sees it: as much of the ClientHello
//! as tells which server name it asks for. rustls answers a name no certificate resolves with
//! `access_denied` (49); RFC 6066 §3 names `unrecognized_name` (112), which labgate sends
//! itself once this says which name was asked for. Sans I/O: bytes in, a verdict out.

/// Most bytes read ahead of rustls: one full record and its header. A ClientHello that does
/// not end within them is left to rustls, which bounds its own buffers.
pub const MAX_HELLO: usize = 5 + (1 << 14);

/// The `unrecognized_name` alert (RFC 6066 §3), fatal, as a TLS record.
pub const UNRECOGNIZED_NAME: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 112];

/// What the bytes of a new TLS connection say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hello<'b> {
    /// Not all of the ClientHello yet: read more.
    Partial,
    /// A whole ClientHello, with the host name of its `server_name` extension if it has one
    /// (not yet normalized: a client may send upper case, a trailing dot or an address).
    Complete(Option<&'b str>),
    /// Not a ClientHello labgate reads (another record, malformed, too large): rustls
    /// answers it.
    Other,
}

/// Reads the ClientHello at the start of `buf`. A ClientHello split over several records is
/// joined in `scratch`.
pub fn parse<'b>(buf: &'b [u8], scratch: &'b mut Vec<u8>) -> Hello<'b> {
    // Records: type 22 (handshake), version 3.x, a length up to 2^14; their payloads are
    // counted until the first handshake message is whole.
    let mut at = 0;
    let mut records = 0;
    let mut have = 0;
    let mut need = None;
    while need.is_none_or(|n| have < n) {
        let Some(header) = buf.get(at..at + 5) else {
            return Hello::Partial;
        };
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if header[0] != 22 || header[1] != 3 || len == 0 || len > 1 << 14 {
            return Hello::Other;
        }
        if need.is_none() {
            // Handshake header: type 1 (client_hello), a 24-bit length. One split over
            // records is legal but no client sends it: rustls reads that one alone.
            if len < 4 {
                return Hello::Other;
            }
            let Some(&[kind, a, b, c]) = buf.get(at + 5..).and_then(<[u8]>::first_chunk::<4>)
            else {
                return Hello::Partial;
            };
            let total = 4 + (usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c));
            if kind != 1 || total > MAX_HELLO {
                return Hello::Other;
            }
            need = Some(total);
        }
        if buf.len() < at + 5 + len {
            return Hello::Partial;
        }
        at += 5 + len;
        records += 1;
        have += len;
    }
    let total = need.unwrap_or(0);
    let message: &'b [u8] = if records == 1 {
        &buf[5..5 + total]
    } else {
        scratch.clear();
        let mut at = 0;
        while scratch.len() < total {
            let len = usize::from(u16::from_be_bytes([buf[at + 3], buf[at + 4]]));
            scratch.extend_from_slice(&buf[at + 5..at + 5 + len]);
            at += 5 + len;
        }
        let joined: &'b Vec<u8> = scratch;
        &joined[..total]
    };
    match server_name(&message[4..]) {
        Some(name) => Hello::Complete(name),
        None => Hello::Other,
    }
}

/// The `server_name` host name of a ClientHello body: `Some(None)` when it has none, `None`
/// when the body is malformed.
fn server_name(body: &[u8]) -> Option<Option<&str>> {
    let mut r = Reader(body);
    r.take(2 + 32)?; // legacy_version, random
    let session = r.u8()?;
    r.take(usize::from(session))?;
    let suites = r.u16()?;
    r.take(usize::from(suites))?;
    let compression = r.u8()?;
    r.take(usize::from(compression))?;
    if r.0.is_empty() {
        // TLS 1.2 without extensions.
        return Some(None);
    }
    let extensions = r.u16()?;
    let mut exts = Reader(r.take(usize::from(extensions))?);
    if !r.0.is_empty() {
        return None;
    }
    while !exts.0.is_empty() {
        let kind = exts.u16()?;
        let len = exts.u16()?;
        let data = exts.take(usize::from(len))?;
        if kind != 0 {
            continue;
        }
        let mut list = Reader(data);
        let list_len = list.u16()?;
        let mut names = Reader(list.take(usize::from(list_len))?);
        while !names.0.is_empty() {
            let name_type = names.u8()?;
            let len = names.u16()?;
            let name = names.take(usize::from(len))?;
            if name_type == 0 {
                return std::str::from_utf8(name).ok().map(Some);
            }
        }
        return Some(None);
    }
    Some(None)
}

/// Big-endian fields off the front of a slice.
struct Reader<'b>(&'b [u8]);

impl<'b> Reader<'b> {
    fn take(&mut self, n: usize) -> Option<&'b [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello body with these extensions (type, data).
    fn body(extensions: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut b = vec![3, 3];
        b.extend([7; 32]);
        b.push(0); // session id
        b.extend([0, 2, 0x13, 0x01]); // one suite
        b.extend([1, 0]); // null compression
        let mut exts = Vec::new();
        for (kind, data) in extensions {
            exts.extend(kind.to_be_bytes());
            exts.extend(u16::try_from(data.len()).expect("short").to_be_bytes());
            exts.extend(data);
        }
        b.extend(u16::try_from(exts.len()).expect("short").to_be_bytes());
        b.extend(exts);
        b
    }

    fn sni(name: &str) -> (u16, Vec<u8>) {
        let mut entry = vec![0];
        entry.extend(u16::try_from(name.len()).expect("short").to_be_bytes());
        entry.extend(name.as_bytes());
        let mut data = u16::try_from(entry.len())
            .expect("short")
            .to_be_bytes()
            .to_vec();
        data.extend(entry);
        (0, data)
    }

    /// The body as a handshake message in records of at most `split` payload bytes.
    fn records(body: &[u8], split: usize) -> Vec<u8> {
        let mut msg = vec![1];
        msg.extend(&u32::try_from(body.len()).expect("short").to_be_bytes()[1..]);
        msg.extend(body);
        let mut out = Vec::new();
        for piece in msg.chunks(split) {
            out.extend([22, 3, 1]);
            out.extend(u16::try_from(piece.len()).expect("short").to_be_bytes());
            out.extend(piece);
        }
        out
    }

    #[test]
    fn the_server_name_is_read_from_whole_hellos_in_one_record_or_several() {
        let hello = body(&[
            (10, vec![0, 2, 0, 29]),
            sni("App.Lab.Test."),
            (43, vec![2, 3, 4]),
        ]);
        for split in [usize::MAX >> 1, 40, 7] {
            let bytes = records(&hello, split.min(1 << 14));
            let mut scratch = Vec::new();
            assert_eq!(
                parse(&bytes, &mut scratch),
                Hello::Complete(Some("App.Lab.Test.")),
                "records of {split}"
            );
            // Every shorter prefix waits for more.
            for cut in 0..bytes.len() {
                let mut scratch = Vec::new();
                let got = parse(&bytes[..cut], &mut scratch);
                assert_eq!(got, Hello::Partial, "{split} {cut}");
            }
        }
    }

    #[test]
    fn hellos_without_a_name_and_other_bytes_are_told_apart() {
        let mut scratch = Vec::new();
        let nameless = records(&body(&[(10, vec![0, 2, 0, 29])]), 1 << 14);
        assert_eq!(parse(&nameless, &mut scratch), Hello::Complete(None));
        // TLS 1.2 without extensions at all.
        let mut bare = body(&[]);
        bare.truncate(bare.len() - 2);
        assert_eq!(
            parse(&records(&bare, 1 << 14), &mut scratch),
            Hello::Complete(None)
        );
        for other in [
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            vec![22, 3, 1, 0, 0],
            vec![21, 3, 3, 0, 2, 2, 40],
            // A ServerHello, not a ClientHello.
            vec![22, 3, 3, 0, 4, 2, 0, 0, 0],
            // A body shorter than its fields say.
            records(&body(&[sni("a.test")])[..40], 1 << 14),
            // A message larger than labgate reads ahead, known from its first bytes.
            vec![22, 3, 1, 0x40, 0, 1, 0x01, 0, 0],
            // A first record too short for a handshake header.
            vec![22, 3, 1, 0, 2, 1, 0],
        ] {
            assert_eq!(parse(&other, &mut scratch), Hello::Other, "{other:?}");
        }
    }
}
