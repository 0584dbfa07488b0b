//! Filling an entry: the upstream's bytes into its file, checked against the digest.
//!
//! The fetch is resumed with a byte offset when the upstream's body breaks
//! or stalls (at most [`MAX_RESUMES`] times), so a hiccup does not cost a
//! second copy of the blob. Progress is published after each chunk is in
//! the file, so readers only ever read written bytes.

use std::sync::Arc;

use futures::future::BoxFuture;
use hyper::body::Incoming;
use peerpull_oci::Verifier;
use tokio::io::AsyncWriteExt;

use super::{Entry, Failed, Meta, Spool, State};
use crate::fetch::read_data;

/// How many times one fetch is resumed after its body broke.
const MAX_RESUMES: usize = 3;

/// The upstream's answer for an entry: what the content is, and its body.
pub(crate) struct Opened {
    pub(crate) meta: Meta,
    pub(crate) body: Incoming,
}

/// Opens the upstream content from a byte offset (0: all of it); `Err` says why not.
pub(crate) type Opener = Arc<dyn Fn(u64) -> BoxFuture<'static, Result<Opened, String>> + Send + Sync>;

/// Fetches `entry` into its file and publishes how it went.
pub(super) async fn fill(spool: Spool, entry: Arc<Entry>, open: Opener) {
    match write(&spool, &entry, &open).await {
        Ok(meta) => {
            *entry.completed.lock().unwrap_or_else(|p| p.into_inner()) = Some(tokio::time::Instant::now());
            tracing::debug!(digest = %entry.digest, size = meta.size, "fetched from the upstream");
            entry.state.send_replace(State::Done { meta });
        }
        Err(failed) => {
            tracing::info!(digest = %entry.digest, reason = %failed.reason, upstream = failed.upstream, "upstream fetch failed");
            spool.fail(&entry, failed);
        }
    }
}

/// A failure that is the upstream's.
fn upstream(reason: String) -> Failed {
    Failed { reason, upstream: true }
}

/// A failure that is this node's.
fn local(reason: String) -> Failed {
    Failed { reason, upstream: false }
}

/// Opens the upstream content from `offset`, within the spool's deadline for it.
async fn opened(spool: &Spool, open: &Opener, offset: u64) -> Result<Opened, Failed> {
    let deadline = spool.inner.open_timeout;
    match tokio::time::timeout(deadline, open(offset)).await {
        Ok(answer) => answer.map_err(upstream),
        Err(_) => Err(upstream(format!("the upstream did not answer within {deadline:?}"))),
    }
}

async fn write(spool: &Spool, entry: &Entry, open: &Opener) -> Result<Meta, Failed> {
    let Opened { meta, mut body } = opened(spool, open, 0).await?;
    let size = meta.size;
    if !spool.reserve_for(entry, size) {
        return Err(local(format!("the spool has no room for {size} bytes")));
    }
    let path = &entry.path;
    let mut file =
        tokio::fs::File::create(path).await.map_err(|e| local(format!("creating {}: {e}", path.display())))?;
    entry.state.send_replace(State::Writing { meta: meta.clone(), written: 0 });
    let mut verifier = Verifier::new(entry.digest.clone());
    let (mut written, mut resumes) = (0u64, 0);
    let stall = spool.inner.stall;
    while written < size {
        match read_data(&mut body, stall).await {
            Ok(Some(data)) => {
                let room = size - written;
                let data = if data.len() as u64 > room { data.slice(..room as usize) } else { data };
                file.write_all(&data).await.map_err(|e| local(format!("writing the spool: {e}")))?;
                file.flush().await.map_err(|e| local(format!("writing the spool: {e}")))?;
                verifier.update(&data);
                written += data.len() as u64;
                spool.inner.metrics.upstream_bytes(data.len() as u64);
                entry.state.send_modify(|state| {
                    if let State::Writing { written: at, .. } = state {
                        *at = written;
                    }
                });
            }
            Ok(None) | Err(_) => {
                resumes += 1;
                if resumes > MAX_RESUMES {
                    return Err(upstream(format!("the upstream body broke at byte {written} of {size}")));
                }
                tracing::info!(digest = %entry.digest, offset = written, "upstream body broke; resuming");
                body = opened(spool, open, written).await?.body;
            }
        }
    }
    if !verifier.finish() {
        return Err(upstream(format!("the upstream's bytes do not match {}", entry.digest)));
    }
    Ok(meta)
}
