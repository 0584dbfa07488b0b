//! A provider batch another node sends (the batch protocol): decoding never
//! panics, stays within its limits, and what decodes encodes back the same.

#![no_main]

use libfuzzer_sys::fuzz_target;
use peerpull_routing::fuzzing::batch;

fuzz_target!(|bytes: &[u8]| {
    if let Some((stored, removed, addresses)) = batch(bytes) {
        assert!(stored + removed <= 8192 && addresses <= 8, "{stored} + {removed} keys, {addresses} addresses");
    }
});
