//! Property: any bytes as a DNS query, from a client of each view and from a stranger, go
//! through labgate's real handler without panicking, and every response parses and carries
//! the query's ID. Threat: a packet from the LAN that crashes or confuses the resolver.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| labgate_dns::fuzzing::handle_bytes(data));
