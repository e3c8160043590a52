//! HPACK (RFC 7541) for HTTP/2 field blocks: a decoder with a bounded dynamic table that
//! decodes into a per-connection [`HeaderList`], and an encoder for response heads that needs
//! no table.
//!
//! Written here rather than taken from a crate: the crates checked (`hpack`, `httlib-hpack`,
//! `loona-hpack`) allocate per field (a `Vec` per name and value) or keep no decoded-size
//! bound, and the `h2` crate's module is private.

mod decoder;
mod encoder;
mod huffman;
mod table;

pub use decoder::{Decoder, HeaderList, HpackError};
pub use encoder::Encoder;
