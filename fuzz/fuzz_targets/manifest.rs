//! Manifests and indexes, under each media type a registry may declare:
//! parsing never panics, and what parses has the children its kind needs.

#![no_main]

use libfuzzer_sys::fuzz_target;
use peerpull_oci::{media, Kind, Manifest};

const DECLARED: [&str; 6] = [
    "",
    media::OCI_MANIFEST,
    media::OCI_INDEX,
    media::DOCKER_MANIFEST,
    media::DOCKER_MANIFEST_LIST,
    media::OCI_LAYER_GZIP,
];

fuzz_target!(|input: (u8, &[u8])| {
    let (which, bytes) = input;
    let declared = DECLARED[usize::from(which) % DECLARED.len()];
    if let Ok(manifest) = Manifest::parse(bytes, declared) {
        if manifest.kind == Kind::Manifest {
            assert!(!manifest.children.is_empty(), "a manifest without its config");
        }
        assert!(media::is_manifest_or_index(&manifest.media_type), "{}", manifest.media_type);
    }
});
