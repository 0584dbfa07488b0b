//! Deterministic OCI images, written as an OCI layout and pushed with `skopeo`.
//!
//! [`ImageBuilder`] makes an image whose layers are gzip-compressed tar files
//! of pseudo-random bytes of the requested sizes: the same name, sizes and
//! platforms always give the same digests. With more than one platform it
//! makes an OCI index over one manifest per platform. Blobs are streamed to
//! disk while their digests are computed, so large images never sit in
//! memory. [`Image::push`] copies the layout to a registry with
//! `skopeo copy --preserve-digests`, so the registry holds exactly these
//! digests.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::json;
use sha2::{Digest as _, Sha256};
use tempfile::TempDir;

use crate::registry::Upstream;
use crate::Error;

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// An OS/architecture pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// e.g. `linux`.
    pub os: String,
    /// e.g. `amd64`.
    pub architecture: String,
}

impl Platform {
    /// `linux/<architecture>`.
    pub fn linux(architecture: &str) -> Self {
        Self { os: "linux".into(), architecture: architecture.into() }
    }

    /// The platform this machine runs, as containerd names it.
    pub fn host() -> Self {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        };
        Self::linux(arch)
    }
}

/// Describes an image to generate.
#[derive(Debug, Clone)]
pub struct ImageBuilder {
    name: String,
    layers: Vec<u64>,
    platforms: Vec<Platform>,
}

/// One blob of a generated image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// `sha256:…`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// Its media type.
    pub media_type: String,
    /// Where it is in the OCI layout.
    pub path: PathBuf,
}

/// The manifest of one platform, with its config and layers.
#[derive(Debug, Clone)]
pub struct PlatformImage {
    /// Its platform.
    pub platform: Platform,
    /// The image manifest.
    pub manifest: Blob,
    /// The config blob.
    pub config: Blob,
    /// The layers, bottom first.
    pub layers: Vec<Blob>,
}

/// A generated image in an OCI layout on disk.
#[derive(Debug)]
pub struct Image {
    index: Option<Blob>,
    platforms: Vec<PlatformImage>,
    layout: TempDir,
}

impl ImageBuilder {
    /// An image named `name` (the seed of its content) with one 1 MiB layer for the host platform.
    pub fn new(name: &str) -> Self {
        Self { name: name.to_owned(), layers: vec![1 << 20], platforms: vec![Platform::host()] }
    }

    /// The payload size of each layer, bottom first.
    pub fn layers(mut self, sizes: &[u64]) -> Self {
        self.layers = sizes.to_vec();
        self
    }

    /// The platforms; more than one makes an OCI index.
    pub fn platforms(mut self, platforms: &[Platform]) -> Self {
        self.platforms = platforms.to_vec();
        self
    }

    /// Writes the image as an OCI layout in a temporary directory.
    pub fn build(&self) -> Result<Image, Error> {
        let layout = tempfile::Builder::new().prefix("pp-img-").tempdir().map_err(Error::io("creating a temp dir"))?;
        let blobs = layout.path().join("blobs/sha256");
        std::fs::create_dir_all(&blobs).map_err(Error::io("creating an OCI layout"))?;
        std::fs::write(layout.path().join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
            .map_err(Error::io("writing oci-layout"))?;
        let mut platforms = Vec::new();
        for platform in &self.platforms {
            platforms.push(self.build_platform(&blobs, platform)?);
        }
        let (top, index) = if platforms.len() == 1 {
            (platforms[0].manifest.clone(), None)
        } else {
            let manifests: Vec<_> = platforms
                .iter()
                .map(|p| {
                    json!({"mediaType": MANIFEST, "digest": p.manifest.digest, "size": p.manifest.size,
                           "platform": {"os": p.platform.os, "architecture": p.platform.architecture}})
                })
                .collect();
            let body = json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": manifests});
            let blob = write_json(&blobs, INDEX, &body)?;
            (blob.clone(), Some(blob))
        };
        let layout_index = json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": [{
            "mediaType": top.media_type, "digest": top.digest, "size": top.size,
            "annotations": {"org.opencontainers.image.ref.name": "latest"}}]});
        std::fs::write(layout.path().join("index.json"), layout_index.to_string())
            .map_err(Error::io("writing index.json"))?;
        Ok(Image { index, platforms, layout })
    }

    fn build_platform(&self, blobs: &Path, platform: &Platform) -> Result<PlatformImage, Error> {
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for (i, size) in self.layers.iter().enumerate() {
            let seed = format!("{}/{}/{}/{}", self.name, platform.os, platform.architecture, i);
            let (blob, diff_id) = write_layer(blobs, &seed, i, *size)?;
            layers.push(blob);
            diff_ids.push(diff_id);
        }
        let config = json!({
            "architecture": platform.architecture, "os": platform.os,
            "config": {"Labels": {"peerpull.test/name": self.name}},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        let config = write_json(blobs, CONFIG, &config)?;
        let layer_descriptors: Vec<_> =
            layers.iter().map(|l| json!({"mediaType": l.media_type, "digest": l.digest, "size": l.size})).collect();
        let manifest = json!({
            "schemaVersion": 2, "mediaType": MANIFEST,
            "config": {"mediaType": CONFIG, "digest": config.digest, "size": config.size},
            "layers": layer_descriptors,
        });
        let manifest = write_json(blobs, MANIFEST, &manifest)?;
        Ok(PlatformImage { platform: platform.clone(), manifest, config, layers })
    }
}

impl Image {
    /// The digest a pull by tag resolves to: the index's, or the single manifest's.
    pub fn digest(&self) -> &str {
        match &self.index {
            Some(index) => &index.digest,
            None => &self.platforms[0].manifest.digest,
        }
    }

    /// The top-level blob (index or manifest).
    pub fn top(&self) -> &Blob {
        self.index.as_ref().unwrap_or(&self.platforms[0].manifest)
    }

    /// The index, for a multi-platform image.
    pub fn index(&self) -> Option<&Blob> {
        self.index.as_ref()
    }

    /// Each platform's manifest, config and layers.
    pub fn platforms(&self) -> &[PlatformImage] {
        &self.platforms
    }

    /// The image of one platform.
    pub fn platform(&self, platform: &Platform) -> Option<&PlatformImage> {
        self.platforms.iter().find(|p| &p.platform == platform)
    }

    /// Every blob of the image: index, manifests, configs, layers.
    pub fn blobs(&self) -> Vec<&Blob> {
        let mut all: Vec<&Blob> = self.index.iter().collect();
        for p in &self.platforms {
            all.push(&p.manifest);
            all.push(&p.config);
            all.extend(&p.layers);
        }
        all
    }

    /// The blobs a node that pulled `platform` holds: index (if any), that manifest, config and layers.
    pub fn blobs_for(&self, platform: &Platform) -> Vec<&Blob> {
        let mut all: Vec<&Blob> = self.index.iter().collect();
        if let Some(p) = self.platform(platform) {
            all.push(&p.manifest);
            all.push(&p.config);
            all.extend(&p.layers);
        }
        all
    }

    /// Total bytes of the blobs a node pulling `platform` fetches.
    pub fn pull_size(&self, platform: &Platform) -> u64 {
        self.blobs_for(platform).iter().map(|b| b.size).sum()
    }

    /// Pushes the image to `upstream` as `name` (`repo:tag`) and returns the
    /// reference to pull it by (`host:port/repo:tag`).
    pub async fn push(&self, upstream: &Upstream, name: &str) -> Result<String, Error> {
        self.push_as(upstream, name, None).await
    }

    /// Pushes the image as [`Image::push`] does, logging in with `credentials` (user, password).
    pub async fn push_as(
        &self,
        upstream: &Upstream,
        name: &str,
        credentials: Option<(&str, &str)>,
    ) -> Result<String, Error> {
        let reference = format!("{}/{name}", upstream.host());
        let mut command = tokio::process::Command::new("skopeo");
        command
            .args(["--insecure-policy", "copy", "--quiet", "--preserve-digests", "--dest-tls-verify=false"])
            .arg("--retry-times=0");
        if let Some((user, password)) = credentials {
            command.arg(format!("--dest-creds={user}:{password}"));
        }
        if self.index.is_some() {
            command.arg("--all");
        }
        command.arg(format!("oci:{}:latest", self.layout.path().display())).arg(format!("docker://{reference}"));
        crate::cri::run(command).await?;
        Ok(reference)
    }
}

/// Writes a JSON document as a blob.
fn write_json(blobs: &Path, media_type: &str, value: &serde_json::Value) -> Result<Blob, Error> {
    let bytes = serde_json::to_vec(value).map_err(|e| Error::io("encoding JSON")(io::Error::other(e)))?;
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
    let path = blobs.join(&digest[7..]);
    std::fs::write(&path, &bytes).map_err(Error::io("writing a blob"))?;
    Ok(Blob { digest, size: bytes.len() as u64, media_type: media_type.to_owned(), path })
}

/// Writes one gzip layer holding a file of `size` pseudo-random bytes; returns
/// the blob and its diff id (the digest of the uncompressed tar).
fn write_layer(blobs: &Path, seed: &str, index: usize, size: u64) -> Result<(Blob, String), Error> {
    let tmp = blobs.join(format!(".layer-{index}.tmp"));
    let file = File::create(&tmp).map_err(Error::io("creating a layer"))?;
    let compressed = Hashing::new(BufWriter::with_capacity(1 << 20, file));
    let gzip = GzEncoder::new(compressed, Compression::none());
    let mut tar = tar::Builder::new(Hashing::new(gzip));
    let mut header = tar::Header::new_ustar();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_entry_type(tar::EntryType::Regular);
    let fail = |e| Error::io("writing a layer")(e);
    tar.append_data(&mut header, format!("data/layer-{index}.bin"), Noise::new(seed).take(size)).map_err(fail)?;
    let uncompressed = tar.into_inner().map_err(fail)?;
    let (gzip, diff_id) = uncompressed.finish();
    let compressed = gzip.finish().map_err(fail)?;
    let (mut file, digest) = compressed.finish();
    file.flush().map_err(fail)?;
    let size = std::fs::metadata(&tmp).map_err(fail)?.len();
    let path = blobs.join(&digest[7..]);
    std::fs::rename(&tmp, &path).map_err(fail)?;
    Ok((Blob { digest, size, media_type: LAYER.to_owned(), path }, diff_id))
}

/// A writer that hashes what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Hashing<W> {
    fn new(inner: W) -> Self {
        Self { inner, hasher: Sha256::new() }
    }

    fn finish(self) -> (W, String) {
        (self.inner, format!("sha256:{}", hex::encode(self.hasher.finalize())))
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// An endless deterministic stream of incompressible bytes (xorshift64*).
pub(crate) struct Noise(u64);

impl Noise {
    pub(crate) fn new(seed: &str) -> Self {
        let hash = Sha256::digest(seed.as_bytes());
        let mut state = [0u8; 8];
        state.copy_from_slice(&hash[..8]);
        Self(u64::from_le_bytes(state) | 1)
    }
}

impl Read for Noise {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let word = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
        Ok(buf.len())
    }
}
