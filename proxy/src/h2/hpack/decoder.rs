//! The HPACK decoder (RFC 7541 §3, §6) and the per-connection list it decodes into.
//!
//! SECURITY: decoded bytes go into a buffer allocated once per connection and never grown.
//! A block whose fields exceed the list limits keeps decoding (the dynamic table must stay in
//! step with the peer's encoder) but keeps no more fields, so an HPACK bomb costs CPU bounded
//! by the block's encoded size and no memory.

use super::huffman;
use super::table::{Dynamic, ENTRY_OVERHEAD, STATIC};

/// Why a field block could not be decoded: a connection error of type COMPRESSION_ERROR
/// (RFC 9113 §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HpackError {
    /// The block ends inside a field representation.
    #[error("hpack block ends inside a field")]
    Truncated,
    /// An integer longer than five bytes.
    #[error("hpack integer too large")]
    Integer,
    /// Index 0, or beyond the static and dynamic tables.
    #[error("hpack index out of range")]
    Index,
    /// A Huffman string with EOS or bad padding (§5.2).
    #[error("invalid hpack huffman string")]
    Huffman,
    /// A dynamic table size update above our SETTINGS_HEADER_TABLE_SIZE (§6.3).
    #[error("hpack table size update above the advertised limit")]
    TableSize,
    /// A dynamic table size update after a field (§4.2).
    #[error("hpack table size update after a field")]
    UpdatePosition,
}

/// The decoding side of one connection's HPACK context.
#[derive(Debug)]
pub struct Decoder {
    table: Dynamic,
}

impl Decoder {
    /// A decoder whose dynamic table may grow to `table_size` bytes, the
    /// SETTINGS_HEADER_TABLE_SIZE we advertise (4096 unless advertised otherwise).
    pub fn new(table_size: usize) -> Self {
        Self {
            table: Dynamic::new(table_size),
        }
    }

    /// Decodes one whole field block into `list` (cleared first).
    ///
    /// # Errors
    ///
    /// [`HpackError`]: the connection's compression context is lost; close it.
    pub fn decode(&mut self, block: &[u8], list: &mut HeaderList) -> Result<(), HpackError> {
        list.clear();
        let mut i = 0;
        let mut fields = false;
        while let Some(&b) = block.get(i) {
            if b & 0x80 != 0 {
                let idx = integer(block, &mut i, 7)?;
                list.begin();
                let (n, v) = self.entry(idx)?;
                list.push_raw(n);
                list.end_name();
                list.push_raw(v);
                list.end_field();
                fields = true;
            } else if b & 0x40 != 0 {
                self.literal(block, &mut i, 6, true, list)?;
                fields = true;
            } else if b & 0x20 != 0 {
                if fields {
                    return Err(HpackError::UpdatePosition);
                }
                let size = integer(block, &mut i, 5)?;
                if size > self.table.limit() {
                    return Err(HpackError::TableSize);
                }
                self.table.set_max(size);
            } else {
                self.literal(block, &mut i, 4, false, list)?;
                fields = true;
            }
        }
        Ok(())
    }

    /// A literal field (§6.2): name by index or literal, literal value.
    fn literal(
        &mut self,
        block: &[u8],
        i: &mut usize,
        prefix: u8,
        index: bool,
        list: &mut HeaderList,
    ) -> Result<(), HpackError> {
        let idx = integer(block, i, prefix)?;
        list.begin();
        if idx == 0 {
            string(block, i, list)?;
        } else {
            let (n, _) = self.entry(idx)?;
            list.push_raw(n);
        }
        list.end_name();
        string(block, i, list)?;
        if index {
            let (n, v, lens) = list.current();
            self.table.insert(n, v, lens);
        }
        list.end_field();
        Ok(())
    }

    fn entry(&self, idx: usize) -> Result<(&[u8], &[u8]), HpackError> {
        match idx {
            0 => Err(HpackError::Index),
            1..=61 => Ok(STATIC[idx - 1]),
            _ => self.table.get(idx - 62).ok_or(HpackError::Index),
        }
    }
}

/// Decoded fields of one field block, in a buffer allocated once: `(offset, length)` slices.
///
/// A block that goes over the limits is marked [`too large`](Self::too_large) and keeps the
/// fields that fit; the bytes kept never exceed the list size limit.
#[derive(Debug)]
pub struct HeaderList {
    buf: Vec<u8>,
    /// The most `buf` holds: the decoded-size bound.
    cap: usize,
    fields: Vec<Field>,
    /// Size of the kept fields per RFC 9113 §6.5.2 (name + value + 32 each).
    size: usize,
    regular: usize,
    pseudo: usize,
    max_size: usize,
    max_fields: usize,
    too_large: bool,
    /// The field being decoded: where it starts, its bytes so far (kept or not), its name's
    /// length, and whether bytes were dropped for want of room.
    start: usize,
    len: usize,
    name_len: usize,
    overflow: bool,
}

/// Pseudo-header fields a list keeps beyond the regular ones (five are defined; more is
/// malformed anyway).
const MAX_PSEUDO: usize = 8;

/// One decoded field.
#[derive(Debug, Clone, Copy)]
struct Field {
    off: u32,
    name_len: u32,
    value_len: u32,
}

impl HeaderList {
    /// A list for blocks of at most `max_size` bytes (RFC 9113 §6.5.2) and `max_fields`
    /// regular fields; `table_size` is the decoder's, whose entries pass through the list.
    pub fn new(max_size: usize, max_fields: usize, table_size: usize) -> Self {
        // Room for the kept fields plus one field as large as a table entry, which must be
        // decoded whole to be inserted into the table.
        let cap = max_size + table_size + 64;
        Self {
            buf: Vec::with_capacity(cap),
            cap,
            fields: Vec::with_capacity(max_fields + MAX_PSEUDO),
            size: 0,
            regular: 0,
            pseudo: 0,
            max_size,
            max_fields,
            too_large: false,
            start: 0,
            len: 0,
            name_len: 0,
            overflow: false,
        }
    }

    /// Gives the buffers back (an idle connection); the next block takes them again.
    pub fn release(&mut self) {
        self.clear();
        self.buf = Vec::new();
        self.fields = Vec::new();
    }

    /// Whether the block went over the size or field-count limit.
    pub fn too_large(&self) -> bool {
        self.too_large
    }

    /// How many fields the last block decoded to.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether no field was kept.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The `i`th field: (name, value).
    pub fn get(&self, i: usize) -> Option<(&[u8], &[u8])> {
        self.fields.get(i).map(|f| self.slices(f))
    }

    /// The fields in order: (name, value).
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.fields.iter().map(|f| self.slices(f))
    }

    fn slices(&self, f: &Field) -> (&[u8], &[u8]) {
        let off = f.off as usize;
        let n = off + f.name_len as usize;
        (&self.buf[off..n], &self.buf[n..n + f.value_len as usize])
    }

    fn clear(&mut self) {
        self.buf.clear();
        self.fields.clear();
        // After `release`: taken again whole, so no block decodes into a growing buffer.
        self.buf.reserve_exact(self.cap);
        self.fields.reserve_exact(self.max_fields + MAX_PSEUDO);
        self.size = 0;
        self.regular = 0;
        self.pseudo = 0;
        self.too_large = false;
    }

    fn begin(&mut self) {
        self.start = self.buf.len();
        self.len = 0;
        self.overflow = false;
    }

    fn push_raw(&mut self, b: &[u8]) {
        let room = self.cap - self.buf.len();
        if b.len() > room {
            self.overflow = true;
        }
        self.buf.extend_from_slice(&b[..b.len().min(room)]);
        self.len += b.len();
    }

    fn push(&mut self, c: u8) {
        if self.buf.len() < self.cap {
            self.buf.push(c);
        } else {
            self.overflow = true;
        }
        self.len += 1;
    }

    fn end_name(&mut self) {
        self.name_len = self.len;
    }

    /// The field being decoded as kept so far, and its true (name, value) lengths.
    fn current(&self) -> (&[u8], &[u8], (usize, usize)) {
        let lens = (self.name_len, self.len - self.name_len);
        let kept = &self.buf[self.start..];
        let n = lens.0.min(kept.len());
        (&kept[..n], &kept[n..], lens)
    }

    fn end_field(&mut self) {
        let size = self.len + ENTRY_OVERHEAD;
        let pseudo = self.buf.get(self.start) == Some(&b':') && self.name_len > 0;
        let over_count = if pseudo {
            self.pseudo >= MAX_PSEUDO
        } else {
            self.regular >= self.max_fields
        };
        if self.too_large || self.overflow || over_count || self.size + size > self.max_size {
            // SECURITY: keep nothing more of an oversized block; decoding goes on only to
            // keep the dynamic table in step.
            self.too_large = true;
            self.buf.truncate(self.start);
            return;
        }
        self.size += size;
        if pseudo {
            self.pseudo += 1;
        } else {
            self.regular += 1;
        }
        // The buffer never exceeds its capacity, which a u32 holds for any sane limit.
        self.fields.push(Field {
            off: self.start as u32,
            name_len: self.name_len as u32,
            value_len: (self.len - self.name_len) as u32,
        });
    }
}

/// A prefixed integer (§5.1) at `block[*i]`, advancing `i`.
fn integer(block: &[u8], i: &mut usize, prefix: u8) -> Result<usize, HpackError> {
    let mask = (1u8 << prefix) - 1;
    let first = *block.get(*i).ok_or(HpackError::Truncated)? & mask;
    *i += 1;
    let mut value = usize::from(first);
    if first < mask {
        return Ok(value);
    }
    // At most four continuation bytes: values up to 2^28, far beyond any length or index
    // a bounded block can hold.
    for shift in [0, 7, 14, 21] {
        let b = *block.get(*i).ok_or(HpackError::Truncated)?;
        *i += 1;
        value += usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(HpackError::Integer)
}

/// A string literal (§5.2) at `block[*i]` into the list's current field, advancing `i`.
fn string(block: &[u8], i: &mut usize, list: &mut HeaderList) -> Result<(), HpackError> {
    let huff = block.get(*i).is_some_and(|b| b & 0x80 != 0);
    let len = integer(block, i, 7)?;
    let s = block.get(*i..*i + len).ok_or(HpackError::Truncated)?;
    *i += len;
    if huff {
        huffman::decode(s, |c| list.push(c)).map_err(|_| HpackError::Huffman)
    } else {
        list.push_raw(s);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    fn fields(list: &HeaderList) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| {
                (
                    String::from_utf8_lossy(n).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect()
    }

    fn table(d: &Decoder) -> Vec<(String, String)> {
        (0..d.table.len())
            .filter_map(|i| d.table.get(i))
            .map(|(n, v)| {
                (
                    String::from_utf8_lossy(n).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect()
    }

    type Vector<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [(&'a str, &'a str)]);

    /// Decodes a sequence of blocks on one decoder, checking the fields and the table after
    /// each (RFC 7541 Appendix C).
    fn run(table_size: usize, blocks: &[Vector<'_>]) {
        let mut d = Decoder::new(table_size);
        let mut list = HeaderList::new(16 * 1024, 96, table_size);
        for (i, (block, want, want_table)) in blocks.iter().enumerate() {
            d.decode(&hex(block), &mut list).expect("decodes");
            let own = |v: &[(&str, &str)]| -> Vec<(String, String)> {
                v.iter().map(|(a, b)| ((*a).into(), (*b).into())).collect()
            };
            assert_eq!(fields(&list), own(want), "block {i}");
            assert_eq!(table(&d), own(want_table), "table after block {i}");
        }
    }

    #[test]
    fn rfc7541_c2_field_representations() {
        run(
            4096,
            &[(
                "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572",
                &[("custom-key", "custom-header")],
                &[("custom-key", "custom-header")],
            )],
        );
        run(
            4096,
            &[(
                "040c 2f73 616d 706c 652f 7061 7468",
                &[(":path", "/sample/path")],
                &[],
            )],
        );
        run(
            4096,
            &[(
                "1008 7061 7373 776f 7264 0673 6563 7265 74",
                &[("password", "secret")],
                &[],
            )],
        );
        run(4096, &[("82", &[(":method", "GET")], &[])]);
    }

    const C3_1: &[(&str, &str)] = &[
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "www.example.com"),
    ];
    const C3_2: &[(&str, &str)] = &[
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "www.example.com"),
        ("cache-control", "no-cache"),
    ];
    const C3_3: &[(&str, &str)] = &[
        (":method", "GET"),
        (":scheme", "https"),
        (":path", "/index.html"),
        (":authority", "www.example.com"),
        ("custom-key", "custom-value"),
    ];

    #[test]
    fn rfc7541_c3_requests_without_huffman() {
        run(
            4096,
            &[
                (
                    "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
                    C3_1,
                    &[(":authority", "www.example.com")],
                ),
                (
                    "8286 84be 5808 6e6f 2d63 6163 6865",
                    C3_2,
                    &[
                        ("cache-control", "no-cache"),
                        (":authority", "www.example.com"),
                    ],
                ),
                (
                    "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
                    C3_3,
                    &[
                        ("custom-key", "custom-value"),
                        ("cache-control", "no-cache"),
                        (":authority", "www.example.com"),
                    ],
                ),
            ],
        );
    }

    #[test]
    fn rfc7541_c4_requests_with_huffman() {
        run(
            4096,
            &[
                (
                    "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
                    C3_1,
                    &[(":authority", "www.example.com")],
                ),
                (
                    "8286 84be 5886 a8eb 1064 9cbf",
                    C3_2,
                    &[
                        ("cache-control", "no-cache"),
                        (":authority", "www.example.com"),
                    ],
                ),
                (
                    "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
                    C3_3,
                    &[
                        ("custom-key", "custom-value"),
                        ("cache-control", "no-cache"),
                        (":authority", "www.example.com"),
                    ],
                ),
            ],
        );
    }

    const C5_1: &[(&str, &str)] = &[
        (":status", "302"),
        ("cache-control", "private"),
        ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
        ("location", "https://www.example.com"),
    ];
    const C5_2: &[(&str, &str)] = &[
        (":status", "307"),
        ("cache-control", "private"),
        ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
        ("location", "https://www.example.com"),
    ];
    const C5_3: &[(&str, &str)] = &[
        (":status", "200"),
        ("cache-control", "private"),
        ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
        ("location", "https://www.example.com"),
        ("content-encoding", "gzip"),
        (
            "set-cookie",
            "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
        ),
    ];
    const C5_T1: &[(&str, &str)] = &[
        ("location", "https://www.example.com"),
        ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
        ("cache-control", "private"),
        (":status", "302"),
    ];
    const C5_T2: &[(&str, &str)] = &[
        (":status", "307"),
        ("location", "https://www.example.com"),
        ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
        ("cache-control", "private"),
    ];
    const C5_T3: &[(&str, &str)] = &[
        (
            "set-cookie",
            "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
        ),
        ("content-encoding", "gzip"),
        ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
    ];

    #[test]
    fn rfc7541_c5_responses_without_huffman_and_eviction() {
        run(
            256,
            &[
                (
                    "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230
                     3133 2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65
                     7861 6d70 6c65 2e63 6f6d",
                    C5_1,
                    C5_T1,
                ),
                ("4803 3330 37c1 c0bf", C5_2, C5_T2),
                (
                    "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220
                     474d 54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157
                     454f 5049 5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076
                     6572 7369 6f6e 3d31",
                    C5_3,
                    C5_T3,
                ),
            ],
        );
    }

    #[test]
    fn rfc7541_c6_responses_with_huffman_and_eviction() {
        run(
            256,
            &[
                (
                    "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0
                     82a6 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
                    C5_1,
                    C5_T1,
                ),
                ("4883 640e ffc1 c0bf", C5_2, C5_T2),
                (
                    "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b
                     d9ab 77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27
                     0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07",
                    C5_3,
                    C5_T3,
                ),
            ],
        );
    }

    #[test]
    fn rfc7541_s4_2_size_update_rules() {
        let mut d = Decoder::new(4096);
        let mut list = HeaderList::new(16 * 1024, 96, 4096);
        // Two updates at the start are fine (§4.2), then a field.
        assert_eq!(d.decode(&hex("20 3fe1 1f 82"), &mut list), Ok(()));
        // Above the advertised limit (4097 = 31 + 4066).
        assert_eq!(
            d.decode(&hex("3fe2 1f"), &mut list),
            Err(HpackError::TableSize)
        );
        // After a field.
        assert_eq!(
            d.decode(&hex("82 20"), &mut list),
            Err(HpackError::UpdatePosition)
        );
    }

    #[test]
    fn rfc7541_s5_malformed_representations() {
        let mut d = Decoder::new(4096);
        let mut list = HeaderList::new(16 * 1024, 96, 4096);
        let cases: &[(&str, HpackError)] = &[
            ("80", HpackError::Index),
            ("be", HpackError::Index),
            ("ff80808080 00", HpackError::Integer),
            ("ff", HpackError::Truncated),
            ("40 05 61", HpackError::Truncated),
            ("40 81 ff 00", HpackError::Huffman),
        ];
        for &(block, want) in cases {
            assert_eq!(d.decode(&hex(block), &mut list), Err(want), "{block}");
        }
    }

    #[test]
    fn hpack_bomb_is_cut_off_and_table_stays_in_step() {
        // One 4000-byte entry inserted, then referenced 1000 times: 4 MB decoded from 5 kB.
        let mut block = hex("40 01 61 7f a1 1e");
        block.extend(std::iter::repeat_n(b'x', 4000));
        block.extend(std::iter::repeat_n(0xbe, 1000));
        let mut d = Decoder::new(4096);
        let mut list = HeaderList::new(16 * 1024, 96, 4096);
        d.decode(&block, &mut list).expect("decodes");
        assert!(list.too_large());
        assert!(list.buf.len() <= 16 * 1024);
        assert_eq!(list.buf.capacity(), 16 * 1024 + 4096 + 64);
        // The next block still sees the entry.
        d.decode(&hex("be"), &mut list).expect("decodes");
        assert_eq!(list.get(0).map(|f| f.1.len()), Some(4000));
        assert!(!list.too_large());
    }

    #[test]
    fn field_count_limit() {
        let mut d = Decoder::new(4096);
        let mut list = HeaderList::new(16 * 1024, 96, 4096);
        d.decode(&[0xbb; 96], &mut list).expect("decodes");
        assert!(!list.too_large());
        d.decode(&[0xbb; 97], &mut list).expect("decodes");
        assert!(list.too_large());
        assert_eq!(list.len(), 96);
    }
}
