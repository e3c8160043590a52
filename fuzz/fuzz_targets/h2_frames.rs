//! Property: any bytes after the client preface, fed to labgate's HTTP/2 core in pieces,
//! never panic, every request gets an answer, the unwritten output and unconsumed input
//! stay bounded, and a connection error sticks. Threat: a crash, unbounded memory or a
//! desynchronized connection from a hostile HTTP/2 client.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| labgate_proxy::h2::fuzzing::frames(data));
