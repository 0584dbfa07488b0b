//! Many small generated images in one OCI archive, imported straight into a
//! node's containerd without a registry.
//!
//! [`Archive::tiny`] writes an OCI image layout as a tar file: per image a
//! manifest, a config and layers that are gzip-compressed tar files of a few
//! hundred pseudo-random bytes each (the same seed, name and sizes always
//! give the same digests), each image named by the
//! `io.containerd.image.name` annotation. [`Containerd::import`] runs
//! `ctr images import --no-unpack` on it, so the node's content store holds
//! every blob and containerd knows every tag, as after a pull, in seconds
//! even for thousands of blobs. Nothing is unpacked, so no layer is ever
//! extracted and no snapshot is made. Unlike [`crate::ImageBuilder`], nothing
//! here is meant to be pushed or run: the archive is for a node that must
//! hold many keys.

use std::io::{self, Read as _, Write as _};
use std::path::Path;
use std::time::Duration;

use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::json;
use sha2::{Digest as _, Sha256};
use tempfile::NamedTempFile;

use crate::containerd::{Containerd, NAMESPACE};
use crate::image::Noise;
use crate::Error;

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// How long one import may take.
const IMPORT_TIMEOUT: Duration = Duration::from_secs(600);

/// A tar file holding an OCI image layout of many small images.
#[derive(Debug)]
pub struct Archive {
    file: NamedTempFile,
    images: Vec<ArchivedImage>,
}

/// One image of an [`Archive`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedImage {
    /// What containerd names it: `registry/repository:tag`.
    pub reference: String,
    /// The manifest's digest.
    pub manifest: String,
    /// The config's digest.
    pub config: String,
    /// The layers' digests, bottom first.
    pub layers: Vec<String>,
}

impl ArchivedImage {
    /// Every blob digest of the image: manifest, config, layers.
    pub fn digests(&self) -> impl Iterator<Item = &str> {
        [self.manifest.as_str(), self.config.as_str()].into_iter().chain(self.layers.iter().map(String::as_str))
    }

    /// The keys a node holding it advertises: every digest and the tag.
    pub fn keys(&self) -> usize {
        self.layers.len() + 3
    }
}

impl Archive {
    /// One image per entry of `layers` (its layer count), named
    /// `<repository>-<i>:v1` (`repository` includes the registry host), each
    /// layer `layer_bytes` pseudo-random bytes seeded by `seed`, the image's
    /// number and the layer's.
    pub fn tiny(seed: &str, repository: &str, layers: &[usize], layer_bytes: u64) -> Result<Self, Error> {
        let file = tempfile::Builder::new()
            .prefix("pp-archive-")
            .suffix(".tar")
            .tempfile()
            .map_err(Error::io("creating an archive"))?;
        let fail = |what: &'static str| move |e| Error::io(what)(e);
        let mut tar = tar::Builder::new(io::BufWriter::with_capacity(1 << 20, file.reopen().map_err(fail("opening"))?));
        let mut images = Vec::with_capacity(layers.len());
        let mut top = Vec::with_capacity(layers.len());
        for (i, &count) in layers.iter().enumerate() {
            let reference = format!("{repository}-{i}:v1");
            let mut digests = Vec::with_capacity(count);
            let mut descriptors = Vec::with_capacity(count);
            let mut diff_ids = Vec::with_capacity(count);
            for l in 0..count {
                let (gzip, diff_id) = layer(&format!("{seed}/{i}/{l}"), l, layer_bytes)?;
                let digest = append(&mut tar, &gzip)?;
                descriptors.push(json!({"mediaType": LAYER, "digest": digest, "size": gzip.len()}));
                diff_ids.push(diff_id);
                digests.push(digest);
            }
            let config = json!({
                "architecture": crate::Platform::host().architecture, "os": "linux",
                "config": {"Labels": {"peerpull.test/name": reference}},
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
            });
            let config = config.to_string().into_bytes();
            let config_digest = append(&mut tar, &config)?;
            let manifest = json!({
                "schemaVersion": 2, "mediaType": MANIFEST,
                "config": {"mediaType": CONFIG, "digest": config_digest, "size": config.len()},
                "layers": descriptors,
            });
            let manifest = manifest.to_string().into_bytes();
            let manifest_digest = append(&mut tar, &manifest)?;
            top.push(json!({"mediaType": MANIFEST, "digest": manifest_digest, "size": manifest.len(),
                            "annotations": {"io.containerd.image.name": reference}}));
            images.push(ArchivedImage { reference, manifest: manifest_digest, config: config_digest, layers: digests });
        }
        let index = json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": top}).to_string();
        entry(&mut tar, "index.json", index.as_bytes())?;
        entry(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        let mut out = tar.into_inner().map_err(fail("finishing an archive"))?;
        out.flush().map_err(fail("writing an archive"))?;
        Ok(Self { file, images })
    }

    /// The tar file.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// The images, in order.
    pub fn images(&self) -> &[ArchivedImage] {
        &self.images
    }

    /// The keys a node holding every image advertises.
    pub fn keys(&self) -> usize {
        self.images.iter().map(ArchivedImage::keys).sum()
    }
}

impl Containerd {
    /// Imports `archive` into this node's `k8s.io` namespace with
    /// `ctr images import --no-unpack`: every blob in the content store,
    /// every image named, nothing unpacked.
    pub async fn import(&self, archive: &Archive) -> Result<(), Error> {
        let mut command = tokio::process::Command::new(self.release().ctr());
        command
            .arg("--address")
            .arg(self.socket())
            .args(["--namespace", NAMESPACE, "images", "import", "--no-unpack"])
            .arg(archive.path());
        let what = format!("ctr images import {}", archive.path().display());
        tokio::time::timeout(IMPORT_TIMEOUT, crate::cri::run(command))
            .await
            .map_err(|_| Error::Timeout { what, after: IMPORT_TIMEOUT })?
    }
}

/// A gzip-compressed tar holding one file of `size` bytes from `seed`;
/// returns it and its diff id (the digest of the tar).
fn layer(seed: &str, index: usize, size: u64) -> Result<(Vec<u8>, String), Error> {
    let fail = |e| Error::io("writing a layer")(e);
    let mut header = tar::Header::new_ustar();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_entry_type(tar::EntryType::Regular);
    let mut tar = tar::Builder::new(Vec::new());
    tar.append_data(&mut header, format!("data/layer-{index}.bin"), Noise::new(seed).take(size)).map_err(fail)?;
    let plain = tar.into_inner().map_err(fail)?;
    let diff_id = format!("sha256:{}", hex::encode(Sha256::digest(&plain)));
    let mut gzip = GzEncoder::new(Vec::new(), Compression::fast());
    gzip.write_all(&plain).map_err(fail)?;
    Ok((gzip.finish().map_err(fail)?, diff_id))
}

/// Adds `bytes` as a blob of the layout; returns its digest.
fn append<W: io::Write>(tar: &mut tar::Builder<W>, bytes: &[u8]) -> Result<String, Error> {
    let hex = hex::encode(Sha256::digest(bytes));
    entry(tar, &format!("blobs/sha256/{hex}"), bytes)?;
    Ok(format!("sha256:{hex}"))
}

/// Adds one file to the archive.
fn entry<W: io::Write>(tar: &mut tar::Builder<W>, path: &str, bytes: &[u8]) -> Result<(), Error> {
    let mut header = tar::Header::new_ustar();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, path, bytes).map_err(Error::io("writing an archive"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_digests_distinct_seeds_distinct_digests() -> Result<(), Error> {
        let a = Archive::tiny("a", "example.test/bench/a", &[3, 2], 300)?;
        let again = Archive::tiny("a", "example.test/bench/a", &[3, 2], 300)?;
        let b = Archive::tiny("b", "example.test/bench/b", &[3, 2], 300)?;
        assert_eq!(a.images(), again.images());
        assert_eq!(a.keys(), 11);
        let mut all: Vec<&str> = a.images().iter().chain(b.images()).flat_map(ArchivedImage::digests).collect();
        let count = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), count, "no digest shared between images or seeds");
        assert_eq!(a.images()[1].reference, "example.test/bench/a-1:v1");
        Ok(())
    }
}
