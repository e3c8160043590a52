//! Property: any bytes parse as a blocklist in every format without panicking, and a listed
//! name blocks its subdomains. Threat: a hostile or broken downloaded list that crashes the
//! resolver or silently blocks nothing.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| labgate_config::fuzzing::blocklist_bytes(data));
