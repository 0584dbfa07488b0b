//! containerd 2.1's `config_path` list trap, on a real containerd 2.1
//! through CRI, whichever containerd the test run chose.
//!
//! containerd 2.1 and later pull through their transfer service by default,
//! and it reads CRI's registry `config_path` as one directory: given a list
//! (`<dirA>:<dirB>`, containerd 2.2's default), it finds no `hosts.toml`,
//! pulls straight from the upstream, and the node's mirror is never asked.
//! The pull succeeds, so nothing tells the operator but `peerpull doctor`,
//! which must FAIL that node and pass it once fixed (one directory, or
//! `use_local_image_pull = true`). These tests run the containerd 2.1 that
//! `scripts/setup` installs and fail when it is not there.

#![allow(clippy::unwrap_used)]

use std::process::Output;
use std::time::Duration;

use peerpull_testbed::peerpull::configure;
use peerpull_testbed::{
    eventually, loopback_subnet, Containerd, Image, ImageBuilder, Peerpull, PeerpullOptions, PullSettings, Release,
    Upstream,
};

/// The mirror's request counter, summed over its labels.
const REQUESTS: &str = "peerpull_mirror_requests_total";

/// A containerd 2.1 node set up as `pull` says, with peerpull beside it
/// (the only node, mirroring `upstream`) and its `hosts.toml` written by
/// `peerpull configure` into the first directory of `config_path`.
struct Node {
    containerd: Containerd,
    peerpull: Peerpull,
}

impl Node {
    async fn start(upstream: &Upstream, pull: PullSettings) -> Self {
        let release = Release::named("2.1").unwrap();
        let containerd = Containerd::builder().release(release).pull(pull).start().await.unwrap();
        let mut options = PeerpullOptions::on(loopback_subnet().node(0));
        options.mirrored = vec![upstream.url()];
        configure(&containerd, &options.mirror_url(), &[upstream.url()]).await.unwrap();
        let hosts = containerd.config_path().join(upstream.host()).join("hosts.toml");
        assert!(hosts.is_file(), "peerpull configure wrote no {}", hosts.display());
        let peerpull = Peerpull::start(&containerd, options).await.unwrap();
        peerpull.wait_ready(Duration::from_secs(60)).await.unwrap();
        Self { containerd, peerpull }
    }

    /// `peerpull doctor` for this node, with its admin socket.
    async fn doctor(&self, upstream: &Upstream) -> Output {
        let o = self.peerpull.options();
        let socket = self.containerd.socket().display().to_string();
        let config = self.containerd.config_file().display().to_string();
        let registry = format!("{}:{}", o.ip, o.registry_port);
        let router = format!("{}:{}", o.ip, o.router_port);
        let metrics = format!("{}:{}", o.ip, o.metrics_port);
        let args = [
            "doctor",
            "--containerd-socket",
            &socket,
            "--containerd-config",
            &config,
            "--registry-addr",
            &registry,
            "--router-addr",
            &router,
            "--metrics-addr",
            &metrics,
            "--mirrored-registry",
            &upstream.url(),
        ];
        self.peerpull.cli(&args).await.unwrap()
    }
}

async fn pushed(upstream: &Upstream, name: &str) -> (Image, String) {
    let image = ImageBuilder::new(name).layers(&[200_000, 4096]).build().unwrap();
    let reference = image.push(upstream, &format!("e2e/{name}:v1")).await.unwrap();
    (image, reference)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_path_list_bypasses_the_mirror_and_doctor_fails_it() {
    let upstream = Upstream::start().await.unwrap();
    let (image, reference) = pushed(&upstream, "ctd2-trap").await;
    let node = Node::start(&upstream, PullSettings { config_path_list: true, use_local_image_pull: None }).await;
    let version = node.containerd.version().await.unwrap();
    assert!(version.starts_with("2.1."), "{} answers as containerd {version}", node.containerd.release());

    // The pull succeeds, straight from the upstream: the mirror saw nothing.
    let pulled = node.containerd.cri_pull(&reference).await.unwrap();
    assert_eq!(pulled.manifest_digest(), Some(image.digest()));
    let requests = node.peerpull.metric(REQUESTS).await.unwrap();
    assert_eq!(requests, 0.0, "the transfer service asked the mirror; log:\n{}", node.peerpull.log());
    let layers = &image.platforms()[0].layers;
    let downloads = upstream.blob_downloads().unwrap();
    for layer in layers {
        assert_eq!(downloads.get(&layer.digest), Some(&1), "{} from the upstream", layer.digest);
    }

    let output = node.doctor(&upstream).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    let config = std::fs::read_to_string(node.containerd.config_file()).unwrap();
    let list = format!(
        "{}:{}",
        node.containerd.config_path().display(),
        node.containerd.dir().join("docker-certs.d").display()
    );
    assert!(config.contains(&format!("config_path = '{list}'")), "{config}");
    let fail = format!("pulls through its transfer service: it takes the config_path list {list} for one directory");
    let failures: Vec<&str> = stdout.lines().filter(|l| l.starts_with("[FAIL]")).collect();
    assert_eq!(failures.len(), 1, "{stdout}");
    assert!(failures[0].contains(&fail), "missing {fail:?} in:\n{stdout}");
    let fix = format!("set config_path = \"{}\"", node.containerd.config_path().display());
    assert!(stdout.contains(&fix), "missing {fix:?} in:\n{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fix_sends_pulls_through_the_mirror_and_doctor_passes_it() {
    let upstream = Upstream::start().await.unwrap();
    let fixes = [
        (
            "one directory",
            PullSettings { config_path_list: false, use_local_image_pull: None },
            "pulls through its transfer service, which reads config_path as one directory",
        ),
        (
            "use_local_image_pull",
            PullSettings { config_path_list: true, use_local_image_pull: Some(true) },
            "pulls with CRI's local pull (use_local_image_pull = true)",
        ),
    ];
    for (n, (fix, pull, expected)) in fixes.into_iter().enumerate() {
        let (image, reference) = pushed(&upstream, &format!("ctd2-fixed-{n}")).await;
        let node = Node::start(&upstream, pull).await;
        assert!(node.containerd.version().await.unwrap().starts_with("2.1."));

        let pulled = node.containerd.cri_pull(&reference).await.unwrap();
        assert_eq!(pulled.manifest_digest(), Some(image.digest()), "{fix}");
        // One request for the tag, one for the manifest and one per blob at least.
        let asked = 2.0 + image.platforms()[0].layers.len() as f64;
        eventually(&format!("{fix}: the mirror to count the pull"), Duration::from_secs(10), || async {
            (node.peerpull.metric(REQUESTS).await.ok()? >= asked).then_some(())
        })
        .await
        .unwrap();

        let output = node.doctor(&upstream).await;
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(0), "{fix}:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
        assert!(!stdout.contains("[FAIL]"), "{fix}:\n{stdout}");
        let ok = stdout.lines().find(|l| l.starts_with("[ok]   containerd 2.1.") && l.contains(expected));
        assert!(ok.is_some(), "{fix}: missing {expected:?} in:\n{stdout}");
        assert!(stdout.contains("sends pulls to this node's mirror"), "{fix}:\n{stdout}");
    }
}
