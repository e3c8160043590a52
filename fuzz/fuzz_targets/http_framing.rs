//! Property: any bytes through the request and response head parsers and the chunked scanner
//! neither panic nor claim bytes they were not given; the fast path only takes requests whose
//! end it knows. Threat: request smuggling or a crash at the edge.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| labgate_proxy::fuzzing::framing_bytes(data));
