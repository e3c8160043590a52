//! Property: arbitrary text as a configuration never panics `parse` or `compile`; a compiled
//! snapshot's own CIDRs match a network. Threat: a config pushed to Git that crashes the
//! reload task (and with it the appliance).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| labgate_config::fuzzing::compile_bytes(data));
