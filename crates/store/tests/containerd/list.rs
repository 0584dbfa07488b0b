//! Listing, resolving and describing what CRI pulled.

use peerpull_oci::{media, ByteRange, Descriptor, Digest, Reference};
use peerpull_store::containerd::Config;
use peerpull_store::{Containerd, Entry, Store, StoreError};
use peerpull_testbed::{ImageBuilder, Platform};

use crate::support::{digest, host_blobs, keys, Bed};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_exactly_the_present_keys_of_pulled_images() {
    let bed = Bed::start().await;
    let other = if Platform::host().architecture == "arm64" { "amd64" } else { "arm64" };
    let single = ImageBuilder::new("store-list-a").layers(&[300_000, 10]).build().unwrap();
    let multi = ImageBuilder::new("store-list-b")
        .layers(&[100_000, 5_000])
        .platforms(&[Platform::host(), Platform::linux(other)])
        .build()
        .unwrap();
    let a = bed.push_and_pull(&single, "store/a:v1").await;
    let b = bed.push_and_pull(&multi, "store/b:v1").await;
    let store = bed.store().await;

    // Tags and present digests only: CRI's `repo@digest` and image-id records add no tag,
    // and nothing of the other platform is listed.
    let host = bed.upstream.host();
    let mut expected = keys(&host, &[&a], &host_blobs(&single));
    expected.extend(keys(&host, &[&b], &host_blobs(&multi)));
    expected.sort();
    let listed = store.list().await.unwrap();
    assert_eq!(listed, expected);
    let foreign = multi.platform(&Platform::linux(other)).unwrap();
    assert!(!listed.iter().any(|e| e.key == peerpull_store::Key::Digest(digest(&foreign.manifest))));

    // Tags resolve to their targets with the real media types.
    let top = |image: &peerpull_testbed::Image| {
        Descriptor::new(digest(image.top()), image.top().size, image.top().media_type.clone())
    };
    assert_eq!(store.resolve(&a.parse().unwrap()).await.unwrap(), top(&single));
    assert_eq!(store.resolve(&b.parse().unwrap()).await.unwrap(), top(&multi));
    assert_eq!(top(&multi).media_type, media::OCI_INDEX);
    let missing: Reference = format!("{host}/store/a:v2").parse().unwrap();
    assert!(matches!(store.resolve(&missing).await, Err(StoreError::NotFound(_))));

    // Every present blob describes as it was referenced.
    for blob in host_blobs(&single).into_iter().chain(host_blobs(&multi)) {
        let described = store.describe(&digest(blob)).await.unwrap();
        assert_eq!(described, Descriptor::new(digest(blob), blob.size, blob.media_type.clone()));
    }
    let absent = store.describe(&digest(&foreign.layers[0])).await;
    assert!(matches!(absent, Err(StoreError::NotFound(d)) if d == foreign.layers[0].digest));

    // A fresh store knows nothing yet: manifests are sniffed, other blobs are octet streams.
    let cold = Containerd::connect(bed.config(false)).await.unwrap();
    let platform = &multi.platforms()[0];
    for blob in [multi.top(), &platform.manifest] {
        assert_eq!(cold.describe(&digest(blob)).await.unwrap().media_type, blob.media_type);
    }
    for blob in [&platform.config, &platform.layers[0]] {
        assert_eq!(cold.describe(&digest(blob)).await.unwrap().media_type, "application/octet-stream");
    }
    assert_eq!(cold.list().await.unwrap(), expected);
    let range = ByteRange::new(0, 0);
    assert!(matches!(cold.open(&digest(&foreign.manifest), range).await, Err(StoreError::NotFound(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_and_unreachable_sockets() {
    let bed = Bed::start().await;
    let image = ImageBuilder::new("store-ns").layers(&[1000]).build().unwrap();
    bed.push_and_pull(&image, "store/ns:v1").await;
    bed.store().await.check_namespace().await.unwrap();

    // A namespace nothing was ever put in is missing, and empty rather than broken.
    let other = Containerd::connect(Config { namespace: "peerpull-absent".into(), ..bed.config(true) }).await.unwrap();
    let missing = other.check_namespace().await;
    assert!(matches!(missing, Err(StoreError::NamespaceMissing(ns)) if ns == "peerpull-absent"));
    assert_eq!(other.list().await.unwrap(), Vec::<Entry>::new());
    other.ping().await.unwrap();
    let top: Digest = image.digest().parse().unwrap();
    assert!(matches!(other.describe(&top).await, Err(StoreError::NotFound(_))));

    let nowhere = Config { socket: bed.node.dir().join("nothing.sock"), ..bed.config(true) };
    assert!(matches!(Containerd::connect(nowhere.clone()).await, Err(StoreError::Unreachable { .. })));
    let lazy = Containerd::new(nowhere).unwrap();
    assert!(matches!(lazy.list().await, Err(StoreError::Unreachable { .. })));
    assert!(matches!(
        Containerd::new(Config { namespace: String::new(), ..bed.config(true) }),
        Err(StoreError::NamespaceMissing(_))
    ));
}
