//! HPACK (RFC 7541) for HTTP/2 field blocks: a decoder with a bounded dynamic table that
//! decodes into a per-connection [`HeaderList`], and an encoder for response heads that needs
//! no table.
//!
//! Written here rather than taken from a crate. Checked (their docs, 2026-12): `hpack` 0.3
//! and its fork `loona-hpack` 0.4 hand decoded fields out as `Cow`s, owned (a `Vec`) for
//! every Huffman-coded string, with no bound on the decoded list; `httlib-hpack` 0.1
//! decodes into a `Vec` of owned `(name, value, flags)`. Browsers Huffman-code nearly every
//! literal, so each would allocate per request. The `h2` crate's module is private.

mod decoder;
mod encoder;
mod huffman;
mod table;

pub use decoder::{Decoder, HeaderList, HpackError};
pub use encoder::Encoder;
