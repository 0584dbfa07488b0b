//! Tests for one-level manifest and index parsing.
#![allow(clippy::unwrap_used)]

use oci_spec::image::{
    Arch, DescriptorBuilder, ImageIndexBuilder, ImageManifestBuilder, MediaType, Os, PlatformBuilder,
};

use super::*;
use crate::descriptor::Platform;
use crate::digest::Digest;

fn d(s: &str) -> Digest {
    Digest::sha256_of(s.as_bytes())
}

fn oci_desc(media_type: MediaType, content: &str, size: u64) -> oci_spec::image::Descriptor {
    DescriptorBuilder::default()
        .media_type(media_type)
        .digest(oci_spec::image::Digest::from(&d(content)))
        .size(size)
        .build()
        .unwrap()
}

fn oci_manifest() -> Vec<u8> {
    let m = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(oci_desc(MediaType::ImageConfig, "config", 10))
        .layers(vec![oci_desc(MediaType::ImageLayerGzip, "l1", 100), oci_desc(MediaType::ImageLayerZstd, "l2", 200)])
        .build()
        .unwrap();
    m.to_string().unwrap().into_bytes()
}

fn oci_index() -> Vec<u8> {
    let amd64 = PlatformBuilder::default().os(Os::Linux).architecture(Arch::Amd64).build().unwrap();
    let arm = PlatformBuilder::default().os(Os::Linux).architecture(Arch::ARM).variant("v7").build().unwrap();
    let mut m1 = oci_desc(MediaType::ImageManifest, "m-amd64", 500);
    m1.set_platform(Some(amd64));
    let mut m2 = oci_desc(MediaType::ImageManifest, "m-arm", 501);
    m2.set_platform(Some(arm));
    let i = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![m1, m2])
        .build()
        .unwrap();
    i.to_string().unwrap().into_bytes()
}

fn docker_list() -> String {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[
            {{"mediaType":"{}","digest":"{}","size":7,"platform":{{"architecture":"armbe","os":"linux","os.version":"x"}}}}]}}"#,
        media::DOCKER_MANIFEST_LIST,
        media::DOCKER_MANIFEST,
        d("m")
    )
}

fn docker_manifest() -> String {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","size":3,"digest":"{}"}},
            "layers":[{{"mediaType":"{}","size":9,"digest":"{}","urls":["https://x"]}}]}}"#,
        media::DOCKER_MANIFEST,
        media::DOCKER_CONFIG,
        d("c"),
        media::DOCKER_LAYER_FOREIGN,
        d("f")
    )
}

#[test]
fn oci_manifest_yields_config_then_layers() {
    let m = Manifest::parse(&oci_manifest(), media::OCI_MANIFEST).unwrap();
    assert_eq!(m.kind, Kind::Manifest);
    assert_eq!(m.media_type, media::OCI_MANIFEST);
    assert_eq!(
        m.children,
        vec![
            Descriptor::new(d("config"), 10, media::OCI_CONFIG),
            Descriptor::new(d("l1"), 100, media::OCI_LAYER_GZIP),
            Descriptor::new(d("l2"), 200, media::OCI_LAYER_ZSTD),
        ]
    );
}

#[test]
fn oci_index_yields_manifests_with_platforms() {
    let kids = children(&oci_index(), media::OCI_INDEX).unwrap();
    assert_eq!(kids.len(), 2);
    assert_eq!(kids[0].platform, Some(Platform::new("linux", "amd64")));
    assert_eq!(kids[1].platform, Some(Platform::new("linux", "arm").with_variant("v7")));
    assert_eq!(kids[1].digest, d("m-arm"));
    assert_eq!(kids[1].size, 501);
}

#[test]
fn docker_shapes_parse_alike() {
    let list = Manifest::parse(docker_list().as_bytes(), media::DOCKER_MANIFEST_LIST).unwrap();
    assert_eq!(list.kind, Kind::Index);
    // Platform strings are kept verbatim (oci-spec would turn "armbe" into "arm64be").
    assert_eq!(list.children[0].platform, Some(Platform::new("linux", "armbe")));
    let m = Manifest::parse(docker_manifest().as_bytes(), media::DOCKER_MANIFEST).unwrap();
    assert_eq!(m.kind, Kind::Manifest);
    assert_eq!(m.children[1], Descriptor::new(d("f"), 9, media::DOCKER_LAYER_FOREIGN));
}

#[test]
fn sniffs_when_the_media_type_is_missing() {
    // Unknown declared type: the embedded one decides.
    let m = Manifest::parse(docker_list().as_bytes(), "").unwrap();
    assert_eq!((m.kind, m.media_type.as_str()), (Kind::Index, media::DOCKER_MANIFEST_LIST));
    // Neither: the shape decides, and the OCI type is assumed.
    let bare_index =
        format!(r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"x","digest":"{}","size":1}}]}}"#, d("a"));
    let m = Manifest::parse(bare_index.as_bytes(), "application/json").unwrap();
    assert_eq!((m.kind, m.media_type.as_str()), (Kind::Index, media::OCI_INDEX));
    let bare_manifest = format!(r#"{{"config":{{"mediaType":"x","digest":"{}","size":1}}}}"#, d("a"));
    let m = Manifest::parse(bare_manifest.as_bytes(), "").unwrap();
    assert_eq!((m.kind, m.children.len()), (Kind::Manifest, 1));
    // Declared type with parameters.
    let m = Manifest::parse(&oci_manifest(), "application/vnd.oci.image.manifest.v1+json; charset=utf-8").unwrap();
    assert_eq!(m.media_type, media::OCI_MANIFEST);
}

#[test]
fn empty_index_has_no_children() {
    assert_eq!(children(br#"{"schemaVersion":2,"manifests":[]}"#, media::OCI_INDEX).unwrap(), vec![]);
}

#[test]
fn refuses_ambiguous_and_mismatched_documents() {
    let both = format!(r#"{{"manifests":[],"config":{{"mediaType":"x","digest":"{}","size":1}}}}"#, d("a"));
    assert!(matches!(Manifest::parse(both.as_bytes(), media::OCI_MANIFEST), Err(ManifestError::Ambiguous)));
    assert!(matches!(Manifest::parse(br#"{"manifests":[],"layers":[]}"#, ""), Err(ManifestError::Ambiguous)));
    assert!(matches!(
        Manifest::parse(docker_list().as_bytes(), media::OCI_MANIFEST),
        Err(ManifestError::Mismatch { .. })
    ));
    assert!(matches!(Manifest::parse(&oci_index(), media::OCI_MANIFEST), Err(ManifestError::Mismatch { .. })));
}

#[test]
fn refuses_what_is_not_a_supported_manifest() {
    type Check = fn(&ManifestError) -> bool;
    let cases: Vec<(&[u8], &str, Check)> = vec![
        (b"not json", "", |e| matches!(e, ManifestError::NotAnObject)),
        (b"{not json", "", |e| matches!(e, ManifestError::Json(_))),
        (b"[]", "", |e| matches!(e, ManifestError::NotAnObject)),
        (b"", "", |e| matches!(e, ManifestError::NotAnObject)),
        (br#"{"manifests":[],"manifests":[]}"#, "", |e| matches!(e, ManifestError::Json(_))),
        (b"{}", "", |e| matches!(e, ManifestError::UnknownKind)),
        (b"{}", media::OCI_INDEX, |e| matches!(e, ManifestError::Missing { field: "manifests", .. })),
        (br#"{"layers":[]}"#, media::OCI_MANIFEST, |e| matches!(e, ManifestError::Missing { field: "config", .. })),
        (br#"{"schemaVersion":1,"fsLayers":[]}"#, "", |e| matches!(e, ManifestError::MediaType { .. })),
        (b"{}", media::DOCKER_MANIFEST_V1_SIGNED, |e| matches!(e, ManifestError::MediaType { .. })),
        (b"{}", media::OCI_LAYER_GZIP, |e| matches!(e, ManifestError::MediaType { .. })),
        (b"{}", media::OCI_CONFIG, |e| matches!(e, ManifestError::MediaType { .. })),
        (br#"{"mediaType":"application/vnd.oci.empty.v1+json"}"#, "", |e| matches!(e, ManifestError::MediaType { .. })),
        (br#"{"manifests":[{"mediaType":"x","digest":"sha256:00","size":1}]}"#, "", |e| {
            matches!(e, ManifestError::Json(_))
        }),
        (br#"{"manifests":[{"mediaType":"x","digest":"md5:00","size":1}]}"#, "", |e| {
            matches!(e, ManifestError::Json(_))
        }),
        (br#"{"manifests":{}}"#, "", |e| matches!(e, ManifestError::Json(_))),
    ];
    for (bytes, media_type, expected) in cases {
        let err = Manifest::parse(bytes, media_type).unwrap_err();
        assert!(expected(&err), "{} as {media_type:?} gave {err:?}", String::from_utf8_lossy(bytes));
    }
}
