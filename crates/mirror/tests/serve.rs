//! The mirror serving from its own store: status codes, headers, ranges,
//! OCI error bodies, registry filtering and counting.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;

use http_body_util::BodyExt;
use peerpull_mirror::Kind;
use peerpull_mirror::{Client, Config, Identity, Metrics, Mirror, Static};
use peerpull_oci::{media, ErrorBody, ErrorCode, Mirrored, Reference, Registry};
use peerpull_store::Memory;
use support::{bytes, get, header, request, Node};

const NS: &str = "?ns=registry.example:5000";

async fn node_with_image(config: Config) -> (Node, Vec<u8>, String, Vec<u8>, String) {
    let store = Memory::new();
    let blob = bytes(200_000, 7);
    let blob_digest = store.insert(media::OCI_LAYER_GZIP, blob.clone()).digest.to_string();
    let manifest = format!(r#"{{"schemaVersion":2,"mediaType":"{}","layers":[]}}"#, media::OCI_MANIFEST).into_bytes();
    let manifest_digest = store.insert(media::OCI_MANIFEST, manifest.clone()).digest;
    let reference: Reference = "registry.example:5000/team/app:v1".parse().unwrap();
    store.tag(&reference, &manifest_digest);
    let node = Node::start(store, Static::default(), config).await;
    (node, blob, blob_digest, manifest, manifest_digest.to_string())
}

fn code(body: &[u8]) -> Option<ErrorCode> {
    ErrorBody::from_json(body).ok().and_then(|b| b.code())
}

#[tokio::test]
async fn base_endpoint() {
    let (node, ..) = node_with_image(support::config()).await;
    let (response, body) = get(&node.url("/v2/"), &[]).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(&body[..], b"{}");
    assert_eq!(header(&response, "docker-distribution-api-version"), "registry/2.0");
}

#[tokio::test]
async fn manifest_by_tag_and_by_digest() {
    let (node, _, _, manifest, manifest_digest) = node_with_image(support::config()).await;
    for path in [format!("/v2/team/app/manifests/v1{NS}"), format!("/v2/team/app/manifests/{manifest_digest}{NS}")] {
        let (response, body) = get(&node.url(&path), &[]).await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(header(&response, "content-type"), media::OCI_MANIFEST);
        assert_eq!(header(&response, "docker-content-digest"), manifest_digest);
        assert_eq!(header(&response, "content-length"), manifest.len().to_string());
        assert_eq!(body.as_ref(), manifest.as_slice());
    }
    // HEAD: the same headers, no body.
    let (response, body) = request("HEAD", &node.url(&format!("/v2/team/app/manifests/v1{NS}")), &[]).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-length"), manifest.len().to_string());
    assert!(body.is_empty());
}

#[tokio::test]
async fn blobs_whole_and_ranged() {
    let (node, blob, digest, ..) = node_with_image(support::config()).await;
    let url = node.url(&format!("/v2/team/app/blobs/{digest}{NS}"));
    let (response, body) = get(&url, &[]).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "accept-ranges"), "bytes");
    assert_eq!(header(&response, "docker-content-digest"), digest);
    assert_eq!(body.as_ref(), blob.as_slice());

    let (response, body) = get(&url, &[("range", "bytes=1000-1999")]).await.unwrap();
    assert_eq!(response.status(), 206);
    assert_eq!(header(&response, "content-range"), "bytes 1000-1999/200000");
    assert_eq!(body.as_ref(), &blob[1000..2000]);

    let (response, body) = get(&url, &[("range", "bytes=-10")]).await.unwrap();
    assert_eq!(response.status(), 206);
    assert_eq!(body.as_ref(), &blob[blob.len() - 10..]);

    let (response, body) = get(&url, &[("range", "bytes=199990-")]).await.unwrap();
    assert_eq!((response.status().as_u16(), body.len()), (206, 10));

    let (response, body) = get(&url, &[("range", "bytes=200000-")]).await.unwrap();
    assert_eq!(response.status(), 416);
    assert_eq!(header(&response, "content-range"), "bytes */200000");
    assert!(code(&body).is_some(), "416 carries an OCI error body");

    let (response, _) = get(&url, &[("range", "bytes=0-1,5-6")]).await.unwrap();
    assert_eq!(response.status(), 416, "multiple ranges are refused");
}

#[tokio::test]
async fn bad_requests_get_oci_errors() {
    let (node, ..) = node_with_image(support::config()).await;
    let cases = [
        ("/v2/team/app/blobs/sha256:abc", 400, ErrorCode::DigestInvalid),
        ("/v2/Team/app/manifests/v1", 400, ErrorCode::NameInvalid),
        ("/v2/team/../app/blobs/sha256:abc", 400, ErrorCode::NameInvalid),
        ("/v2/team%2Fapp/manifests/v1", 400, ErrorCode::NameInvalid),
        ("/v2/team/app/manifests/v1", 404, ErrorCode::ManifestUnknown),
        // The spec's only failure for a manifest request is 404, a malformed tag included.
        ("/v2/team/app/manifests/.INVALID_MANIFEST_NAME?ns=registry.example:5000", 404, ErrorCode::ManifestUnknown),
    ];
    for (path, status, expected) in cases {
        let (response, body) = get(&node.url(path), &[]).await.unwrap();
        assert_eq!(response.status(), status, "{path}");
        assert_eq!(code(&body), Some(expected), "{path}");
        assert_eq!(header(&response, "content-type"), "application/json");
    }
    let (response, body) = request("POST", &node.url("/v2/team/app/blobs/uploads/"), &[]).await.unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(code(&body), Some(ErrorCode::Unsupported));
    let missing = format!("/v2/team/app/blobs/sha256:{}{NS}", "a".repeat(64));
    let (response, body) = get(&node.url(&missing), &[]).await.unwrap();
    assert_eq!((response.status().as_u16(), code(&body)), (404, Some(ErrorCode::BlobUnknown)));
}

#[tokio::test]
async fn unmirrored_registries_and_tags_off() {
    let config = Config { mirrored: Mirrored::Only(vec![Registry::docker_hub()]), ..support::config() };
    let (node, _, digest, ..) = node_with_image(config).await;
    let (response, body) = get(&node.url(&format!("/v2/team/app/blobs/{digest}{NS}")), &[]).await.unwrap();
    assert_eq!((response.status().as_u16(), code(&body)), (404, Some(ErrorCode::BlobUnknown)));

    let config = Config { resolve_tags: false, ..support::config() };
    let (node, _, digest, _, manifest_digest) = node_with_image(config).await;
    let (response, _) = get(&node.url(&format!("/v2/team/app/manifests/v1{NS}")), &[]).await.unwrap();
    assert_eq!(response.status(), 404, "tags are not resolved");
    let by_digest = format!("/v2/team/app/manifests/{manifest_digest}{NS}");
    assert_eq!(get(&node.url(&by_digest), &[]).await.unwrap().0.status(), 200);
    let blob = format!("/v2/team/app/blobs/{digest}{NS}");
    assert_eq!(get(&node.url(&blob), &[]).await.unwrap().0.status(), 200);
}

#[tokio::test]
async fn metrics_count_hits_and_misses() {
    let (node, blob, digest, ..) = node_with_image(support::config()).await;
    get(&node.url(&format!("/v2/team/app/blobs/{digest}{NS}")), &[]).await.unwrap();
    get(&node.url(&format!("/v2/team/app/blobs/sha256:{}{NS}", "b".repeat(64))), &[]).await.unwrap();
    let metrics = node.metrics().await;
    assert!(
        metrics.contains(
            r#"peerpull_mirror_requests_total{registry="registry.example:5000",cache="hit",source="local"} 1"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains(r#"cache="miss",source=""} 1"#), "{metrics}");
    assert!(
        metrics.contains(&format!(r#"peerpull_mirror_bytes_served_total{{source="local"}} {}"#, blob.len())),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_response_counts_as_in_flight_until_its_body_is_gone() {
    let store = Memory::new();
    let digest = store.insert(media::OCI_LAYER_GZIP, bytes(100_000, 3)).digest;
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Metrics::new(&mut registry);
    let mirror =
        Mirror::new(support::config(), Identity::default(), Arc::new(store), Arc::new(Static::default()), metrics)
            .unwrap();
    let in_flight = |mirror: &Mirror, kind| mirror.stats().in_flight.iter().find(|(k, _)| *k == kind).unwrap().1;

    let uri = format!("/v2/team/app/blobs/{digest}{NS}");
    let response = mirror.handle(http::Request::get(&uri).body(()).unwrap()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(in_flight(&mirror, Kind::Local), 1, "the body is still to be sent");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.len(), 100_000);
    assert_eq!(in_flight(&mirror, Kind::Local), 0, "a sent body no longer counts");

    // An abandoned response stops counting too; a miss never counted.
    drop(mirror.handle(http::Request::get(&uri).body(()).unwrap()).await);
    let missing = format!("/v2/team/app/blobs/sha256:{}{NS}", "c".repeat(64));
    let response = mirror.handle(http::Request::get(&missing).body(()).unwrap()).await;
    assert_eq!(response.status(), 404);
    assert!(mirror.stats().in_flight.iter().all(|(_, n)| *n == 0), "{:?}", mirror.stats());

    // Each request is remembered, newest first, with what it sent.
    let recent = mirror.recent(10);
    let seen: Vec<_> = recent.iter().map(|p| (p.status, p.source, p.bytes, p.complete())).collect();
    assert_eq!(
        seen,
        [(404, None, 0, true), (200, Some(Kind::Local), 0, false), (200, Some(Kind::Local), 100_000, true)]
    );
    assert_eq!(recent[2].reference, digest.to_string());
    assert_eq!((recent[2].registry.as_str(), recent[2].repository.as_str()), ("registry.example:5000", "team/app"));
    assert_eq!(recent[2].client, Client::Containerd);
    assert!(!recent[2].manifest && recent[2].size == Some(100_000));
}

#[tokio::test]
async fn clients_cannot_grow_the_metrics_with_made_up_registries() {
    let (node, _, digest, ..) = node_with_image(support::config()).await;
    let ask = |n: usize| {
        let url = node.url(&format!("/v2/team/app/blobs/sha256:{}?ns=made-up-{n}.example", "d".repeat(64)));
        async move { get(&url, &[]).await.unwrap().0.status() }
    };
    assert_eq!(ask(0).await, 404);
    get(&node.url(&format!("/v2/team/app/blobs/{digest}{NS}")), &[]).await.unwrap();
    let before = node.metrics().await;
    for n in 1..2_000 {
        assert_eq!(ask(n).await, 404);
    }
    let after = node.metrics().await;
    assert_eq!(before.lines().count(), after.lines().count(), "{after}");
    assert!(
        after.contains(r#"peerpull_mirror_requests_total{registry="other",cache="miss",source=""} 2000"#),
        "{after}"
    );
    // A registry that served content keeps its own name.
    assert!(after.contains(r#"{registry="registry.example:5000",cache="hit",source="local"} 1"#), "{after}");
    assert!(!after.contains("made-up"), "{after}");
}

#[tokio::test]
async fn without_ns_a_request_is_for_the_one_registry_mirrored() {
    let one: Registry = "http://registry.example:5000".parse().unwrap();
    let config = Config { mirrored: Mirrored::Only(vec![one]), ..support::config() };
    let (node, blob, blob_digest, manifest, _) = node_with_image(config).await;
    let (response, body) = get(&node.url(&format!("/v2/team/app/blobs/{blob_digest}")), &[]).await.unwrap();
    assert_eq!(response.status(), 200, "a digest, no ?ns=");
    assert!(body.as_ref() == blob.as_slice(), "the blob's bytes");
    let (response, body) = get(&node.url("/v2/team/app/manifests/v1"), &[]).await.unwrap();
    assert_eq!(response.status(), 200, "a tag, no ?ns=");
    assert!(body.as_ref() == manifest.as_slice(), "the manifest's bytes");

    // Every registry mirrored: a tag needs ?ns= to say which.
    let (every, ..) = node_with_image(support::config()).await;
    let (response, body) = get(&every.url("/v2/team/app/manifests/v1"), &[]).await.unwrap();
    assert_eq!((response.status().as_u16(), code(&body)), (404, Some(ErrorCode::ManifestUnknown)));
    let said = ErrorBody::from_json(&body).ok().and_then(|b| b.message().map(str::to_owned)).unwrap_or_default();
    assert!(said.contains("?ns="), "the miss says how to name the registry: {said}");
}
