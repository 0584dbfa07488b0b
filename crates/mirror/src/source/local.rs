//! This node's containerd: the first source tried.
//!
//! Serves a tag or digest the store holds, whole or one byte range, with
//! the headers containerd expects (the manifest's own media type,
//! `Docker-Content-Digest`, `Content-Length`, `Accept-Ranges`; see
//! [`super::content_response`]).

use std::sync::Arc;

use http::Response;
use peerpull_oci::{Descriptor, ErrorCode};
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
            Target::Digest(digest) | Target::Referrers(digest) => self.store.describe(digest).await,
        }
    }

    async fn serve(&self, wanted: &Wanted, descriptor: Descriptor) -> Response<Body> {
        let (mut response, range) =
            match super::content_response(wanted, &descriptor.digest, descriptor.size, &descriptor.media_type) {
                super::Prepared::Content(response, range) => (response, range),
                super::Prepared::Refused(response) => return response,
            };
        if wanted.head {
            return response;
        }
        match self.store.open(&descriptor.digest, range).await {
            Ok(stream) => {
                *response.body_mut() = body::stream(super::counted(stream, self.metrics.served(Kind::Local)));
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
        // containerd keeps no index of referrers: only the upstream answers them.
        if matches!(wanted.target, Target::Referrers(_)) {
            return None;
        }
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
