//! Property: any bytes a dnstap collector sends during the Frame Streams handshake (ACCEPT)
//! or at its end (FINISH) are read without panicking, within the 512-byte control bound, and
//! only a well-formed frame of the kind expected is taken. Threat: a collector (or whatever
//! listens where `[dnstap]` points) that crashes or wedges labgate's writer.
#![no_main]
use labgate_dnstap::frame::{Control, expect, parse};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = parse(data);
    for want in [Control::Accept, Control::Finish] {
        if expect(&mut &data[..], want).is_ok() {
            // Taken: the escape, a length within bounds, the kind wanted.
            assert_eq!(data[..4], [0; 4]);
            let len = u32::from_be_bytes([data[4], data[5], data[6], data[7]]) as usize;
            assert!(len <= 512);
            assert_eq!(parse(&data[8..8 + len]).map(|p| p.0), Ok(want));
        }
    }
});
