//! The container image the Helm chart runs, assembled without a base image.
//!
//! [`build`] writes an OCI image archive (an OCI layout in a tar file, which
//! `ctr images import`, `skopeo copy oci-archive:` and `podman load` take)
//! holding one layer:
//! - `/usr/local/bin/peerpull`, the built binary with its debug sections stripped;
//! - the shared libraries it links against (the C runtime, as `ldd` names
//!   them), from the machine that built it, so the binary runs as it ran there;
//! - `/etc/ssl/certs/ca-certificates.crt` for TLS to upstream registries;
//! - `/etc/nsswitch.conf` (`hosts: files dns`), `/etc/passwd` and `/etc/group`
//!   naming root, and empty `/tmp`, `/run/peerpull` and `/var/lib/peerpull`
//!   for the chart's mounts.
//!
//! Nothing else: no shell, no package manager. Every entry has mode, owner
//! and time fixed, so the same binary and libraries give the same digests.
//! The image is named as the chart names it by default
//! (`ghcr.io/peerpull/peerpull:<version>`); the archive records the name for
//! `ctr images import`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context as _};
use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::json;
use sha2::{Digest as _, Sha256};

/// The repository the chart's `image.repository` names by default.
pub const REPOSITORY: &str = "ghcr.io/peerpull/peerpull";
/// Where the binary lives in the image.
pub const BINARY_PATH: &str = "usr/local/bin/peerpull";
/// The CA bundle the upstream client reads.
const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// What [`build`] wrote.
#[derive(Debug, Clone)]
pub struct Built {
    /// The image's name, `repository:tag`.
    pub reference: String,
    /// The manifest's digest.
    pub digest: String,
    /// The compressed layer's size: what a node downloads.
    pub layer_size: u64,
    /// The unpacked files' total size.
    pub unpacked_size: u64,
}

/// Assembles the image of `binary` (tagged `tag`) into the OCI archive `out`.
pub fn build(binary: &Path, tag: &str, out: &Path) -> anyhow::Result<Built> {
    let mut files: BTreeMap<String, Entry> = BTreeMap::new();
    files.insert(BINARY_PATH.into(), Entry::File { bytes: stripped(binary)?, mode: 0o755 });
    for library in shared_libraries(binary)? {
        let bytes = std::fs::read(&library).with_context(|| format!("reading {}", library.display()))?;
        let path = library.to_string_lossy().trim_start_matches('/').to_owned();
        files.insert(path, Entry::File { bytes, mode: 0o755 });
    }
    let ca = std::fs::read(CA_BUNDLE).with_context(|| format!("reading {CA_BUNDLE} (install ca-certificates)"))?;
    files.insert(CA_BUNDLE.trim_start_matches('/').into(), Entry::File { bytes: ca, mode: 0o644 });
    for (path, text) in [
        ("etc/nsswitch.conf", "hosts: files dns\n"),
        ("etc/passwd", "root:x:0:0:root:/:/sbin/nologin\n"),
        ("etc/group", "root:x:0:\n"),
    ] {
        files.insert(path.into(), Entry::File { bytes: text.as_bytes().to_vec(), mode: 0o644 });
    }
    for dir in ["tmp", "run/peerpull", "var/lib/peerpull"] {
        files.insert(dir.into(), Entry::Dir);
    }
    let unpacked_size = files.values().map(Entry::len).sum();
    let layer = layer(&files)?;

    let reference = format!("{REPOSITORY}:{tag}");
    let architecture = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let config = json!({
        "architecture": architecture,
        "os": "linux",
        "config": {
            "Entrypoint": ["/usr/local/bin/peerpull"],
            "Cmd": ["--help"],
            "Env": [
                "PATH=/usr/local/bin",
                format!("SSL_CERT_FILE={CA_BUNDLE}"),
            ],
            "User": "0:0",
            "WorkingDir": "/",
            "Labels": {
                "org.opencontainers.image.title": "peerpull",
                "org.opencontainers.image.description": "Peer-to-peer container image distribution for Kubernetes nodes.",
                "org.opencontainers.image.version": tag,
                "org.opencontainers.image.licenses": "Apache-2.0",
            },
        },
        "rootfs": { "type": "layers", "diff_ids": [layer.diff_id] },
        "history": [{ "created_by": "peerpull-image: the binary, its C runtime, CA certificates" }],
    });
    let mut blobs = Blobs::default();
    let config = blobs.add(serde_json::to_vec(&config)?);
    let layer_blob = blobs.add(layer.gzip);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.0, "size": config.1 },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": layer_blob.0,
            "size": layer_blob.1,
        }],
    });
    let manifest = blobs.add(serde_json::to_vec(&manifest)?);
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest.0,
            "size": manifest.1,
            "platform": { "architecture": architecture, "os": "linux" },
            "annotations": {
                "org.opencontainers.image.ref.name": tag,
                "io.containerd.image.name": reference,
            },
        }],
    });
    write_archive(out, &blobs, &serde_json::to_vec(&index)?).with_context(|| format!("writing {}", out.display()))?;
    Ok(Built { reference, digest: manifest.0, layer_size: layer_blob.1, unpacked_size })
}

/// One file or directory of the layer.
enum Entry {
    File { bytes: Vec<u8>, mode: u32 },
    Dir,
}

impl Entry {
    fn len(&self) -> u64 {
        match self {
            Entry::File { bytes, .. } => bytes.len() as u64,
            Entry::Dir => 0,
        }
    }
}

/// `binary` without its debug sections (`strip --strip-debug`, from binutils).
fn stripped(binary: &Path) -> anyhow::Result<Vec<u8>> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("peerpull");
    let status = Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(&out)
        .arg(binary)
        .status()
        .context("running strip (install binutils)")?;
    if !status.success() {
        bail!("strip {} failed: {status}", binary.display());
    }
    Ok(std::fs::read(&out)?)
}

/// The shared libraries `binary` loads, the dynamic loader included, as `ldd` lists them.
fn shared_libraries(binary: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let output = Command::new("ldd").arg(binary).output().context("running ldd")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        // A static binary needs none.
        if text.contains("not a dynamic executable")
            || String::from_utf8_lossy(&output.stderr).contains("not a dynamic")
        {
            return Ok(Vec::new());
        }
        bail!("ldd {} failed: {}", binary.display(), String::from_utf8_lossy(&output.stderr));
    }
    parse_ldd(&text)
}

/// The library paths in `ldd` output: `name => /path (0x…)` and `/path (0x…)` lines.
fn parse_ldd(text: &str) -> anyhow::Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.contains("not found") {
            bail!("a library is missing: {line}");
        }
        let target = match line.split_once("=>") {
            Some((_, target)) => target.trim(),
            None => line,
        };
        let path = target.split_whitespace().next().unwrap_or("");
        if path.starts_with('/') {
            paths.push(PathBuf::from(path));
        } else if !line.starts_with("linux-vdso") && !line.starts_with("linux-gate") {
            return Err(anyhow!("unexpected ldd line: {line}"));
        }
    }
    Ok(paths)
}

/// The layer: its gzip bytes and the digest of the uncompressed tar.
struct Layer {
    gzip: Vec<u8>,
    diff_id: String,
}

fn layer(files: &BTreeMap<String, Entry>) -> anyhow::Result<Layer> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut dirs: Vec<String> = Vec::new();
    for (path, entry) in files {
        // Parent directories first, each once.
        let mut parent = String::new();
        for part in path.split('/').take(path.split('/').count() - 1) {
            parent = if parent.is_empty() { part.to_owned() } else { format!("{parent}/{part}") };
            if !dirs.contains(&parent) {
                append(&mut tar, &format!("{parent}/"), None, 0o755)?;
                dirs.push(parent.clone());
            }
        }
        match entry {
            Entry::File { bytes, mode } => append(&mut tar, path, Some(bytes), *mode)?,
            Entry::Dir if !dirs.contains(path) => {
                let mode = if path == "tmp" { 0o1777 } else { 0o755 };
                append(&mut tar, &format!("{path}/"), None, mode)?;
                dirs.push(path.clone());
            }
            Entry::Dir => {}
        }
    }
    let raw = tar.into_inner()?;
    let diff_id = format!("sha256:{}", hex::encode(Sha256::digest(&raw)));
    let mut gzip = GzEncoder::new(Vec::new(), Compression::best());
    gzip.write_all(&raw)?;
    Ok(Layer { gzip: gzip.finish()?, diff_id })
}

fn append(tar: &mut tar::Builder<Vec<u8>>, path: &str, bytes: Option<&[u8]>, mode: u32) -> io::Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    match bytes {
        Some(bytes) => {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(bytes.len() as u64);
            tar.append_data(&mut header, path, bytes)
        }
        None => {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            tar.append_data(&mut header, path, io::empty())
        }
    }
}

/// Blobs by digest.
#[derive(Default)]
struct Blobs(BTreeMap<String, Vec<u8>>);

impl Blobs {
    /// Adds `bytes`; gives its digest and size.
    fn add(&mut self, bytes: Vec<u8>) -> (String, u64) {
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        let size = bytes.len() as u64;
        self.0.insert(digest.clone(), bytes);
        (digest, size)
    }
}

/// The OCI layout (`oci-layout`, `index.json`, `blobs/sha256/…`) as a tar file.
fn write_archive(out: &Path, blobs: &Blobs, index: &[u8]) -> io::Result<()> {
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let partial = out.with_extension("partial");
    let mut tar = tar::Builder::new(BufWriter::new(File::create(&partial)?));
    append_to(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    append_to(&mut tar, "index.json", index)?;
    for (digest, bytes) in &blobs.0 {
        append_to(&mut tar, &format!("blobs/{}", digest.replacen(':', "/", 1)), bytes)?;
    }
    tar.into_inner()?.flush()?;
    std::fs::rename(&partial, out)
}

fn append_to<W: Write>(tar: &mut tar::Builder<W>, path: &str, data: &[u8]) -> io::Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(data.len() as u64);
    tar.append_data(&mut header, path, data)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_every_library_and_the_loader() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f71)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f71)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f71)\n";
        let paths = parse_ldd(text).unwrap();
        let expected =
            ["/lib/x86_64-linux-gnu/libgcc_s.so.1", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"];
        assert_eq!(paths, expected.map(PathBuf::from));
        assert!(parse_ldd("\tlibfoo.so.1 => not found\n").unwrap_err().to_string().contains("libfoo"));
    }

    #[test]
    fn the_same_files_give_the_same_layer() {
        let mut files = BTreeMap::new();
        files.insert("usr/local/bin/x".to_owned(), Entry::File { bytes: b"x".to_vec(), mode: 0o755 });
        files.insert("tmp".to_owned(), Entry::Dir);
        let (a, b) = (layer(&files).unwrap(), layer(&files).unwrap());
        assert_eq!((a.diff_id, a.gzip), (b.diff_id, b.gzip));
    }
}
