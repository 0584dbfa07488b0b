//! Reading an entry while it is written: a range of its bytes as they land.
//!
//! A reader waits for the writer's progress, reads what is in the file in
//! chunks of at most [`CHUNK`] bytes (the memory one reader holds; in place
//! while the page cache holds them, see [`peerpull_store::file`]), and
//! hands out the chunk that ends the range asked for only once the digest
//! checked out: a range, like the whole blob, never completes unverified.

use std::fs::File;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use tokio::sync::watch;

use super::{Failed, Lease, State};

/// The most bytes one read takes from the file.
const CHUNK: u64 = 256 * 1024;

/// Why a spool read ended early.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SpoolError {
    /// The upstream fetch failed (or its bytes did not match the digest).
    #[error("upstream fetch failed: {}", .0.reason)]
    Failed(Failed),
    /// The fetch made no progress in time.
    #[error("the upstream fetch made no progress in time")]
    Timeout,
    /// The spool file could not be read.
    #[error("reading the spool: {0}")]
    Io(#[from] std::io::Error),
}

/// Bytes `start..end` of the leased entry, as they arrive; `wait` bounds each wait for progress.
pub(crate) fn read(
    entry: Lease,
    start: u64,
    end: u64,
    wait: Duration,
) -> impl Stream<Item = Result<Bytes, SpoolError>> + Send {
    let state = entry.state.subscribe();
    let reader = Reader { entry, state, file: None, pos: start, end, wait, failed: false };
    futures::stream::unfold(reader, |mut reader| async move {
        if reader.failed || reader.pos >= reader.end {
            return None;
        }
        let item = reader.next().await;
        reader.failed = item.is_err();
        Some((item, reader))
    })
}

struct Reader {
    entry: Lease,
    state: watch::Receiver<State>,
    file: Option<Arc<File>>,
    pos: u64,
    end: u64,
    wait: Duration,
    failed: bool,
}

impl Reader {
    async fn next(&mut self) -> Result<Bytes, SpoolError> {
        let available = self
            .wait_for(|pos, state| match state {
                State::Writing { written, .. } if *written > pos => Some(*written),
                State::Done { meta } => Some(meta.size),
                _ => None,
            })
            .await?;
        let upto = available.min(self.end).min(self.pos + CHUNK);
        if upto == self.end {
            // The chunk that completes the response waits for the verdict on the digest.
            self.wait_for(|_, state| matches!(state, State::Done { .. }).then_some(())).await?;
        }
        let file = match &self.file {
            Some(file) => file.clone(),
            None => {
                let file = Arc::new(tokio::fs::File::open(&self.entry.path).await?.into_std().await);
                self.file.insert(file).clone()
            }
        };
        let want = (upto - self.pos) as usize;
        let chunk = peerpull_store::file::read_chunk(file, self.pos, want).await?;
        if chunk.len() < want {
            let reason = format!("the spool file ended at {} of {upto} bytes", self.pos + chunk.len() as u64);
            return Err(SpoolError::Io(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, reason)));
        }
        self.pos = upto;
        Ok(chunk)
    }

    /// Waits until `ready` gives a value for the state; a failed fetch is an error.
    async fn wait_for<T>(&mut self, ready: impl Fn(u64, &State) -> Option<T>) -> Result<T, SpoolError> {
        loop {
            {
                let state = self.state.borrow_and_update();
                if let State::Failed(failed) = &*state {
                    return Err(SpoolError::Failed(failed.clone()));
                }
                if let Some(value) = ready(self.pos, &state) {
                    return Ok(value);
                }
            }
            match tokio::time::timeout(self.wait, self.state.changed()).await {
                Err(_) => return Err(SpoolError::Timeout),
                Ok(Err(_)) => {
                    return Err(SpoolError::Failed(Failed { reason: "the fetch went away".into(), upstream: false }))
                }
                Ok(Ok(())) => {}
            }
        }
    }
}
