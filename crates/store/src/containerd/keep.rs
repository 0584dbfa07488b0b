//! Bringing an image into containerd and keeping it there: what preheating
//! needs from the node's containerd.
//!
//! An image is pulled through CRI's `PullImage`, as kubelet pulls it, so it
//! goes through containerd's `hosts.toml` (this node's mirror first) and is
//! unpacked, ready to run. It is kept by pinning: CRI reports an image whose
//! records carry `io.cri-containerd.pinned=pinned` as `pinned` (containerd
//! 1.7 and later), and kubelet's image garbage collection leaves pinned
//! images alone. peerpull marks what it pinned with a label of its own, so
//! unpinning never touches an image someone else pinned.

use std::collections::HashMap;
use std::time::Duration;

use containerd_client::services::v1::{GetImageRequest, ListImagesRequest, UpdateImageRequest};
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::{ImageSpec, PullImageRequest};
use prost_types::FieldMask;

use super::Containerd;
use crate::error::cause;
use crate::StoreError;

/// The label CRI reads an image's `pinned` from, and its value.
pub const PINNED_LABEL: (&str, &str) = ("io.cri-containerd.pinned", "pinned");
/// The label marking an image pinned by peerpull's preheating.
pub const PREHEATED_LABEL: (&str, &str) = ("io.peerpull.preheated", "true");

impl Containerd {
    /// Pulls `reference` through CRI, as kubelet does, waiting at most `timeout`.
    /// Returns the image id CRI answers.
    pub async fn cri_pull(&self, reference: &str, timeout: Duration) -> Result<String, StoreError> {
        let client = &self.inner.client;
        let mut images = ImageServiceClient::new(client.channel().await?);
        let spec = ImageSpec { image: reference.to_owned(), ..ImageSpec::default() };
        let request = PullImageRequest { image: Some(spec), ..PullImageRequest::default() };
        match tokio::time::timeout(timeout, images.pull_image(request)).await {
            Ok(Ok(reply)) => Ok(reply.into_inner().image_ref),
            Ok(Err(status)) => Err(client.error("CRI pull", reference, status)),
            Err(_) => {
                Err(StoreError::Backend { call: "CRI pull", cause: cause(format!("no answer within {timeout:?}")) })
            }
        }
    }

    /// Pins (or unpins) every record of the image `name` names (its name, its
    /// `repo@digest` and its id share the target) and marks them preheated.
    /// Unpinning leaves an image pinned by someone else (not marked) alone.
    pub async fn pin(&self, name: &str, pinned: bool) -> Result<(), StoreError> {
        let client = &self.inner.client;
        let mut images = client.images().await?;
        let request = client.request(GetImageRequest { name: name.to_owned() });
        let image = client.call("images get", name, images.get(request)).await?.image;
        let target = image.and_then(|i| i.target).ok_or_else(|| StoreError::NotFound(name.to_owned()))?;
        let filter = format!("target.digest=={}", target.digest);
        let request = client.request(ListImagesRequest { filters: vec![filter] });
        let records = client.call("images list", name, images.list(request)).await?.images;
        // containerd takes everything after `labels.` as the key; an empty value deletes it.
        let paths = [PINNED_LABEL.0, PREHEATED_LABEL.0].map(|key| format!("labels.{key}")).to_vec();
        for mut record in records {
            let ours = record.labels.get(PREHEATED_LABEL.0).is_some_and(|v| v == PREHEATED_LABEL.1);
            let theirs = record.labels.get(PINNED_LABEL.0).is_some_and(|v| v == PINNED_LABEL.1) && !ours;
            if theirs || (!pinned && !ours) {
                continue;
            }
            record.labels = if pinned {
                HashMap::from([PINNED_LABEL, PREHEATED_LABEL].map(|(k, v)| (k.to_owned(), v.to_owned())))
            } else {
                HashMap::new()
            };
            let subject = record.name.clone();
            let update = UpdateImageRequest {
                image: Some(record),
                update_mask: Some(FieldMask { paths: paths.clone() }),
                ..UpdateImageRequest::default()
            };
            client.call("images update", &subject, images.update(client.request(update))).await?;
        }
        Ok(())
    }

    /// The names of the images peerpull pinned.
    pub async fn pinned_by_us(&self) -> Result<Vec<String>, StoreError> {
        let client = &self.inner.client;
        let mut images = client.images().await?;
        let filter = format!("labels.\"{}\"=={}", PREHEATED_LABEL.0, PREHEATED_LABEL.1);
        let request = client.request(ListImagesRequest { filters: vec![filter] });
        let records = client.call("images list", "preheated", images.list(request)).await?.images;
        Ok(records.into_iter().map(|r| r.name).collect())
    }
}
