//! The scenarios. Each takes the flags and a progress printer, runs its
//! repeats on real services it starts and stops itself, and returns the
//! report sections it measured.

pub(crate) mod content;
pub(crate) mod dht;
pub(crate) mod holders;
pub(crate) mod memory;
pub(crate) mod miss;
pub(crate) mod peer;
pub(crate) mod relay;
pub(crate) mod rollout;
pub(crate) mod scale;
pub(crate) mod serve;
pub(crate) mod soak;
pub(crate) mod zones;

mod routers;

/// Bytes in a MiB.
pub(crate) const MIB: f64 = 1024.0 * 1024.0;

/// Writes every dirty page to the disk, so that a measured pull does not pay
/// for the writes of the one before it (nodes and registry share one disk).
pub(crate) async fn settle() -> anyhow::Result<()> {
    tokio::task::spawn_blocking(rustix::fs::sync).await?;
    Ok(())
}

/// Fails unless `size` bytes with `digest` are `layer`'s.
pub(crate) fn check_blob(size: u64, digest: &str, layer: &peerpull_testbed::Blob) -> anyhow::Result<()> {
    if size != layer.size || digest != layer.digest {
        anyhow::bail!("fetched {size} bytes with {digest}, not the layer's {} bytes {}", layer.size, layer.digest);
    }
    Ok(())
}

/// Seconds of a duration.
pub(crate) fn secs(d: std::time::Duration) -> f64 {
    d.as_secs_f64()
}
