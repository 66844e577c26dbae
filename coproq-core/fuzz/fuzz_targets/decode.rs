//! Fuzzes the frame reader and the message decoder with arbitrary byte streams:
//! `cargo +nightly fuzz run decode` from `coproq-core/`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    coproq_core::__fuzz::decode_stream(data);
});
