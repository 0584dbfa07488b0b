//! The container image the chart deploys, run the way its DaemonSet runs it.
//!
//! The image is assembled (as `make image` does) from the binary these tests
//! run, imported into a node's containerd, and the chart's two containers
//! run from it under `ctr run` with what the rendered DaemonSet gives them:
//! arguments (with `$(NODE_IP)` expanded as the kubelet does), environment,
//! every volume mount (host paths, empty dirs, the PSK Secret), a read-only
//! root filesystem and no capabilities. The `configure` init step writes
//! containerd's `hosts.toml`; then `run` serves, finds a second node by a DNS
//! name, and the second node pulls an image from it during an outage. Last,
//! SIGTERM (as the kubelet stops a pod) ends it with exit code 0.
//!
//! What differs from a cluster: the container shares the host's network
//! (`--net-host`, listening on the node's IP, where the chart's pod gets the
//! registry port through `hostPort`), and the chart's bootstrap Service name
//! is replaced by `localhost` through `extraArgs`, since no cluster DNS runs
//! here.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Secret, Volume};
use peerpull_chart_tests::{expand, Renderer};
use peerpull_testbed::peerpull::{binary, configure};
use peerpull_testbed::{
    eventually, free_port, http, loopback_subnet, Containerd, ImageBuilder, Peerpull, PeerpullOptions, Upstream,
};
use tokio::process::Command;

/// The containerd namespace the image and its containers live in (kept apart from CRI's `k8s.io`).
const NS: &str = "peerpull-image";
/// The capabilities `ctr run` grants by default: all dropped, as `drop: [ALL]` asks.
const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// `ctr` against `node`'s containerd in [`NS`].
fn ctr(node: &Containerd) -> Command {
    let mut command = Command::new("ctr");
    command.arg("--address").arg(node.socket()).args(["--namespace", NS]);
    command
}

async fn ctr_ok(node: &Containerd, args: &[&str]) -> String {
    let out = ctr(node).args(args).output().await.unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "ctr {args:?}: {text}");
    text
}

/// A container started with `ctr run`, removed (killed first) when dropped.
struct Running {
    socket: PathBuf,
    id: String,
    child: Option<tokio::process::Child>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let ctr = |args: &[&str]| {
            let _ = std::process::Command::new("ctr")
                .arg("--address")
                .arg(&self.socket)
                .args(["--namespace", NS])
                .args(args)
                .output();
        };
        ctr(&["task", "kill", "--signal", "SIGKILL", &self.id]);
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        ctr(&["task", "delete", "--force", &self.id]);
        ctr(&["container", "delete", &self.id]);
    }
}

/// How the pod's volumes appear on this node.
struct Volumes {
    dir: tempfile::TempDir,
    secrets: BTreeMap<String, Secret>,
    config_maps: BTreeMap<String, ConfigMap>,
    /// The chart's host paths (its defaults, a real node's paths) and where this node has each.
    host_paths: BTreeMap<String, PathBuf>,
}

impl Volumes {
    /// The host path behind `volume`: its hostPath (created if the chart says so),
    /// or a fresh directory for an emptyDir or a Secret's or ConfigMap's files.
    fn source(&self, volume: &Volume) -> PathBuf {
        if let Some(host) = &volume.host_path {
            let path = self.host_paths.get(&host.path).unwrap_or_else(|| panic!("unmapped host path {}", host.path));
            if host.type_.as_deref() == Some("DirectoryOrCreate") {
                std::fs::create_dir_all(path).unwrap();
            }
            return path.clone();
        }
        let path = self.dir.path().join(&volume.name);
        std::fs::create_dir_all(&path).unwrap();
        if let Some(secret) = &volume.secret {
            let name = secret.secret_name.as_deref().unwrap();
            let data = self.secrets[name].data.clone().unwrap_or_default();
            for (key, value) in data {
                std::fs::write(path.join(key), value.0).unwrap();
            }
        } else if let Some(map) = &volume.config_map {
            let data = self.config_maps[&map.name].data.clone().unwrap_or_default();
            for (key, value) in data {
                std::fs::write(path.join(key), value).unwrap();
            }
        } else if volume.projected.is_some() {
            // The service account's token and CA: none without a cluster, so an empty directory.
        } else {
            assert!(volume.empty_dir.is_some(), "volume {} is of a kind this test does not map", volume.name);
        }
        path
    }
}

/// The `ctr run` arguments for `container` of the pod, on a node whose IP is `node_ip`.
fn run_args(container: &Container, volumes: &[Volume], on: &Volumes, node_ip: IpAddr) -> Vec<String> {
    let mut args = vec!["run".to_owned(), "--net-host".to_owned()];
    let security = container.security_context.clone().unwrap();
    if security.read_only_root_filesystem == Some(true) {
        args.push("--read-only".into());
    }
    assert_eq!(security.privileged, Some(false));
    assert_eq!(security.run_as_user, Some(0), "the image runs as root (containerd's socket is root's)");
    let capabilities = security.capabilities.unwrap();
    assert_eq!(capabilities.drop, Some(vec!["ALL".to_owned()]));
    assert_eq!(capabilities.add, None);
    for cap in DEFAULT_CAPS {
        args.extend(["--cap-drop".to_owned(), cap.to_owned()]);
    }
    let mut vars = BTreeMap::new();
    for env in container.env.clone().unwrap_or_default() {
        let value = match (env.value, env.value_from) {
            (Some(value), None) => value,
            (None, Some(from)) => match from.field_ref.map(|f| f.field_path).as_deref() {
                Some("status.hostIP") => node_ip.to_string(),
                // No API server here: the daemon reads no zone for it, and says so.
                Some("spec.nodeName") => "test-node".to_owned(),
                other => panic!("env {}: a field this test does not map: {other:?}", env.name),
            },
            other => panic!("env {}: {other:?}", env.name),
        };
        args.extend(["--env".to_owned(), format!("{}={value}", env.name)]);
        vars.insert(env.name, value);
    }
    for mount in container.volume_mounts.clone().unwrap_or_default() {
        let volume = volumes.iter().find(|v| v.name == mount.name).unwrap();
        let mode = if mount.read_only == Some(true) { "ro" } else { "rw" };
        let source = on.source(volume);
        args.extend([
            "--mount".to_owned(),
            format!("type=bind,src={},dst={},options=rbind:{mode}", source.display(), mount.mount_path),
        ]);
    }
    args.push(container.image.clone().unwrap());
    args.push(format!("pp-{}", container.name));
    args.push("/usr/local/bin/peerpull".into());
    args.extend(container.args.clone().unwrap_or_default().iter().map(|a| expand(a, &vars)));
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_runs_as_the_daemonset_runs_it_and_serves_a_peer_during_an_outage() {
    let mut upstream = Upstream::start().await.unwrap();
    let app = ImageBuilder::new("e2e-image-app").layers(&[3 << 20, 20_000]).build().unwrap();
    let reference = app.push(&upstream, "e2e/app:v1").await.unwrap();

    // Node A runs peerpull from the image; node B runs the binary itself.
    let a = Containerd::start().await.unwrap();
    let b = Containerd::start().await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("peerpull.oci.tar");
    let built = peerpull_image::build(&binary().unwrap(), env!("CARGO_PKG_VERSION"), &archive).unwrap();
    println!(
        "image {} {}: layer {:.1} MiB, unpacked {:.1} MiB",
        built.reference,
        built.digest,
        built.layer_size as f64 / 1048576.0,
        built.unpacked_size as f64 / 1048576.0
    );
    ctr_ok(&a, &["images", "import", archive.to_str().unwrap()]).await;

    let a_ip = loopback_subnet().node(0);
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut b_options = PeerpullOptions {
        registry_port: free_port(localhost).unwrap(),
        router_port: free_port(localhost).unwrap(),
        metrics_port: free_port(localhost).unwrap(),
        mirrored: vec![upstream.url()],
        direct_read: true,
        ..PeerpullOptions::on(localhost)
    };
    let data_dir = work.path().join("data");
    // The chart's defaults, but for the address to listen on, the registry and the peer's name.
    let values = format!(
        r#"
service:
  listenAddress: "{a_ip}"
peerpull:
  mirroredRegistries: ["{upstream}"]
  extraArgs: ["--bootstrap=dns:localhost:{b_router}"]
"#,
        upstream = upstream.url(),
        b_router = b_options.router_port,
    );
    let manifest = Renderer::get().unwrap().render(&values, &[]).unwrap();
    let daemonset: DaemonSet = manifest.typed("DaemonSet", "peerpull").unwrap();
    let secret: Secret = manifest.typed("Secret", "peerpull-psk").unwrap();
    let psk = String::from_utf8(secret.data.clone().unwrap()["psk"].0.clone()).unwrap();
    let pod = daemonset.spec.unwrap().template.spec.unwrap();
    let volumes = pod.volumes.clone().unwrap();
    let host_paths = [
        ("/run/containerd/containerd.sock", a.socket().to_owned()),
        ("/var/lib/containerd/io.containerd.content.v1.content", a.content_path()),
        ("/etc/containerd/certs.d", a.config_path().to_owned()),
        ("/var/lib/peerpull", data_dir.clone()),
    ];
    let on = Volumes {
        dir: tempfile::tempdir().unwrap(),
        secrets: [("peerpull-psk".to_owned(), secret)].into(),
        config_maps: [("peerpull-preheat".to_owned(), manifest.typed("ConfigMap", "peerpull-preheat").unwrap())].into(),
        host_paths: host_paths.into_iter().map(|(chart, here)| (chart.to_owned(), here)).collect(),
    };
    let init = &pod.init_containers.as_ref().unwrap()[0];
    let main = &pod.containers[0];
    assert_eq!(main.image.as_deref(), Some(built.reference.as_str()), "the chart's default image is the one built");

    // The init step: configure writes containerd's hosts.toml, then exits.
    let configure_args = run_args(init, &volumes, &on, a_ip);
    let mut rm = vec!["run".to_owned(), "--rm".to_owned()];
    rm.extend(configure_args.into_iter().skip(1));
    let out = ctr(&a).args(&rm).output().await.unwrap();
    assert!(out.status.success(), "configure: {}", String::from_utf8_lossy(&out.stderr));
    let hosts = std::fs::read_to_string(a.config_path().join(upstream.host()).join("hosts.toml")).unwrap();
    assert!(hosts.contains(&format!("[host.'http://{a_ip}:5000']")), "{hosts}");

    // Node B, with the cluster's key, is the peer node A finds by name.
    b_options.psk = Some(psk.trim().to_owned());
    configure(&b, &b_options.mirror_url(), &[upstream.url()]).await.unwrap();
    let b_peerpull = Peerpull::start(&b, b_options).await.unwrap();

    let started = Instant::now();
    // The container's output goes to a file: a pipe nobody reads would block its logging once full.
    let log_path = work.path().join("container.log");
    let log_file = std::fs::File::create(&log_path).unwrap();
    let child = ctr(&a)
        .args(run_args(main, &volumes, &on, a_ip))
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let mut container = Running { socket: a.socket().to_owned(), id: format!("pp-{}", main.name), child: Some(child) };
    let readyz = format!("http://{a_ip}:9090/readyz");
    let ready = eventually("the container to be ready", Duration::from_secs(60), || async {
        (http::get(&readyz).await.ok()?.status == 200).then_some(())
    })
    .await;
    if let Err(error) = ready {
        let why = http::get(&format!("{readyz}?verbose")).await.map(|r| String::from_utf8_lossy(&r.body).into_owned());
        ctr_ok(&a, &["task", "kill", "--signal", "SIGKILL", &container.id]).await;
        let _ = tokio::time::timeout(Duration::from_secs(10), container.child.take().unwrap().wait()).await;
        panic!("{error}: {why:?}\n{}", log());
    }
    println!("ready {:?} after ctr run", started.elapsed());

    // Node A pulls the image while the upstream is up; then the outage.
    let pulled = a.cri_pull(&reference).await.unwrap();
    assert_eq!(pulled.manifest_digest(), Some(app.digest()));
    upstream.stop();
    let a_peer = b_peerpull.status().await.unwrap().peers.len();
    assert_eq!(a_peer, 1, "node B knows node A");
    eventually("node B to locate every blob at node A", Duration::from_secs(30), || async {
        let located = b_peerpull.locate(&reference).await.ok()?;
        (!located.blobs.is_empty() && located.blobs.iter().all(|blob| !blob.providers.is_empty())).then_some(())
    })
    .await
    .unwrap();
    let pulled = b.cri_pull(&reference).await.unwrap();
    assert_eq!(pulled.manifest_digest(), Some(app.digest()));
    for blob in app.blobs() {
        assert!(b.has_content(&blob.digest).await.unwrap(), "node B lacks {}", blob.digest);
    }

    // The kubelet stops the pod with SIGTERM: peerpull drains and exits 0.
    ctr_ok(&a, &["task", "kill", "--signal", "SIGTERM", &container.id]).await;
    let status =
        tokio::time::timeout(Duration::from_secs(40), container.child.as_mut().unwrap().wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(0), "peerpull's exit after SIGTERM; its output:\n{}", log());
    assert!(data_dir.join("identity.key").exists(), "the node's identity is kept in its data dir");
}
