//! The node's own requests to its mirror, in process.
//!
//! The admin API's `Locate` resolves an image's manifests
//! ([`Mirror::resolve`]) and the debug page's test pull reads the first
//! bytes of each blob ([`Mirror::probe`]). Both take the chain containerd's
//! requests take (this node's store, its peers, the upstream when
//! pull-through is on), without HTTP and without the client allow-list,
//! and count as the node's own ([`Client::Node`]): neither remembered as
//! pulls nor counted as containerd's in the metrics.

use bytes::{Bytes, BytesMut};
use http::{Response, StatusCode};
use http_body_util::BodyExt as _;
use peerpull_oci::{ByteRange, Descriptor, Digest, ErrorBody, Reference};

use super::Mirror;
use crate::body::Body;
use crate::recent::{Client, Served};
use crate::request::{Target, Wanted};

/// Why the mirror gave no content for the node's own request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unanswered {
    /// No source had it (or one refused): the status and what the mirror said.
    #[error("{message}")]
    Miss {
        /// The status a client would have got.
        status: StatusCode,
        /// The OCI error body's message, or the status.
        message: String,
    },
    /// The body broke off.
    #[error("after {read} bytes: {reason}")]
    Broken {
        /// Bytes read before it broke.
        read: u64,
        /// Why.
        reason: String,
    },
    /// The content is larger than the caller reads.
    #[error("larger than {0} bytes")]
    TooLarge(usize),
}

/// What [`Mirror::probe`] read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probed {
    /// Bytes read (at most the number asked for).
    pub bytes: u64,
    /// Which source served them, through which peer.
    pub served: Option<Served>,
}

impl Mirror {
    /// The manifest or index `reference` names (by its digest, else its tag),
    /// as containerd would get it: its descriptor (the media type served, the
    /// digest of the bytes) and its bytes, at most `max`.
    pub async fn resolve(&self, reference: &Reference, max: usize) -> Result<(Descriptor, Bytes), Unanswered> {
        let target = match reference.digest() {
            Some(digest) => Target::Digest(digest.clone()),
            None => Target::Tag(reference.clone()),
        };
        let response = self.serve(&mut Wanted::own(reference, target, true, None), Client::Node).await;
        let response = answered(response).await?;
        let media_type = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let mut body = response.into_body();
        let mut bytes = BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| Unanswered::Broken { read: bytes.len() as u64, reason: e.to_string() })?;
            if let Ok(data) = frame.into_data() {
                bytes.extend_from_slice(&data);
                if bytes.len() > max {
                    return Err(Unanswered::TooLarge(max));
                }
            }
        }
        let bytes = bytes.freeze();
        let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        Ok((Descriptor::new(Digest::sha256_of(&bytes), size, media_type), bytes))
    }

    /// Reads the first `first` bytes of `digest` (a manifest when `manifest`)
    /// in `reference`'s repository, as containerd would ask for them, and
    /// says who served them.
    pub async fn probe(
        &self,
        reference: &Reference,
        digest: &Digest,
        manifest: bool,
        first: u64,
    ) -> Result<Probed, Unanswered> {
        let range = ByteRange { start: 0, end_inclusive: first.saturating_sub(1) };
        let mut wanted = Wanted::own(reference, Target::Digest(digest.clone()), manifest, Some(range));
        let response = answered(self.serve(&mut wanted, Client::Node).await).await?;
        let served = response.extensions().get::<Served>().copied();
        let mut body = response.into_body();
        let mut bytes = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| Unanswered::Broken { read: bytes, reason: e.to_string() })?;
            bytes += frame.data_ref().map_or(0, |d| d.len() as u64);
            if bytes >= first {
                break;
            }
        }
        Ok(Probed { bytes, served })
    }
}

/// `response` when it carries content, or the miss it says.
async fn answered(response: Response<Body>) -> Result<Response<Body>, Unanswered> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    // An error body is small; a broken one just loses its message.
    let body = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let said = ErrorBody::from_json(&body).ok().and_then(|b| b.message().map(str::to_owned));
    Err(Unanswered::Miss { status, message: said.unwrap_or_else(|| status.to_string()) })
}
