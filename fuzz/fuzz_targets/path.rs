//! The `/v2` path grammar: any input either fails or parses to a request
//! whose written form parses back to the same request.

#![no_main]

use libfuzzer_sys::fuzz_target;
use peerpull_oci::path::Request;

fuzz_target!(|input: &str| {
    if let Ok(request) = Request::parse(input) {
        let written = request.to_path_and_query();
        assert_eq!(Request::parse(&written).as_ref(), Ok(&request), "{input:?} was written as {written:?}");
    }
});
