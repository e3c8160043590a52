//! Property (differential): for any bytes as a UDP query, from a client of each view and from
//! a stranger, whenever the fast path answers, its bytes are exactly the general path's.
//! Threat: a precompiled answer that says something the resolver's real logic would not.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| labgate_dns::fuzzing::fast_matches_general(data));
