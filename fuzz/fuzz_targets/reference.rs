//! Image references: one that parses prints in a form that parses back to it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use peerpull_oci::Reference;

fuzz_target!(|input: &str| {
    if let Ok(reference) = input.parse::<Reference>() {
        let written = reference.to_string();
        assert_eq!(written.parse::<Reference>().as_ref(), Ok(&reference), "{input:?} was written as {written:?}");
    }
});
