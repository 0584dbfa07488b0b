//! Digests: one that parses prints as itself and belongs to one algorithm.

#![no_main]

use libfuzzer_sys::fuzz_target;
use peerpull_oci::Digest;

fuzz_target!(|input: &str| {
    if let Ok(digest) = input.parse::<Digest>() {
        assert_eq!(digest.to_string(), input);
        assert!(input.starts_with(digest.algorithm().as_str()));
    }
});
