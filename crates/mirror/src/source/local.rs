//! This node's containerd: the first source tried.
//!
//! Serves a tag or digest the store holds, whole or one byte range, with
//! the headers containerd expects (the manifest's own media type,
//! `Docker-Content-Digest`, `Content-Length`, `Accept-Ranges`). A range the
//! content cannot satisfy, or several ranges, gets a 416; a malformed `Range`
//! header is ignored, as HTTP allows, and the whole content is served.

use std::sync::Arc;

use futures::StreamExt;
use http::{header, Response, StatusCode};
use peerpull_oci::{ByteRange, Descriptor, ErrorCode, RangeError};
use peerpull_store::{Store, StoreError};

use super::{Kind, Source};
use crate::body::{self, Body};
use crate::metrics::Metrics;
use crate::request::{Target, Wanted};

/// Content from this node's store.
pub(crate) struct Local {
    store: Arc<dyn Store>,
    metrics: Metrics,
}

impl Local {
    pub(crate) fn new(store: Arc<dyn Store>, metrics: Metrics) -> Self {
        Self { store, metrics }
    }

    async fn describe(&self, wanted: &Wanted) -> Result<Descriptor, StoreError> {
        match &wanted.target {
            Target::Tag(reference) => self.store.resolve(reference).await,
            Target::Digest(digest) => self.store.describe(digest).await,
        }
    }

    async fn serve(&self, wanted: &Wanted, descriptor: Descriptor) -> Response<Body> {
        let size = descriptor.size;
        let range = match wanted.range.as_deref().map(|value| ByteRange::parse(value, size)) {
            None | Some(Err(RangeError::Unit { .. } | RangeError::Malformed { .. })) => None,
            Some(Ok(range)) => Some(range),
            Some(Err(RangeError::Unsatisfiable { .. } | RangeError::Multiple)) => {
                let message = format!("range not satisfiable for {size} bytes");
                let mut response = body::error_with_status(ErrorCode::SizeInvalid, 416, message);
                body::insert(&mut response, header::CONTENT_RANGE, &peerpull_oci::unsatisfiable_content_range(size));
                return response;
            }
        };
        let media_type = if wanted.manifest { descriptor.media_type.as_str() } else { "application/octet-stream" };
        let mut response = Response::new(body::empty());
        body::insert(&mut response, header::CONTENT_TYPE, media_type);
        body::insert(&mut response, body::DOCKER_CONTENT_DIGEST, descriptor.digest.as_str());
        body::insert(&mut response, header::ACCEPT_RANGES, "bytes");
        let length = match range {
            Some(range) => {
                *response.status_mut() = StatusCode::PARTIAL_CONTENT;
                body::insert(&mut response, header::CONTENT_RANGE, &range.content_range(size));
                range.len()
            }
            None => size,
        };
        body::insert(&mut response, header::CONTENT_LENGTH, &length.to_string());
        if wanted.head {
            return response;
        }
        match self.store.open(&descriptor.digest, range).await {
            Ok(stream) => {
                let served = self.metrics.served(Kind::Local);
                let counted = stream.inspect(move |chunk| {
                    if let Ok(chunk) = chunk {
                        served.inc_by(chunk.len() as u64);
                    }
                });
                *response.body_mut() = body::stream(counted);
                response
            }
            Err(error) => {
                tracing::warn!(digest = %descriptor.digest, %error, "opening local content failed");
                body::error_with_status(ErrorCode::BlobUnknown, 500, "reading local content failed")
            }
        }
    }
}

#[async_trait::async_trait]
impl Source for Local {
    fn kind(&self) -> Kind {
        Kind::Local
    }

    async fn answer(&self, wanted: &Wanted) -> Option<Response<Body>> {
        match self.describe(wanted).await {
            Ok(descriptor) => Some(self.serve(wanted, descriptor).await),
            Err(StoreError::NotFound(_)) => None,
            Err(error) => {
                tracing::warn!(%error, path = %wanted.path_and_query, "local store failed; trying the next source");
                None
            }
        }
    }
}
