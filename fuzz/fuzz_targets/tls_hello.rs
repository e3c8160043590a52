//! Property: any bytes through labgate's ClientHello reader never panic, and whenever it and
//! rustls both read a whole ClientHello they name the same server. Threat: a crash at the
//! edge before TLS, or an unknown-name alert for a name rustls would have served.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| labgate_proxy::fuzzing::client_hello(data));
