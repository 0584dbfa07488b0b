//! Pulling into a node the way kubelet does, and the `ctr` second path.
//!
//! [`Containerd::cri_pull`] calls CRI `PullImage` on the node's socket, so
//! containerd resolves the registry through its `config_path` `hosts.toml`
//! files exactly as in a cluster. [`Containerd::ctr_pull`] runs
//! `ctr images pull --hosts-dir` against the same files.

use std::time::Duration;

use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::{AuthConfig, ImageSpec, ImageStatusRequest, ListImagesRequest, PullImageRequest, RemoveImageRequest};

use crate::containerd::{Containerd, NAMESPACE};
use crate::Error;

/// How long one pull may take, beyond which the test fails rather than hangs.
const PULL_TIMEOUT: Duration = Duration::from_secs(300);

/// What CRI reports about a pulled image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledImage {
    /// The image id CRI returns (the config digest).
    pub id: String,
    /// `registry/repo:tag` names the image has.
    pub repo_tags: Vec<String>,
    /// `registry/repo@digest` names the image has.
    pub repo_digests: Vec<String>,
}

impl PulledImage {
    /// The manifest (or index) digest the image was pulled at.
    pub fn manifest_digest(&self) -> Option<&str> {
        self.repo_digests.first().and_then(|r| r.rsplit_once('@')).map(|(_, d)| d)
    }
}

impl Containerd {
    async fn images_client(&self) -> Result<ImageServiceClient<tonic::transport::Channel>, Error> {
        Ok(ImageServiceClient::new(self.channel().await?))
    }

    /// Pulls `reference` through CRI `PullImage`, as kubelet does.
    pub async fn cri_pull(&self, reference: &str) -> Result<PulledImage, Error> {
        self.cri_pull_as(reference, None).await
    }

    /// Pulls `reference` through CRI `PullImage` with `credentials` (user,
    /// password), as kubelet does with an image pull secret.
    pub async fn cri_pull_as(&self, reference: &str, credentials: Option<(&str, &str)>) -> Result<PulledImage, Error> {
        let auth = credentials.map(|(username, password)| AuthConfig {
            username: username.to_owned(),
            password: password.to_owned(),
            ..Default::default()
        });
        self.cri_pull_auth(reference, auth).await
    }

    /// Pulls `reference` through CRI `PullImage` with `credentials` (user,
    /// password) for `server_address` only (`AuthConfig.ServerAddress`).
    pub async fn cri_pull_as_for(
        &self,
        reference: &str,
        credentials: (&str, &str),
        server_address: &str,
    ) -> Result<PulledImage, Error> {
        let auth = AuthConfig {
            username: credentials.0.to_owned(),
            password: credentials.1.to_owned(),
            server_address: server_address.to_owned(),
            ..Default::default()
        };
        self.cri_pull_auth(reference, Some(auth)).await
    }

    async fn cri_pull_auth(&self, reference: &str, auth: Option<AuthConfig>) -> Result<PulledImage, Error> {
        let mut client = self.images_client().await?;
        let request = PullImageRequest {
            image: Some(ImageSpec { image: reference.to_owned(), ..Default::default() }),
            auth,
            ..Default::default()
        };
        let what = format!("CRI PullImage {reference}");
        let reply = tokio::time::timeout(PULL_TIMEOUT, client.pull_image(request))
            .await
            .map_err(|_| Error::Timeout { what: what.clone(), after: PULL_TIMEOUT })?
            .map_err(Error::grpc(what))?;
        let id = reply.into_inner().image_ref;
        self.cri_image_status(&id).await?.ok_or_else(|| Error::Grpc {
            what: format!("CRI ImageStatus {id}"),
            status: tonic::Status::not_found("pulled image has no status"),
        })
    }

    /// What CRI knows about an image (by reference or id), if it has it.
    pub async fn cri_image_status(&self, image: &str) -> Result<Option<PulledImage>, Error> {
        let mut client = self.images_client().await?;
        let request = ImageStatusRequest {
            image: Some(ImageSpec { image: image.to_owned(), ..Default::default() }),
            verbose: false,
        };
        let reply = client.image_status(request).await.map_err(Error::grpc(format!("CRI ImageStatus {image}")))?;
        Ok(reply.into_inner().image.map(|i| PulledImage {
            id: i.id,
            repo_tags: i.repo_tags,
            repo_digests: i.repo_digests,
        }))
    }

    /// Removes an image through CRI, as kubelet's image GC does.
    pub async fn cri_remove(&self, image: &str) -> Result<(), Error> {
        let mut client = self.images_client().await?;
        let request = RemoveImageRequest { image: Some(ImageSpec { image: image.to_owned(), ..Default::default() }) };
        client.remove_image(request).await.map_err(Error::grpc(format!("CRI RemoveImage {image}")))?;
        Ok(())
    }

    /// Removes every image CRI does not report pinned, as kubelet's image
    /// garbage collection does when the disk fills; returns the ids removed.
    pub async fn cri_collect_unpinned(&self) -> Result<Vec<String>, Error> {
        let mut client = self.images_client().await?;
        let reply = client.list_images(ListImagesRequest::default()).await.map_err(Error::grpc("CRI ListImages"))?;
        let mut removed = Vec::new();
        for image in reply.into_inner().images.into_iter().filter(|i| !i.pinned) {
            self.cri_remove(&image.id).await?;
            removed.push(image.id);
        }
        Ok(removed)
    }

    /// Pulls `reference` with `ctr images pull --hosts-dir`.
    pub async fn ctr_pull(&self, reference: &str) -> Result<(), Error> {
        let mut command = tokio::process::Command::new(self.release().ctr());
        command
            .arg("--address")
            .arg(self.socket())
            .args(["--namespace", NAMESPACE, "images", "pull", "--hosts-dir"])
            .arg(self.config_path())
            .arg(reference);
        tokio::time::timeout(PULL_TIMEOUT, run(command))
            .await
            .map_err(|_| Error::Timeout { what: format!("ctr pull {reference}"), after: PULL_TIMEOUT })?
    }
}

/// Runs a helper command to completion; fails with its stderr if it fails.
pub(crate) async fn run(mut command: tokio::process::Command) -> Result<(), Error> {
    let line = format!("{:?}", command.as_std());
    command.kill_on_drop(true).stdin(std::process::Stdio::null());
    let output = command.output().await.map_err(Error::io(format!("running {line}")))?;
    if output.status.success() {
        return Ok(());
    }
    Err(Error::Command {
        command: line,
        status: output.status,
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    })
}
