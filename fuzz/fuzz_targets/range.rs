//! `Range` and `Content-Range` values: a range that parses lies within the content.

#![no_main]

use libfuzzer_sys::fuzz_target;
use peerpull_oci::ByteRange;

fuzz_target!(|input: (u64, &str)| {
    let (size, value) = input;
    if let Ok(range) = ByteRange::parse(value, size) {
        assert!(range.start <= range.end_inclusive && range.end_inclusive < size, "{value:?} of {size}: {range:?}");
    }
    if let Ok((range, total)) = ByteRange::parse_content_range(value) {
        assert!(range.start <= range.end_inclusive, "{value:?}: {range:?}");
        if let Some(total) = total {
            assert!(range.end_inclusive < total, "{value:?}: {range:?} of {total}");
        }
    }
});
