//! The HPACK Huffman code (RFC 7541 §5.2, Appendix B): a decoder walking a nibble table built
//! at compile time from the code table, and an encoder.
//!
//! Decoding consumes four bits per step. Every code is at least five bits long, so a step
//! yields at most one octet. A string ends validly only on a code boundary followed by fewer
//! than eight padding bits, all ones (a prefix of EOS); EOS itself inside a string is an error.

/// Why a Huffman string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HuffmanError {
    /// The EOS symbol inside the string.
    Eos,
    /// Padding longer than 7 bits or not a prefix of EOS.
    Padding,
}

/// Calls `emit` with each decoded octet of `src`.
pub(crate) fn decode(src: &[u8], mut emit: impl FnMut(u8)) -> Result<(), HuffmanError> {
    let mut state = 0usize;
    for &b in src {
        for nibble in [b >> 4, b & 0xf] {
            let e = DECODE[state * 16 + usize::from(nibble)];
            if e & FAIL != 0 {
                return Err(HuffmanError::Eos);
            }
            if e & EMIT != 0 {
                emit((e >> 8) as u8);
            }
            state = (e & 0xff) as usize;
        }
    }
    if ACCEPT[state] {
        Ok(())
    } else {
        Err(HuffmanError::Padding)
    }
}

/// Length of `src` Huffman-encoded, in bytes.
pub(crate) fn encoded_len(src: &[u8]) -> usize {
    let bits: usize = src
        .iter()
        .map(|&c| usize::from(CODES[usize::from(c)].1))
        .sum();
    bits.div_ceil(8)
}

/// Appends `src` Huffman-encoded, padded with the most significant bits of EOS.
pub(crate) fn encode(src: &[u8], out: &mut Vec<u8>) {
    let mut acc = 0u64;
    let mut bits = 0u32;
    for &c in src {
        let (code, len) = CODES[usize::from(c)];
        acc = (acc << len) | u64::from(code);
        bits += u32::from(len);
        while bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    if bits > 0 {
        let pad = 8 - bits;
        out.push(((acc << pad) as u8) | ((1u8 << pad) - 1));
    }
}

/// EOS (symbol 256): thirty ones.
const EOS_CODE: (u32, u8) = (0x3fff_ffff, 30);
/// A tree child that is a symbol, not a node.
const LEAF: u16 = 0x8000;
/// A decode step that emits the octet in bits 8..16.
const EMIT: u32 = 1 << 16;
/// A decode step that met EOS.
const FAIL: u32 = 1 << 17;

/// The Huffman tree: `[node][bit]` is the next node or `LEAF | symbol`. A complete prefix code
/// of 257 symbols has exactly 256 inner nodes; node 0 is the root.
const TREE: [[u16; 2]; 256] = {
    let mut tree = [[0u16; 2]; 256];
    let mut next = 1u16;
    let mut sym = 0;
    while sym < 257 {
        let (code, len) = if sym == 256 { EOS_CODE } else { CODES[sym] };
        let mut node = 0usize;
        let mut i = len as u32;
        while i > 1 {
            i -= 1;
            let bit = ((code >> i) & 1) as usize;
            if tree[node][bit] == 0 {
                tree[node][bit] = next;
                next += 1;
            }
            node = tree[node][bit] as usize;
        }
        tree[node][(code & 1) as usize] = LEAF | sym as u16;
        sym += 1;
    }
    assert!(next == 256, "the code table is not a complete prefix code");
    tree
};

/// Per node: a string may end here (the bits since the last symbol are fewer than 8 ones).
const ACCEPT: [bool; 256] = {
    let mut accept = [false; 256];
    accept[0] = true;
    // The all-ones path from the root, seven levels deep.
    let mut node = 0usize;
    let mut depth = 0;
    while depth < 7 {
        node = TREE[node][1] as usize;
        accept[node] = true;
        depth += 1;
    }
    accept
};

/// The nibble automaton: entry `node * 16 + nibble` holds the next node (bits 0..8), an
/// emitted octet (bits 8..16, with [`EMIT`]) and [`FAIL`].
static DECODE: [u32; 256 * 16] = {
    let mut table = [0u32; 256 * 16];
    let mut node = 0;
    while node < 256 {
        let mut nibble = 0;
        while nibble < 16 {
            let mut cur = node;
            let mut entry = 0u32;
            let mut i = 4;
            while i > 0 {
                i -= 1;
                let child = TREE[cur][(nibble >> i) & 1];
                if child & LEAF != 0 {
                    let sym = (child & !LEAF) as u32;
                    if sym == 256 {
                        entry |= FAIL;
                    } else {
                        entry |= EMIT | (sym << 8);
                    }
                    cur = 0;
                } else {
                    cur = child as usize;
                }
            }
            table[node * 16 + nibble] = entry | cur as u32;
            nibble += 1;
        }
        node += 1;
    }
    table
};

/// Huffman codes of the 256 octets, RFC 7541 Appendix B (EOS, 256, is [`EOS_CODE`]).
pub(super) const CODES: [(u32, u8); 256] = [
    (0x1ff8, 13),
    (0x7fffd8, 23),
    (0xfffffe2, 28),
    (0xfffffe3, 28),
    (0xfffffe4, 28),
    (0xfffffe5, 28),
    (0xfffffe6, 28),
    (0xfffffe7, 28),
    (0xfffffe8, 28),
    (0xffffea, 24),
    (0x3ffffffc, 30),
    (0xfffffe9, 28),
    (0xfffffea, 28),
    (0x3ffffffd, 30),
    (0xfffffeb, 28),
    (0xfffffec, 28),
    (0xfffffed, 28),
    (0xfffffee, 28),
    (0xfffffef, 28),
    (0xffffff0, 28),
    (0xffffff1, 28),
    (0xffffff2, 28),
    (0x3ffffffe, 30),
    (0xffffff3, 28),
    (0xffffff4, 28),
    (0xffffff5, 28),
    (0xffffff6, 28),
    (0xffffff7, 28),
    (0xffffff8, 28),
    (0xffffff9, 28),
    (0xffffffa, 28),
    (0xffffffb, 28),
    (0x14, 6),
    (0x3f8, 10),
    (0x3f9, 10),
    (0xffa, 12),
    (0x1ff9, 13),
    (0x15, 6),
    (0xf8, 8),
    (0x7fa, 11),
    (0x3fa, 10),
    (0x3fb, 10),
    (0xf9, 8),
    (0x7fb, 11),
    (0xfa, 8),
    (0x16, 6),
    (0x17, 6),
    (0x18, 6),
    (0x0, 5),
    (0x1, 5),
    (0x2, 5),
    (0x19, 6),
    (0x1a, 6),
    (0x1b, 6),
    (0x1c, 6),
    (0x1d, 6),
    (0x1e, 6),
    (0x1f, 6),
    (0x5c, 7),
    (0xfb, 8),
    (0x7ffc, 15),
    (0x20, 6),
    (0xffb, 12),
    (0x3fc, 10),
    (0x1ffa, 13),
    (0x21, 6),
    (0x5d, 7),
    (0x5e, 7),
    (0x5f, 7),
    (0x60, 7),
    (0x61, 7),
    (0x62, 7),
    (0x63, 7),
    (0x64, 7),
    (0x65, 7),
    (0x66, 7),
    (0x67, 7),
    (0x68, 7),
    (0x69, 7),
    (0x6a, 7),
    (0x6b, 7),
    (0x6c, 7),
    (0x6d, 7),
    (0x6e, 7),
    (0x6f, 7),
    (0x70, 7),
    (0x71, 7),
    (0x72, 7),
    (0xfc, 8),
    (0x73, 7),
    (0xfd, 8),
    (0x1ffb, 13),
    (0x7fff0, 19),
    (0x1ffc, 13),
    (0x3ffc, 14),
    (0x22, 6),
    (0x7ffd, 15),
    (0x3, 5),
    (0x23, 6),
    (0x4, 5),
    (0x24, 6),
    (0x5, 5),
    (0x25, 6),
    (0x26, 6),
    (0x27, 6),
    (0x6, 5),
    (0x74, 7),
    (0x75, 7),
    (0x28, 6),
    (0x29, 6),
    (0x2a, 6),
    (0x7, 5),
    (0x2b, 6),
    (0x76, 7),
    (0x2c, 6),
    (0x8, 5),
    (0x9, 5),
    (0x2d, 6),
    (0x77, 7),
    (0x78, 7),
    (0x79, 7),
    (0x7a, 7),
    (0x7b, 7),
    (0x7ffe, 15),
    (0x7fc, 11),
    (0x3ffd, 14),
    (0x1ffd, 13),
    (0xffffffc, 28),
    (0xfffe6, 20),
    (0x3fffd2, 22),
    (0xfffe7, 20),
    (0xfffe8, 20),
    (0x3fffd3, 22),
    (0x3fffd4, 22),
    (0x3fffd5, 22),
    (0x7fffd9, 23),
    (0x3fffd6, 22),
    (0x7fffda, 23),
    (0x7fffdb, 23),
    (0x7fffdc, 23),
    (0x7fffdd, 23),
    (0x7fffde, 23),
    (0xffffeb, 24),
    (0x7fffdf, 23),
    (0xffffec, 24),
    (0xffffed, 24),
    (0x3fffd7, 22),
    (0x7fffe0, 23),
    (0xffffee, 24),
    (0x7fffe1, 23),
    (0x7fffe2, 23),
    (0x7fffe3, 23),
    (0x7fffe4, 23),
    (0x1fffdc, 21),
    (0x3fffd8, 22),
    (0x7fffe5, 23),
    (0x3fffd9, 22),
    (0x7fffe6, 23),
    (0x7fffe7, 23),
    (0xffffef, 24),
    (0x3fffda, 22),
    (0x1fffdd, 21),
    (0xfffe9, 20),
    (0x3fffdb, 22),
    (0x3fffdc, 22),
    (0x7fffe8, 23),
    (0x7fffe9, 23),
    (0x1fffde, 21),
    (0x7fffea, 23),
    (0x3fffdd, 22),
    (0x3fffde, 22),
    (0xfffff0, 24),
    (0x1fffdf, 21),
    (0x3fffdf, 22),
    (0x7fffeb, 23),
    (0x7fffec, 23),
    (0x1fffe0, 21),
    (0x1fffe1, 21),
    (0x3fffe0, 22),
    (0x1fffe2, 21),
    (0x7fffed, 23),
    (0x3fffe1, 22),
    (0x7fffee, 23),
    (0x7fffef, 23),
    (0xfffea, 20),
    (0x3fffe2, 22),
    (0x3fffe3, 22),
    (0x3fffe4, 22),
    (0x7ffff0, 23),
    (0x3fffe5, 22),
    (0x3fffe6, 22),
    (0x7ffff1, 23),
    (0x3ffffe0, 26),
    (0x3ffffe1, 26),
    (0xfffeb, 20),
    (0x7fff1, 19),
    (0x3fffe7, 22),
    (0x7ffff2, 23),
    (0x3fffe8, 22),
    (0x1ffffec, 25),
    (0x3ffffe2, 26),
    (0x3ffffe3, 26),
    (0x3ffffe4, 26),
    (0x7ffffde, 27),
    (0x7ffffdf, 27),
    (0x3ffffe5, 26),
    (0xfffff1, 24),
    (0x1ffffed, 25),
    (0x7fff2, 19),
    (0x1fffe3, 21),
    (0x3ffffe6, 26),
    (0x7ffffe0, 27),
    (0x7ffffe1, 27),
    (0x3ffffe7, 26),
    (0x7ffffe2, 27),
    (0xfffff2, 24),
    (0x1fffe4, 21),
    (0x1fffe5, 21),
    (0x3ffffe8, 26),
    (0x3ffffe9, 26),
    (0xffffffd, 28),
    (0x7ffffe3, 27),
    (0x7ffffe4, 27),
    (0x7ffffe5, 27),
    (0xfffec, 20),
    (0xfffff3, 24),
    (0xfffed, 20),
    (0x1fffe6, 21),
    (0x3fffe9, 22),
    (0x1fffe7, 21),
    (0x1fffe8, 21),
    (0x7ffff3, 23),
    (0x3fffea, 22),
    (0x3fffeb, 22),
    (0x1ffffee, 25),
    (0x1ffffef, 25),
    (0xfffff4, 24),
    (0xfffff5, 24),
    (0x3ffffea, 26),
    (0x7ffff4, 23),
    (0x3ffffeb, 26),
    (0x7ffffe6, 27),
    (0x3ffffec, 26),
    (0x3ffffed, 26),
    (0x7ffffe7, 27),
    (0x7ffffe8, 27),
    (0x7ffffe9, 27),
    (0x7ffffea, 27),
    (0x7ffffeb, 27),
    (0xffffffe, 28),
    (0x7ffffec, 27),
    (0x7ffffed, 27),
    (0x7ffffee, 27),
    (0x7ffffef, 27),
    (0x7fffff0, 27),
    (0x3ffffee, 26),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(src: &[u8]) -> Result<Vec<u8>, HuffmanError> {
        let mut v = Vec::new();
        decode(src, |c| v.push(c)).map(|()| v)
    }

    #[test]
    fn rfc7541_c4_vectors() {
        let cases: &[(&[u8], &str)] = &[
            (
                b"\xf1\xe3\xc2\xe5\xf2\x3a\x6b\xa0\xab\x90\xf4\xff",
                "www.example.com",
            ),
            (b"\xa8\xeb\x10\x64\x9c\xbf", "no-cache"),
            (b"\x25\xa8\x49\xe9\x5b\xa9\x7d\x7f", "custom-key"),
            (b"\x25\xa8\x49\xe9\x5b\xb8\xe8\xb4\xbf", "custom-value"),
        ];
        for &(enc, want) in cases {
            assert_eq!(dec(enc).as_deref(), Ok(want.as_bytes()));
            let mut out = Vec::new();
            encode(want.as_bytes(), &mut out);
            assert_eq!(out, enc);
            assert_eq!(encoded_len(want.as_bytes()), enc.len());
        }
    }

    #[test]
    fn every_octet_round_trips() {
        let all: Vec<u8> = (0..=255).collect();
        for s in [&all[..], b"", b"0", b"00000000", b"\xff\xfe\x00"] {
            let mut out = Vec::new();
            encode(s, &mut out);
            assert_eq!(out.len(), encoded_len(s));
            assert_eq!(dec(&out).as_deref(), Ok(s));
        }
    }

    #[test]
    fn s5_2_padding_and_eos() {
        // '0' is 00000: three padding bits of ones are fine, zeros are not.
        assert_eq!(dec(b"\x07").as_deref(), Ok(&b"0"[..]));
        assert_eq!(dec(b"\x00"), Err(HuffmanError::Padding));
        // A whole byte of padding (8 ones) is too long.
        assert_eq!(dec(b"\xff"), Err(HuffmanError::Padding));
        assert_eq!(dec(b"\x07\xff"), Err(HuffmanError::Padding));
        // EOS encoded in the string.
        assert_eq!(dec(b"\xff\xff\xff\xfc"), Err(HuffmanError::Eos));
    }
}
