//! The HPACK encoder for responses (RFC 7541 §6): static-table indexed `:status` and names,
//! literal values without indexing, Huffman-coded when shorter. It never inserts into the
//! dynamic table, so it needs no memory and cannot be desynchronized by the peer.

use super::huffman;

/// The encoding side of one connection's HPACK context.
#[derive(Debug, Default)]
pub struct Encoder {
    /// The peer changed SETTINGS_HEADER_TABLE_SIZE: start the next block with a size update
    /// to 0 (§4.2), the size our encoder uses, so that a decoder that expects an update
    /// after a change gets one.
    size_update: bool,
}

impl Encoder {
    /// An encoder for a new connection.
    pub fn new() -> Self {
        Self::default()
    }

    /// The peer sent SETTINGS_HEADER_TABLE_SIZE.
    pub fn table_size_changed(&mut self) {
        self.size_update = true;
    }

    /// Starts a field block: a pending table size update.
    pub fn begin(&mut self, out: &mut Vec<u8>) {
        if std::mem::take(&mut self.size_update) {
            out.push(0x20);
        }
    }

    /// Appends `:status` (a code from 100 to 999).
    pub fn status(&mut self, status: u16, out: &mut Vec<u8>) {
        let idx = match status {
            200 => 8,
            204 => 9,
            206 => 10,
            304 => 11,
            400 => 12,
            404 => 13,
            500 => 14,
            _ => 0,
        };
        if idx != 0 {
            out.push(0x80 | idx);
            return;
        }
        debug_assert!((100..1000).contains(&status));
        let d = |n: u16| b'0' + (n % 10) as u8;
        // Literal without indexing, name index 8 (`:status`), three raw digits.
        out.extend_from_slice(&[0x08, 3, d(status / 100), d(status / 10), d(status)]);
    }

    /// Appends a field; the name is written in lowercase (RFC 9113 §8.2.1).
    pub fn field(&mut self, name: &[u8], value: &[u8], out: &mut Vec<u8>) {
        let mut lower = [0u8; 64];
        let name = match lower.get_mut(..name.len()) {
            Some(buf) => {
                for (d, s) in buf.iter_mut().zip(name) {
                    *d = s.to_ascii_lowercase();
                }
                &*buf
            }
            None => {
                // A long name: no static entry is that long; a raw lowercase literal.
                out.push(0);
                integer(name.len(), 7, 0, out);
                out.extend(name.iter().map(u8::to_ascii_lowercase));
                string(value, out);
                return;
            }
        };
        match static_name(name) {
            Some(idx) => integer(idx, 4, 0, out),
            None => {
                out.push(0);
                string(name, out);
            }
        }
        string(value, out);
    }
}

/// A string literal (§5.2), Huffman-coded when that is shorter.
fn string(s: &[u8], out: &mut Vec<u8>) {
    let h = huffman::encoded_len(s);
    if h < s.len() {
        integer(h, 7, 0x80, out);
        huffman::encode(s, out);
    } else {
        integer(s.len(), 7, 0, out);
        out.extend_from_slice(s);
    }
}

/// A prefixed integer (§5.1) whose first byte carries `flags` above the prefix.
fn integer(mut v: usize, prefix: u8, flags: u8, out: &mut Vec<u8>) {
    let max = (1usize << prefix) - 1;
    if v < max {
        out.push(flags | v as u8);
        return;
    }
    out.push(flags | max as u8);
    v -= max;
    while v >= 0x80 {
        out.push(0x80 | (v & 0x7f) as u8);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The static-table index of a (lowercase) response field name.
fn static_name(name: &[u8]) -> Option<usize> {
    Some(match name {
        b"accept-ranges" => 18,
        b"access-control-allow-origin" => 20,
        b"age" => 21,
        b"allow" => 22,
        b"cache-control" => 24,
        b"content-disposition" => 25,
        b"content-encoding" => 26,
        b"content-language" => 27,
        b"content-length" => 28,
        b"content-location" => 29,
        b"content-range" => 30,
        b"content-type" => 31,
        b"date" => 33,
        b"etag" => 34,
        b"expires" => 36,
        b"last-modified" => 44,
        b"link" => 45,
        b"location" => 46,
        b"proxy-authenticate" => 48,
        b"refresh" => 52,
        b"retry-after" => 53,
        b"server" => 54,
        b"set-cookie" => 55,
        b"strict-transport-security" => 56,
        b"vary" => 59,
        b"via" => 60,
        b"www-authenticate" => 61,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::decoder::{Decoder, HeaderList};
    use super::super::table::STATIC;
    use super::*;

    #[test]
    fn static_names_match_the_table() {
        for (i, (name, _)) in STATIC.iter().enumerate() {
            if let Some(idx) = static_name(name) {
                assert_eq!(idx, i + 1, "{}", String::from_utf8_lossy(name));
            }
        }
    }

    #[test]
    fn rfc7541_c1_integers() {
        let cases: &[(usize, u8, &[u8])] = &[
            (10, 5, &[0x0a]),
            (1337, 5, &[0x1f, 0x9a, 0x0a]),
            (42, 8, &[0x2a]),
            (31, 5, &[0x1f, 0x00]),
        ];
        for &(v, prefix, want) in cases {
            let mut out = Vec::new();
            integer(v, prefix, 0, &mut out);
            assert_eq!(out, want, "{v}");
        }
    }

    #[test]
    fn response_round_trips_through_the_decoder() {
        let mut e = Encoder::new();
        let mut out = Vec::new();
        e.table_size_changed();
        e.begin(&mut out);
        assert_eq!(out, [0x20]);
        for status in [200, 404, 302, 103, 999] {
            e.status(status, &mut out);
        }
        let long = "X-".repeat(40);
        let fields: &[(&str, &str)] = &[
            ("Content-Type", "text/html; charset=utf-8"),
            ("content-length", "1024"),
            ("X-Request-Id", "0123456789abcdef"),
            (&long, "v"),
            ("set-cookie", ""),
            ("vary", "\u{e9}t\u{e9}"),
        ];
        for (n, v) in fields {
            e.field(n.as_bytes(), v.as_bytes(), &mut out);
        }
        let mut d = Decoder::new(4096);
        let mut list = HeaderList::new(16 * 1024, 96, 4096);
        d.decode(&out, &mut list).expect("decodes");
        let got: Vec<(Vec<u8>, Vec<u8>)> =
            list.iter().map(|(n, v)| (n.to_vec(), v.to_vec())).collect();
        let mut want: Vec<(Vec<u8>, Vec<u8>)> = ["200", "404", "302", "103", "999"]
            .iter()
            .map(|s| (b":status".to_vec(), s.as_bytes().to_vec()))
            .collect();
        want.extend(
            fields
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase().into_bytes(), v.as_bytes().to_vec())),
        );
        assert_eq!(got, want);
    }
}
