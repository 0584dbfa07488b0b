//! Reading blobs: straight from containerd's content directory when its path
//! is known, else (or when the file is not there) through the gRPC content
//! `Read` call.
//!
//! Both paths yield chunks of at most [`CHUNK`] bytes and hold at most one
//! chunk in memory per stream. A stream that ends before the expected length
//! yields a [`StoreError::ReadFailed`] item and ends. Checking that a digest
//! is present in the namespace (and its size) is the caller's job, done
//! through containerd before either path is taken, so the direct path never
//! serves a file containerd would not.
//!
//! The direct path reads each chunk with [`crate::file::read_chunk`]: in
//! place what the page cache holds, the rest in the blocking pool.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use containerd_client::services::v1::ReadContentRequest;
use futures::StreamExt;
use peerpull_oci::{ByteRange, Digest};

use super::client::Client;
use crate::error::{cause, Cause};
use crate::{ByteStream, StoreError};

/// The largest chunk a stream yields: what one reader holds in memory while
/// its client takes the previous one. Small, so that clients that stop
/// reading cannot hold much (200 of them hold 25 MiB), yet large enough that
/// a read costs little next to the bytes it moves.
pub const CHUNK: usize = 128 * 1024;

/// How long a gRPC read may wait for its next message.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Which way to read a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadPath {
    /// The content directory when configured, gRPC otherwise or when the file is missing.
    Auto,
    /// Only the content directory; fails when it is not configured or lacks the blob.
    Direct,
    /// Only containerd's gRPC content `Read`.
    Grpc,
}

/// The part of a blob to read: `offset` and `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) offset: u64,
    pub(crate) len: u64,
}

impl Span {
    /// The span `range` selects in a blob of `size` bytes (all of it when `None`).
    pub(crate) fn of(digest: &Digest, size: u64, range: Option<ByteRange>) -> Result<Self, StoreError> {
        match range {
            None => Ok(Self { offset: 0, len: size }),
            Some(r) if r.start <= r.end_inclusive && r.end_inclusive < size => {
                Ok(Self { offset: r.start, len: r.end_inclusive - r.start + 1 })
            }
            Some(r) => {
                Err(StoreError::InvalidRange { digest: digest.clone(), start: r.start, end: r.end_inclusive, size })
            }
        }
    }
}

/// Where `digest` lives under the content directory `root`.
pub(crate) fn blob_path(root: &Path, digest: &Digest) -> PathBuf {
    root.join("blobs").join(digest.algorithm().as_str()).join(digest.hex())
}

/// Opens `span` of the file of `digest` under `root`, whose size must be `size`.
///
/// `Ok(None)` when the file is absent, unreadable or of another size, so the
/// caller can fall back to gRPC.
pub(crate) async fn direct(root: &Path, digest: &Digest, size: u64, span: Span) -> Option<ByteStream> {
    let path = blob_path(root, digest);
    let opened = tokio::task::spawn_blocking(move || {
        let file = File::open(&path)?;
        let len = file.metadata()?.len();
        Ok::<_, std::io::Error>((file, len))
    })
    .await;
    let (file, len) = match opened {
        Ok(Ok(found)) => found,
        Ok(Err(e)) => {
            tracing::debug!(%digest, error = %e, "no direct read, using gRPC");
            return None;
        }
        Err(_) => return None,
    };
    if len != size {
        tracing::warn!(%digest, file = len, containerd = size, "blob file size differs, using gRPC");
        return None;
    }
    let file = Arc::new(file);
    let digest = digest.clone();
    let end = span.offset + span.len;
    let stream = futures::stream::unfold(Some(span.offset), move |at| {
        let (file, digest) = (file.clone(), digest.clone());
        async move {
            let at = at.filter(|at| *at < end)?;
            let want = (end - at).min(CHUNK as u64) as usize;
            let chunk = match crate::file::read_chunk(file, at, want).await {
                Ok(chunk) if chunk.len() == want => chunk,
                Ok(chunk) => {
                    let reason = format!("file ended at {} of {end} bytes", at + chunk.len() as u64);
                    return Some((Err(StoreError::ReadFailed { digest, cause: cause(reason) }), None));
                }
                Err(e) => return Some((Err(StoreError::ReadFailed { digest, cause: cause(e) }), None)),
            };
            Some((Ok(chunk), Some(at + want as u64)))
        }
    });
    Some(Box::pin(stream))
}

/// Opens `span` of `digest` through containerd's content `Read`.
pub(crate) async fn grpc(client: &Client, digest: &Digest, span: Span) -> Result<ByteStream, StoreError> {
    if span.len == 0 {
        return Ok(Box::pin(futures::stream::empty()));
    }
    let (offset, size) = match (i64::try_from(span.offset), i64::try_from(span.len)) {
        (Ok(offset), Ok(size)) => (offset, size),
        _ => return Err(StoreError::ReadFailed { digest: digest.clone(), cause: cause("span exceeds i64") }),
    };
    let mut content = client.content().await?;
    let request = client.request(ReadContentRequest { digest: digest.to_string(), offset, size });
    let messages = client.call("content read", digest.as_str(), content.read(request)).await?;
    let state = GrpcRead {
        messages,
        digest: digest.clone(),
        start: span.offset,
        base: None,
        at: span.offset,
        end: span.offset + span.len,
    };
    let stream = futures::stream::unfold(Some(state), |state| async move {
        let mut state = state?;
        let failed = |state: &GrpcRead, why: Cause| StoreError::ReadFailed { digest: state.digest.clone(), cause: why };
        if state.at >= state.end {
            return None;
        }
        let next = match tokio::time::timeout(IDLE_TIMEOUT, state.messages.message()).await {
            Ok(Ok(Some(message))) => message,
            Ok(Ok(None)) => {
                let reason = format!("stream ended at {} of {} bytes", state.at, state.end);
                return Some((Err(failed(&state, cause(reason))), None));
            }
            Ok(Err(status)) => return Some((Err(failed(&state, cause(status))), None)),
            Err(_) => return Some((Err(failed(&state, cause(format!("no data for {IDLE_TIMEOUT:?}")))), None)),
        };
        // containerd (1.6, 1.7) numbers the answers from the start of the read, not of the
        // blob; the first answer tells which, in case a later version changes that.
        let offset = u64::try_from(next.offset).unwrap_or(u64::MAX);
        let base = *state.base.get_or_insert(if offset == 0 { state.start } else { 0 });
        if offset.checked_add(base) != Some(state.at) {
            let reason = format!("got offset {offset} (+{base}) while expecting {}", state.at);
            return Some((Err(failed(&state, cause(reason))), None));
        }
        let mut data = Bytes::from(next.data);
        data.truncate((state.end - state.at).min(usize::MAX as u64) as usize);
        state.at += data.len() as u64;
        Some((Ok(data), Some(state)))
    });
    Ok(Box::pin(stream.flat_map(|item| futures::stream::iter(rechunk(item)))))
}

/// The state of one gRPC read.
struct GrpcRead {
    messages: tonic::Streaming<containerd_client::services::v1::ReadContentResponse>,
    digest: Digest,
    /// Where the read starts in the blob.
    start: u64,
    /// What to add to containerd's offsets to get blob offsets, once known.
    base: Option<u64>,
    at: u64,
    end: u64,
}

/// Splits a chunk larger than [`CHUNK`] (containerd sends 1 MiB, but need not).
fn rechunk(item: Result<Bytes, StoreError>) -> Vec<Result<Bytes, StoreError>> {
    match item {
        Ok(data) if data.len() > CHUNK => {
            (0..data.len()).step_by(CHUNK).map(|at| Ok(data.slice(at..(at + CHUNK).min(data.len())))).collect()
        }
        other => vec![other],
    }
}

/// Collects a whole stream of at most `limit` bytes into memory (manifests, sniffing).
pub(crate) async fn collect(mut stream: ByteStream, limit: usize) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if out.len() + chunk.len() > limit {
            break;
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn digest() -> Digest {
        Digest::sha256_of(b"x")
    }

    #[test]
    fn spans() {
        assert_eq!(Span::of(&digest(), 10, None).unwrap(), Span { offset: 0, len: 10 });
        assert_eq!(Span::of(&digest(), 10, ByteRange::new(2, 9)).unwrap(), Span { offset: 2, len: 8 });
        assert_eq!(Span::of(&digest(), 10, ByteRange::new(9, 9)).unwrap(), Span { offset: 9, len: 1 });
        assert!(matches!(
            Span::of(&digest(), 10, ByteRange::new(5, 10)),
            Err(StoreError::InvalidRange { start: 5, end: 10, size: 10, .. })
        ));
        assert!(matches!(Span::of(&digest(), 0, ByteRange::new(0, 0)), Err(StoreError::InvalidRange { .. })));
    }

    #[test]
    fn big_chunks_are_split() {
        let data = Bytes::from(vec![7u8; CHUNK * 2 + 5]);
        let parts: Vec<usize> = rechunk(Ok(data)).into_iter().map(|c| c.unwrap().len()).collect();
        assert_eq!(parts, vec![CHUNK, CHUNK, 5]);
    }

    #[tokio::test]
    async fn direct_reads_ranges_and_reports_short_files() {
        let dir = tempfile::tempdir().unwrap();
        let bytes: Vec<u8> = (0..(CHUNK + 100)).map(|i| (i % 251) as u8).collect();
        let d = Digest::sha256_of(&bytes);
        let path = blob_path(dir.path(), &d);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &bytes).unwrap();
        let size = bytes.len() as u64;

        let whole = direct(dir.path(), &d, size, Span { offset: 0, len: size }).await.unwrap();
        let chunks: Vec<Bytes> = whole.map(|c| c.unwrap()).collect().await;
        assert_eq!(chunks.iter().map(Bytes::len).collect::<Vec<_>>(), vec![CHUNK, 100]);
        assert_eq!(chunks.concat(), bytes);

        let part = direct(dir.path(), &d, size, Span { offset: 10, len: 20 }).await.unwrap();
        assert_eq!(collect(part, usize::MAX).await.unwrap(), bytes[10..30]);

        // A size that disagrees with containerd's, or a missing file, falls back.
        assert!(direct(dir.path(), &d, size + 1, Span { offset: 0, len: 1 }).await.is_none());
        assert!(direct(dir.path(), &digest(), 1, Span { offset: 0, len: 1 }).await.is_none());

        // The file shrinking after opening ends the stream with an error.
        let stream = direct(dir.path(), &d, size, Span { offset: 0, len: size }).await.unwrap();
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(CHUNK as u64 + 1).unwrap();
        let items: Vec<_> = stream.collect().await;
        assert_eq!(items.len(), 2);
        assert!(
            matches!(&items[1], Err(StoreError::ReadFailed { cause, .. }) if cause.to_string().contains("ended at"))
        );
    }
}
