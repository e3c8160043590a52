//! Property: a well-formed query of any name, type and EDNS size gets a UDP response that is
//! one whole message within the client's size, with its OPT, truncated only when the answer
//! does not fit. Threat: a truncated answer with part of a record past its end (found by an
//! outside conformance run), or records silently left out.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| labgate_dns::fuzzing::truncation(data));
