//! Property tests over the public API: round trips, and no parser panics on any input.
#![allow(clippy::unwrap_used)]

use peerpull_oci::{
    children, media, Algorithm, ByteRange, Digest, Manifest, Reference, Registry, Request, Route, TagOrDigest,
};
use proptest::prelude::*;

fn any_digest() -> impl Strategy<Value = Digest> {
    prop_oneof![
        "[0-9a-f]{64}".prop_map(|h| (Algorithm::Sha256, h)),
        "[0-9a-f]{128}".prop_map(|h| (Algorithm::Sha512, h)),
    ]
    .prop_map(|(algorithm, hex)| Digest::new(algorithm, &hex).unwrap())
}

fn component() -> impl Strategy<Value = String> {
    "[a-z0-9]{1,6}((\\.|_|__|-{1,3})[a-z0-9]{1,6}){0,2}"
}

fn repository() -> impl Strategy<Value = String> {
    prop::collection::vec(component(), 1..4).prop_map(|c| c.join("/"))
}

fn tag() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_][a-zA-Z0-9._-]{0,40}"
}

fn registry_host() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("docker.io".to_owned()),
        Just("localhost".to_owned()),
        "localhost:[1-9][0-9]{0,3}",
        "[a-z][a-z0-9]{0,8}\\.(io|com|example)(:[1-9][0-9]{0,3})?",
        "127\\.0\\.0\\.[1-9]:[1-9][0-9]{0,3}",
    ]
}

/// Every character class that matters to the grammars, in any order.
fn tricky_text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9/:@.%_\\-?&=#\\\\ \\x00é]{0,80}"
}

proptest! {
    #[test]
    fn digest_display_parses_back(d in any_digest()) {
        let again: Digest = d.to_string().parse().unwrap();
        prop_assert_eq!(&again, &d);
        prop_assert_eq!(serde_json::from_str::<Digest>(&serde_json::to_string(&d).unwrap()).unwrap(), d);
    }

    #[test]
    fn digest_of_bytes_parses_back(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        for d in [Digest::sha256_of(&bytes), Digest::sha512_of(&bytes)] {
            prop_assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
        }
    }

    #[test]
    fn digest_parse_never_panics_and_is_exact(s in "\\PC{0,140}", t in "sha(256|512):[0-9a-fA-F]{60,130}") {
        for input in [s, t] {
            if let Ok(d) = input.parse::<Digest>() {
                prop_assert_eq!(d.as_str(), input.as_str());
                prop_assert_eq!(d.hex().len(), d.algorithm().hex_len());
            }
        }
    }

    #[test]
    fn verifier_accepts_any_chunking_and_rejects_any_change(
        bytes in prop::collection::vec(any::<u8>(), 1..2048),
        split in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
    ) {
        let d = Digest::sha256_of(&bytes);
        let at = split.index(bytes.len() + 1);
        let mut v = d.verifier();
        v.update(&bytes[..at]);
        v.update(&bytes[at..]);
        prop_assert!(v.finish());
        let mut changed = bytes.clone();
        changed[flip.index(bytes.len())] ^= 1;
        let mut v = d.verifier();
        v.update(&changed);
        prop_assert!(v.verify().is_err());
    }

    #[test]
    fn reference_canonical_form_parses_back(
        host in registry_host(),
        repo in repository(),
        tag in prop::option::of(tag()),
        digest in prop::option::of(any_digest()),
    ) {
        let mut input = format!("{host}/{repo}");
        if let Some(t) = &tag { input = format!("{input}:{t}"); }
        if let Some(d) = &digest { input = format!("{input}@{d}"); }
        let r: Reference = input.parse().unwrap();
        let again: Reference = r.to_string().parse().unwrap();
        prop_assert_eq!(&again, &r);
        prop_assert_eq!(again.to_string(), r.to_string());
        prop_assert_eq!(r.registry(), host.as_str());
        prop_assert_eq!(r.digest(), digest.as_ref());
        if host != "docker.io" || repo.contains('/') {
            prop_assert_eq!(r.repository(), repo.as_str());
        }
        let expect_tag = tag.or_else(|| digest.is_none().then(|| "latest".to_owned()));
        prop_assert_eq!(r.tag(), expect_tag.as_deref());
    }

    #[test]
    fn reference_parse_never_panics(s in tricky_text()) {
        if let Ok(r) = s.parse::<Reference>() {
            prop_assert_eq!(r.to_string().parse::<Reference>().unwrap(), r);
        }
    }

    #[test]
    fn path_round_trips(
        name in repository(),
        target in prop_oneof![tag().prop_map(TagOrDigest::Tag), any_digest().prop_map(TagOrDigest::Digest)],
        blob in any_digest(),
        ns in prop::option::of(registry_host()),
    ) {
        let routes = [
            Route::Base,
            Route::Manifest { name: name.clone(), reference: target },
            Route::Blob { name: name.clone(), digest: blob.clone() },
            Route::Referrers { name, digest: blob },
        ];
        for route in routes {
            let request = Request { route, ns: ns.clone() };
            prop_assert_eq!(Request::parse(&request.to_path_and_query()).unwrap(), request);
        }
    }

    #[test]
    fn path_parse_never_panics_or_lets_anything_escape(rest in tricky_text()) {
        for input in [format!("/v2/{rest}"), format!("/v2/{rest}/manifests/latest"), rest.clone()] {
            match Request::parse(&input) {
                Ok(request) => {
                    if let Some(name) = request.route.name() {
                        prop_assert!(!name.starts_with('/') && !name.ends_with('/'));
                        prop_assert!(name.split('/').all(|c| !c.is_empty() && c != "." && c != ".."));
                        prop_assert!(!name.contains(['%', '\\', '\0', '?', '#', ' ']));
                    }
                }
                Err(e) => prop_assert!([400, 404].contains(&e.status())),
            }
        }
    }

    #[test]
    fn range_renders_and_parses_back(size in 1u64..u64::MAX, a in any::<u64>(), b in any::<u64>()) {
        let (start, end) = (a.min(b) % size, a.max(b) % size);
        let Some(range) = ByteRange::new(start.min(end), start.max(end)) else { unreachable!() };
        prop_assert_eq!(ByteRange::parse(&range.header_value(), size).unwrap(), range);
        prop_assert_eq!(ByteRange::parse_content_range(&range.content_range(size)).unwrap(), (range, Some(size)));
    }

    #[test]
    fn range_parse_never_panics_and_stays_in_bounds(s in "(bytes|Bytes|x)?=?[0-9 ,\\-]{0,30}", t in "\\PC{0,40}", size in any::<u64>()) {
        for input in [s.as_str(), t.as_str()] {
            if let Ok(r) = ByteRange::parse(input, size) {
                prop_assert!(r.start <= r.end_inclusive && r.end_inclusive < size);
            }
            let _ = ByteRange::parse_content_range(input);
        }
    }

    #[test]
    fn registry_parse_never_panics(s in "(https?://)?[a-zA-Z0-9.:\\[\\]/_\\-%]{0,40}") {
        if let Ok(r) = s.parse::<Registry>() {
            prop_assert_eq!(r.to_string().parse::<Registry>().unwrap(), r);
        }
    }

    #[test]
    fn manifest_parse_never_panics(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        json in "\\{(\"(mediaType|manifests|layers|config|schemaVersion|digest|size|platform)\":(\\[|\\{|\"[a-z0-9:./+]{0,20}\"|[0-9]{1,3}|null|,|\\]|\\}){0,6}){0,4}",
        media_type in prop::sample::select(vec!["", media::OCI_INDEX, media::OCI_MANIFEST, media::DOCKER_MANIFEST_LIST, media::OCI_LAYER]),
    ) {
        for input in [&bytes[..], json.as_bytes()] {
            if let Ok(m) = Manifest::parse(input, media_type) {
                prop_assert!(media::is_manifest_or_index(&m.media_type));
            }
            let _ = children(input, media_type);
        }
    }
}
