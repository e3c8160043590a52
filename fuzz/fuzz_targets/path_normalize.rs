//! Property: any request path normalizes for routing without panicking to a path with no
//! empty, `.` or `..` segment. Threat: a spelling of `/admin` that reaches another prefix's
//! service (and its policy) while the backend reads it as `/admin`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| labgate_config::fuzzing::normalize_path_bytes(data));
