//! Direct versus gRPC read throughput on a 256 MiB blob (ignored by default):
//! `cargo test --release -p peerpull-store --test containerd throughput -- --ignored --nocapture`

use std::time::Instant;

use futures::StreamExt;
use peerpull_store::containerd::ReadPath;
use peerpull_testbed::ImageBuilder;

use crate::support::{digest, Bed};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: pulls and reads a 256 MiB blob"]
async fn direct_and_grpc_read_throughput() {
    let bed = Bed::start().await;
    let image = ImageBuilder::new("store-throughput").layers(&[256 << 20]).build().unwrap();
    bed.push_and_pull(&image, "store/big:v1").await;
    let store = bed.store().await;
    let layer = &image.platforms()[0].layers[0];
    let d = digest(layer);
    let mut best = Vec::new();
    for path in [ReadPath::Direct, ReadPath::Grpc] {
        let mut rates = Vec::new();
        for _ in 0..3 {
            let start = Instant::now();
            let mut stream = store.open_with(&d, None, path).await.unwrap();
            let mut total = 0u64;
            while let Some(chunk) = stream.next().await {
                total += chunk.unwrap().len() as u64;
            }
            assert_eq!(total, layer.size);
            rates.push(total as f64 / 1e6 / start.elapsed().as_secs_f64());
        }
        let top = rates.iter().cloned().fold(0.0, f64::max);
        println!("{path:?}: {:.0} MB/s best of {rates:.0?} over {} bytes", top, layer.size);
        best.push(top);
    }
    println!("direct/gRPC ratio: {:.2}", best[0] / best[1]);
}
