//! Property: any Host header or SNI normalizes without panicking to a lower-case, port-free,
//! idempotent name. Threat: a request that crashes routing or routes two spellings apart.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| labgate_config::fuzzing::normalize_host_bytes(data));
