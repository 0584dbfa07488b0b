//! Media types of OCI and Docker images, and what kind of content each names.
//!
//! Docker's schema 2 manifest and manifest list have the same JSON shape as
//! OCI's image manifest and index, so a mirror treats each pair alike.
//! Docker schema 1 manifests are named here only so they can be recognised
//! and refused; nothing current produces them. Comparisons ignore media type
//! parameters (`; charset=utf-8`), surrounding space and ASCII case, as
//! `Content-Type` matching should.

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI empty JSON descriptor content (`{}`), used by artifacts.
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// OCI uncompressed layer.
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI gzip layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI zstd layer.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// OCI non-distributable uncompressed layer (deprecated by the spec).
pub const OCI_LAYER_NONDISTRIBUTABLE: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar";
/// OCI non-distributable gzip layer (deprecated by the spec).
pub const OCI_LAYER_NONDISTRIBUTABLE_GZIP: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
/// OCI non-distributable zstd layer (deprecated by the spec).
pub const OCI_LAYER_NONDISTRIBUTABLE_ZSTD: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";

/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image manifest, schema 1 (unsigned); recognised, not supported.
pub const DOCKER_MANIFEST_V1: &str = "application/vnd.docker.distribution.manifest.v1+json";
/// Docker image manifest, schema 1 (signed); recognised, not supported.
pub const DOCKER_MANIFEST_V1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker uncompressed layer.
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// Docker gzip layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker zstd layer.
pub const DOCKER_LAYER_ZSTD: &str = "application/vnd.docker.image.rootfs.diff.tar.zstd";
/// Docker foreign layer (e.g. Windows base layers), fetched from its `urls`.
pub const DOCKER_LAYER_FOREIGN: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

/// Every manifest and index type a mirror serves, in preference order.
pub const MANIFEST_TYPES: [&str; 4] = [OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST];

/// An `Accept` header value asking for any manifest or index we serve.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

const LAYERS: [&str; 10] = [
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    OCI_LAYER_NONDISTRIBUTABLE,
    OCI_LAYER_NONDISTRIBUTABLE_GZIP,
    OCI_LAYER_NONDISTRIBUTABLE_ZSTD,
    DOCKER_LAYER,
    DOCKER_LAYER_GZIP,
    DOCKER_LAYER_ZSTD,
    DOCKER_LAYER_FOREIGN,
];

/// The media type without parameters or surrounding space: `a/b; x=y` → `a/b`.
pub fn essence(media_type: &str) -> &str {
    media_type.split(';').next().unwrap_or_default().trim()
}

/// Whether `media_type` is an image manifest (OCI or Docker schema 2).
pub fn is_manifest(media_type: &str) -> bool {
    is_one_of(media_type, &[OCI_MANIFEST, DOCKER_MANIFEST])
}

/// Whether `media_type` is an index (OCI image index or Docker manifest list).
pub fn is_index(media_type: &str) -> bool {
    is_one_of(media_type, &[OCI_INDEX, DOCKER_MANIFEST_LIST])
}

/// Whether `media_type` is a manifest or an index, i.e. served from `/manifests/`.
pub fn is_manifest_or_index(media_type: &str) -> bool {
    is_manifest(media_type) || is_index(media_type)
}

/// Whether `media_type` is a Docker schema 1 manifest, which we recognise but do not parse.
pub fn is_schema1(media_type: &str) -> bool {
    is_one_of(media_type, &[DOCKER_MANIFEST_V1, DOCKER_MANIFEST_V1_SIGNED])
}

/// Whether `media_type` is an image config.
pub fn is_config(media_type: &str) -> bool {
    is_one_of(media_type, &[OCI_CONFIG, DOCKER_CONFIG])
}

/// Whether `media_type` is a known image layer type.
pub fn is_layer(media_type: &str) -> bool {
    is_one_of(media_type, &LAYERS)
}

/// Whether `media_type` is a layer registries need not host (foreign or non-distributable).
pub fn is_foreign(media_type: &str) -> bool {
    is_one_of(
        media_type,
        &[
            DOCKER_LAYER_FOREIGN,
            OCI_LAYER_NONDISTRIBUTABLE,
            OCI_LAYER_NONDISTRIBUTABLE_GZIP,
            OCI_LAYER_NONDISTRIBUTABLE_ZSTD,
        ],
    )
}

fn is_one_of(media_type: &str, known: &[&str]) -> bool {
    let essence = essence(media_type);
    known.iter().any(|k| k.eq_ignore_ascii_case(essence))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        for m in [OCI_MANIFEST, DOCKER_MANIFEST] {
            assert!(is_manifest(m) && !is_index(m) && is_manifest_or_index(m), "{m}");
        }
        for m in [OCI_INDEX, DOCKER_MANIFEST_LIST] {
            assert!(is_index(m) && !is_manifest(m) && is_manifest_or_index(m), "{m}");
        }
        for m in [OCI_CONFIG, DOCKER_CONFIG] {
            assert!(is_config(m) && !is_manifest_or_index(m) && !is_layer(m), "{m}");
        }
        for m in LAYERS {
            assert!(is_layer(m) && !is_manifest_or_index(m) && !is_config(m), "{m}");
        }
        assert!(is_foreign(DOCKER_LAYER_FOREIGN) && is_foreign(OCI_LAYER_NONDISTRIBUTABLE_GZIP));
        assert!(!is_foreign(OCI_LAYER_GZIP) && !is_foreign(DOCKER_LAYER_GZIP));
        assert!(is_schema1(DOCKER_MANIFEST_V1_SIGNED) && !is_manifest(DOCKER_MANIFEST_V1));
        assert!(!is_manifest_or_index("") && !is_manifest_or_index("application/json") && !is_layer(OCI_EMPTY));
    }

    #[test]
    fn ignores_parameters_and_case() {
        assert_eq!(essence(" application/json ; charset=utf-8"), "application/json");
        assert!(is_manifest("application/vnd.oci.image.manifest.v1+json; charset=utf-8"));
        assert!(is_index("Application/Vnd.Docker.Distribution.Manifest.List.V2+JSON"));
    }

    #[test]
    fn accept_header_lists_every_manifest_type() {
        let listed: Vec<&str> = MANIFEST_ACCEPT.split(',').map(str::trim).collect();
        assert_eq!(listed, MANIFEST_TYPES);
    }
}
