//! Reading blobs back, whole and by range, over the direct and gRPC paths.

use peerpull_oci::ByteRange;
use peerpull_store::containerd::{Config, ReadPath};
use peerpull_store::{Containerd, Store, StoreError};
use peerpull_testbed::ImageBuilder;

use crate::support::{digest, read_all, Bed};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_blobs_and_ranges_read_back_exactly_over_both_paths() {
    let bed = Bed::start().await;
    let image = ImageBuilder::new("store-read").layers(&[(5 << 20) / 2, 1000]).build().unwrap();
    bed.push_and_pull(&image, "store/read:v1").await;
    let direct = bed.store().await;
    let grpc_only = Containerd::connect(bed.config(false)).await.unwrap();
    let misplaced = Config { content_path: Some(bed.node.dir().join("elsewhere")), ..bed.config(true) };
    let misplaced = Containerd::connect(misplaced).await.unwrap();

    let platform = &image.platforms()[0];
    for blob in [&platform.layers[0], &platform.layers[1], &platform.manifest, &platform.config] {
        let bytes = std::fs::read(&blob.path).unwrap();
        let d = digest(blob);
        let size = bytes.len() as u64;
        let mut ranges =
            vec![None, ByteRange::new(0, 0), ByteRange::new(size - 1, size - 1), ByteRange::new(7, size - 1)];
        if size > (1 << 20) + 1 {
            ranges.push(ByteRange::new((1 << 20) - 3, (1 << 20) + 2));
            ranges.push(ByteRange::new(12_345, (2 << 20) + 17));
        }
        for range in ranges {
            let want = match range {
                Some(r) => &bytes[r.start as usize..=r.end_inclusive as usize],
                None => &bytes[..],
            };
            for (name, store, path) in [
                ("direct", &direct, ReadPath::Direct),
                ("grpc", &direct, ReadPath::Grpc),
                ("auto", &direct, ReadPath::Auto),
                ("grpc-only auto", &grpc_only, ReadPath::Auto),
                ("fallback", &misplaced, ReadPath::Auto),
            ] {
                let got = read_all(store.open_with(&d, range, path).await.unwrap()).await.unwrap();
                assert!(
                    got == want,
                    "{name} read of {} {range:?}: {} bytes, want {}",
                    blob.digest,
                    got.len(),
                    want.len()
                );
            }
        }
        let past = ByteRange::new(size, size);
        let err = direct.open(&d, past).await.err().unwrap();
        assert!(matches!(err, StoreError::InvalidRange { start, size: s, .. } if start == size && s == size));
    }

    // Without a content directory (or a file in it) the direct path refuses.
    let layer = digest(&platform.layers[0]);
    assert!(matches!(grpc_only.open_with(&layer, None, ReadPath::Direct).await, Err(StoreError::ReadFailed { .. })));
    assert!(matches!(misplaced.open_with(&layer, None, ReadPath::Direct).await, Err(StoreError::ReadFailed { .. })));
    let unknown = peerpull_oci::Digest::sha256_of(b"never pulled");
    assert!(matches!(direct.open(&unknown, None).await, Err(StoreError::NotFound(d)) if d == unknown.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_read_cut_by_a_crash_fails_instead_of_ending_short() {
    let mut bed = Bed::start().await;
    let image = ImageBuilder::new("store-cut").layers(&[16 << 20]).build().unwrap();
    bed.push_and_pull(&image, "store/cut:v1").await;
    let store = bed.store().await;
    let layer = &image.platforms()[0].layers[0];
    let mut stream = store.open_with(&digest(layer), None, ReadPath::Grpc).await.unwrap();
    let first = futures::StreamExt::next(&mut stream).await.unwrap().unwrap();
    assert!(!first.is_empty());
    bed.node.crash();
    // HTTP/2 flow control keeps at most a few MiB in flight, so the rest never comes.
    match read_all(stream).await {
        Err(StoreError::ReadFailed { digest: d, .. }) => assert_eq!(d.as_str(), layer.digest),
        other => panic!("expected a failed read, got {:?}", other.map(|rest| first.len() + rest.len())),
    }
    assert!(matches!(store.ping().await, Err(StoreError::Unreachable { .. })));
}
