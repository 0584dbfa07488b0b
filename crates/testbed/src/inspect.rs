//! Inspecting what a node's containerd holds, over its gRPC API.

use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::{DeleteContentRequest, DeleteImageRequest, InfoRequest, ListImagesRequest};
use containerd_client::with_namespace;
use tonic::{Code, Request};

use crate::containerd::{Containerd, NAMESPACE};
use crate::Error;

/// An image record in containerd's image store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRecord {
    /// Its name, e.g. `127.0.0.1:5000/demo:v1` or `…@sha256:…`.
    pub name: String,
    /// The digest of its target (manifest or index).
    pub digest: String,
    /// The target's media type.
    pub media_type: String,
    /// Its labels (`io.cri-containerd.pinned`, …).
    pub labels: std::collections::BTreeMap<String, String>,
}

impl Containerd {
    /// Every image in the `k8s.io` namespace.
    pub async fn images(&self) -> Result<Vec<ImageRecord>, Error> {
        let mut client = ImagesClient::new(self.channel().await?);
        let request = with_namespace!(ListImagesRequest { filters: vec![] }, NAMESPACE);
        let reply = client.list(request).await.map_err(Error::grpc("listing images"))?;
        Ok(reply
            .into_inner()
            .images
            .into_iter()
            .map(|image| {
                let target = image.target.unwrap_or_default();
                ImageRecord {
                    name: image.name,
                    digest: target.digest,
                    media_type: target.media_type,
                    labels: image.labels.into_iter().collect(),
                }
            })
            .collect())
    }

    /// The image named `name`, if containerd has it.
    pub async fn image(&self, name: &str) -> Result<Option<ImageRecord>, Error> {
        Ok(self.images().await?.into_iter().find(|i| i.name == name))
    }

    /// Whether the content store holds the blob `digest`.
    pub async fn has_content(&self, digest: &str) -> Result<bool, Error> {
        let mut client = ContentClient::new(self.channel().await?);
        let request = with_namespace!(InfoRequest { digest: digest.to_owned() }, NAMESPACE);
        match client.info(request).await {
            Ok(_) => Ok(true),
            Err(status) if status.code() == Code::NotFound => Ok(false),
            Err(status) => Err(Error::Grpc { what: format!("content info {digest}"), status }),
        }
    }

    /// Deletes the image record `name` (its content is garbage-collected).
    pub async fn delete_image(&self, name: &str) -> Result<(), Error> {
        let mut client = ImagesClient::new(self.channel().await?);
        let request =
            with_namespace!(DeleteImageRequest { name: name.to_owned(), sync: true, target: None }, NAMESPACE);
        client.delete(request).await.map_err(Error::grpc(format!("deleting image {name}")))?;
        Ok(())
    }

    /// Deletes the blob `digest` from the content store.
    pub async fn delete_content(&self, digest: &str) -> Result<(), Error> {
        let mut client = ContentClient::new(self.channel().await?);
        let request = with_namespace!(DeleteContentRequest { digest: digest.to_owned() }, NAMESPACE);
        client.delete(request).await.map_err(Error::grpc(format!("deleting content {digest}")))?;
        Ok(())
    }
}
