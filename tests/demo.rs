//! `make demo`: a local cluster survives a registry outage.
//!
//! Starts three nodes, each a real containerd with `peerpull configure` and
//! `peerpull run` beside it on its own loopback address, and a real upstream
//! registry. It pushes a sample image, pulls it on node 1 through CRI (as
//! kubelet does), takes the upstream down, and pulls it on nodes 2 and 3
//! from their peers. Then the upstream comes back with a new image that all
//! three nodes pull at the same moment, and the upstream sends it once for
//! the whole cluster. At the end it prints, phase by phase, what each node's
//! own pull got from where and what it sent its peers.
//!
//! It exits non-zero when a pulled digest differs, a node's containerd got
//! less than the whole image through its mirror, the upstream sent a blob
//! more than once, or a byte came from the upstream during the outage.
//! Everything is torn down on exit or Ctrl-C; with `KEEP=1` the cluster
//! keeps running and the commands to play with it are printed.
//!
//! Implementation notes: the numbers are differences of each node's
//! counters (`/metrics`) between snapshots taken around each pull. A
//! mirror's `peerpull_mirror_bytes_served_total` counts what it answered
//! its containerd and its peers alike; while one node pulls alone, the
//! others only answer it, so its own counters are its own pull (the demo
//! checks that it sent no peer anything meanwhile). In the rollout every
//! node pulls and answers peers at once, so there a node's own pull is
//! what it served less what it sent, split by how the bytes reached it:
//! fetched from the upstream itself, or received from peers.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use peerpull_e2e::Cluster;
use peerpull_testbed::{Error, ImageBuilder, Peerpull, Platform};

const MIB: u64 = 1 << 20;
const SEEN: Duration = Duration::from_secs(60);
/// How long the mirrors may take to finish sending once the pulls are done.
const SETTLE: Duration = Duration::from_secs(10);

/// Where a mirror found what it served: the `source` label's values, and
/// the words the summary prints for them.
const SOURCES: [(&str, &str); 4] = [("local", "held"), ("spool", "spool"), ("peer", "peers"), ("upstream", "upstream")];
/// Where `upstream` is in [`SOURCES`].
const UPSTREAM: usize = 3;

/// What the summary's words mean.
const LEGEND: [&str; 7] = [
    "its pull: what the node's containerd got from its mirror. While a node pulls alone, by where",
    "  its mirror found it: held = its own containerd; spool = its spool (what it fetched or followed);",
    "  peers = a holder; upstream = the upstream, fetched by this node or by the blob's fetcher.",
    "  In the rollout, by how the bytes reached the node: fetched from the upstream itself, or from",
    "  peers (the blob's fetcher or another follower).",
    "sent to peers: what its mirror answered other nodes, as a holder, a fetcher or a follower.",
    "fetched from the upstream: by this node itself, for its own pull or for its followers.",
];

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let keep = std::env::var("KEEP").is_ok_and(|v| !v.is_empty() && v != "0");
    let outcome = tokio::select! {
        outcome = demo(keep) => outcome,
        _ = tokio::signal::ctrl_c() => {
            println!("\ninterrupted: tearing the cluster down");
            return std::process::ExitCode::from(130);
        }
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("demo failed: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// One node's counters at one moment, in bytes.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    /// What its mirror served (its containerd and its peers), by [`SOURCES`].
    served: [f64; 4],
    /// What it sent to peers (`peerpull_peer_upload_bytes_total`).
    sent: f64,
    /// What it received from peers, any zone (`peerpull_peer_bytes_received_total`).
    received: f64,
    /// What it fetched from the upstream itself (`peerpull_upstream_bytes_total`).
    fetched: f64,
}

/// Every node's counters and the upstream's access log at one moment.
#[derive(Debug, Clone)]
struct Snapshot {
    nodes: Vec<Counters>,
    /// Blob bytes the upstream has sent (its access log).
    upstream: f64,
}

/// What one phase did, node by node (bytes).
#[derive(Debug)]
struct Phase {
    title: String,
    /// How long each node's pull took; `None` for a node that did not pull.
    took: Vec<Option<Duration>>,
    /// What each node's containerd got from its mirror, by [`SOURCES`];
    /// known when it pulled alone.
    own: Vec<Option<[f64; 4]>>,
    /// Each node's counters over the phase.
    counters: Vec<Counters>,
    /// Blob bytes the upstream sent during the phase.
    upstream: f64,
}

async fn demo(keep: bool) -> Result<(), Error> {
    step("starting 3 nodes (containerd + peerpull each) and an upstream registry");
    let mut cluster = Cluster::start(3).await?;
    println!("  upstream registry   {}", cluster.upstream.url());
    for (n, node) in cluster.nodes.iter().enumerate() {
        println!(
            "  node {}              mirror {}  containerd {}",
            n + 1,
            node.peerpull.mirror_url(),
            node.containerd.socket().display()
        );
    }

    let image = ImageBuilder::new("peerpull-demo").layers(&[24 * MIB, 16 * MIB, 8 * MIB, MIB]).build()?;
    let size = image.pull_size(&Platform::host());
    let reference = image.push(&cluster.upstream, "demo/app:v1").await?;
    step(&format!("pushed {reference} ({}, {:.1} MiB)", short(image.digest()), size as f64 / MIB as f64));

    step("node 1 pulls it through CRI: no peer has it, so the cluster fetches it from the upstream");
    let mut first = Phase::new("first pull: node 1 pulls, the upstream is up", cluster.nodes.len());
    first.pull_alone(&cluster, 0, &reference, image.digest()).await?;
    first.through_mirrors(size)?;
    at_most_once(&cluster, &image)?;

    step("THE OUTAGE: the upstream registry goes down");
    cluster.upstream.stop();
    let direct = peerpull_testbed::http::get(&format!("{}/v2/", cluster.upstream.url())).await;
    println!(
        "  GET {}/v2/ -> {}",
        cluster.upstream.url(),
        if direct.is_err() { "connection refused" } else { "answered?!" }
    );
    for n in [1, 2] {
        cluster.wait_located(n, &reference, &[0], SEEN).await?;
    }
    println!("  node 1 advertised the image in the DHT; nodes 2 and 3 find every blob there:");
    let located = cluster.nodes[1].peerpull.cli(&["locate", &reference]).await?;
    println!("  $ peerpull locate {reference}    # on node 2");
    for line in String::from_utf8_lossy(&located.stdout).lines() {
        println!("    {line}");
    }

    let mut outage = Phase::new("outage: nodes 2 then 3 pull, the upstream is down", cluster.nodes.len());
    for n in [1, 2] {
        step(&format!("node {} pulls {reference} during the outage", n + 1));
        outage.pull_alone(&cluster, n, &reference, image.digest()).await?;
    }
    outage.through_mirrors(size)?;
    outage.nothing_from_upstream()?;

    step("THE ROLLOUT: the upstream is back with a new image; all 3 nodes pull it at the same moment");
    cluster.upstream.restart().await?;
    let fresh = ImageBuilder::new("peerpull-demo-v2").layers(&[24 * MIB, 16 * MIB, 8 * MIB]).build()?;
    let fresh_size = fresh.pull_size(&Platform::host());
    let fresh_ref = fresh.push(&cluster.upstream, "demo/app:v2").await?;
    let mut rollout =
        Phase::new("rollout: all 3 nodes pull a new image at once, the upstream is up", cluster.nodes.len());
    let before = Snapshot::take(&cluster).await?;
    let started = Instant::now();
    let all = futures::future::join_all((0..3).map(|n| pull(&cluster, n, &fresh_ref, fresh.digest()))).await;
    let took = started.elapsed();
    for (n, result) in all.into_iter().enumerate() {
        rollout.took[n] = Some(result?);
    }
    rollout.add(&Snapshot::take(&cluster).await?.since(&before));
    println!(
        "  {:.1} MiB image on 3 nodes at once in {took:.2?}; the upstream sent {:.1} MiB = {:.2}x the image \
         (without peerpull: 3x)",
        mib(fresh_size as f64),
        mib(rollout.upstream),
        rollout.upstream / fresh_size as f64
    );
    rollout.through_mirrors(fresh_size)?;
    at_most_once(&cluster, &fresh)?;

    println!("\n== summary, phase by phase (MiB)");
    for line in LEGEND {
        println!("  {line}");
    }
    println!("{}", first.table().trim_end());
    println!("{}", outage.table().trim_end());
    println!("{}", rollout.table().trim_end());
    println!("  every pull above matched the pushed digest");
    if keep {
        println!("{}", keep_instructions(&cluster, &reference)?);
        std::mem::forget(cluster);
    }
    Ok(())
}

impl Phase {
    fn new(title: &str, nodes: usize) -> Self {
        Self {
            title: title.to_owned(),
            took: vec![None; nodes],
            own: vec![None; nodes],
            counters: vec![Counters::default(); nodes],
            upstream: 0.0,
        }
    }

    /// Node `n` pulls `reference` while no other node does: what its mirror
    /// served over the pull is its own pull's, as long as it sent peers
    /// nothing meanwhile (checked).
    async fn pull_alone(&mut self, cluster: &Cluster, n: usize, reference: &str, digest: &str) -> Result<(), Error> {
        let before = Snapshot::take(cluster).await?;
        let took = pull(cluster, n, reference, digest).await?;
        let delta = Snapshot::take(cluster).await?.since(&before);
        let mine = delta.nodes[n];
        if mine.sent > 0.0 {
            let sent = mib(mine.sent);
            return Err(demo_failed(format!("node {} sent peers {sent:.1} MiB while it pulled alone", n + 1)));
        }
        let own = self.own[n].get_or_insert([0.0; 4]);
        for (own, served) in own.iter_mut().zip(mine.served) {
            *own += served;
        }
        self.took[n] = Some(took);
        self.add(&delta);
        Ok(())
    }

    fn add(&mut self, delta: &Snapshot) {
        for (sum, node) in self.counters.iter_mut().zip(&delta.nodes) {
            *sum = sum.plus(node);
        }
        self.upstream += delta.upstream;
    }

    /// Fails unless no byte came from the upstream during the phase: its
    /// access log, the nodes' fetches and their pulls all say none.
    fn nothing_from_upstream(&self) -> Result<(), Error> {
        let fetched: f64 = self.counters.iter().map(|c| c.fetched).sum();
        let answered: f64 = self.own.iter().flatten().map(|own| own[UPSTREAM]).sum();
        println!(
            "  bytes from the upstream during the outage: {:.1} MiB sent (its access log), {:.1} MiB fetched, \
             {:.1} MiB in the pulls",
            mib(self.upstream),
            mib(fetched),
            mib(answered)
        );
        if self.upstream > 0.0 || fetched > 0.0 || answered > 0.0 {
            return Err(demo_failed("bytes came from the upstream during the outage".to_owned()));
        }
        Ok(())
    }

    /// Fails unless each node that pulled got at least `size` bytes through its mirror.
    fn through_mirrors(&self, size: u64) -> Result<(), Error> {
        for (n, total) in self.own_totals().into_iter().enumerate() {
            if let Some(total) = total.filter(|t| *t < size as f64) {
                let (got, of) = (mib(total), mib(size as f64));
                return Err(demo_failed(format!("node {} got {got:.1} of {of:.1} MiB through its mirror", n + 1)));
            }
        }
        Ok(())
    }

    /// What each node's containerd got from its mirror, if it pulled.
    fn own_totals(&self) -> Vec<Option<f64>> {
        (self.took.iter().zip(&self.own).zip(&self.counters))
            .map(|((took, own), counters)| {
                took.map(|_| match own {
                    Some(own) => own.iter().sum(),
                    None => counters.served.iter().sum::<f64>() - counters.sent,
                })
            })
            .collect()
    }

    /// The phase's table: a row per node, then what the upstream sent.
    fn table(&self) -> String {
        let mib_cell = |value: f64| format!("{:.1}", mib(value));
        let alone = self.own.iter().any(Option::is_some);
        let mut out = format!("\n  {}\n", self.title);
        let (columns, widths, split): (&[&str], &[usize], usize) = if alone {
            let [held, spool, peers, upstream] = SOURCES.map(|(_, word)| word);
            (&[held, spool, peers, upstream, "total", "peers", "the upstream"], &[6, 6, 6, 8, 6, 9, 13], 5)
        } else {
            (&["fetched itself", "from peers", "total", "peers"], &[14, 11, 6, 9], 3)
        };
        let group = if alone { "its pull, answered from:" } else { "its pull:" };
        let above: &[&str] = if alone { &["sent to", "fetched from"] } else { &["sent to"] };
        let span = widths[..split].iter().sum::<usize>() + split - 1;
        let mut head = format!("  {:<4} {:>10}   {group:<span$}  ", "", "");
        for (label, width) in above.iter().zip(&widths[split..]) {
            let _ = write!(head, " {label:>width$}");
        }
        let _ = writeln!(out, "{head}");
        let columns: Vec<String> = columns.iter().map(|c| (*c).to_owned()).collect();
        out += &row("node", "pull time", &columns, widths, split);
        for (n, (counters, total)) in self.counters.iter().zip(self.own_totals()).enumerate() {
            let took = self.took[n].map_or("-".to_owned(), |t| format!("{t:.2?}"));
            let mut cells: Vec<String> = match (self.own[n], total) {
                (Some(own), Some(total)) => own.iter().chain([&total]).map(|b| mib_cell(*b)).collect(),
                (_, Some(total)) => [counters.fetched, counters.received, total].map(mib_cell).to_vec(),
                (_, None) => vec!["-".to_owned(); split],
            };
            cells.push(mib_cell(counters.sent));
            if alone {
                cells.push(mib_cell(counters.fetched));
            }
            out += &row(&(n + 1).to_string(), &took, &cells, widths, split);
        }
        let _ = write!(out, "  the upstream sent {:.1} MiB (its access log)", mib(self.upstream));
        out
    }
}

/// A line of a phase's table: the node and its pull time, the cells of its
/// pull, and after a gap the cells of what it did for others.
fn row(node: &str, took: &str, cells: &[String], widths: &[usize], split: usize) -> String {
    let mut line = format!("  {node:<4} {took:>10}  ");
    for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
        if i == split {
            line += "  ";
        }
        let _ = write!(line, " {cell:>width$}");
    }
    line + "\n"
}

impl Counters {
    async fn read(peerpull: &Peerpull) -> Result<Self, Error> {
        let mut served = [0.0; 4];
        for (value, (source, _)) in served.iter_mut().zip(SOURCES) {
            *value = peerpull.metric(&format!(r#"peerpull_mirror_bytes_served_total{{source="{source}"}}"#)).await?;
        }
        Ok(Self {
            served,
            sent: peerpull.metric("peerpull_peer_upload_bytes_total").await?,
            received: peerpull.metric("peerpull_peer_bytes_received_total").await?,
            fetched: peerpull.metric("peerpull_upstream_bytes_total").await?,
        })
    }

    fn plus(&self, other: &Self) -> Self {
        let mut served = self.served;
        for (a, b) in served.iter_mut().zip(other.served) {
            *a += b;
        }
        Self {
            served,
            sent: self.sent + other.sent,
            received: self.received + other.received,
            fetched: self.fetched + other.fetched,
        }
    }

    fn minus(&self, other: &Self) -> Self {
        let negated = Self {
            served: other.served.map(|b| -b),
            sent: -other.sent,
            received: -other.received,
            fetched: -other.fetched,
        };
        self.plus(&negated)
    }
}

impl Snapshot {
    /// Every node's counters once no mirror is sending a body (a peer's
    /// bytes count as sent when its response ends).
    async fn take(cluster: &Cluster) -> Result<Self, Error> {
        for (n, node) in cluster.nodes.iter().enumerate() {
            let what = format!("node {}'s mirror to finish sending", n + 1);
            peerpull_testbed::eventually(&what, SETTLE, || async {
                let sending = node.peerpull.metric("peerpull_transfers_in_flight").await.ok()?;
                (sending == 0.0).then_some(())
            })
            .await?;
        }
        let mut nodes = Vec::new();
        for node in &cluster.nodes {
            nodes.push(Counters::read(&node.peerpull).await?);
        }
        Ok(Self { nodes, upstream: cluster.upstream.blob_bytes_served()? as f64 })
    }

    fn since(&self, before: &Self) -> Self {
        let nodes = self.nodes.iter().zip(&before.nodes).map(|(now, then)| now.minus(then)).collect();
        Self { nodes, upstream: self.upstream - before.upstream }
    }
}

/// Fails unless the upstream served each blob of `image` at most once for the whole cluster.
fn at_most_once(cluster: &Cluster, image: &peerpull_testbed::Image) -> Result<(), Error> {
    let downloads = cluster.upstream.blob_downloads()?;
    let most = image.blobs().iter().map(|b| downloads.get(&b.digest).copied().unwrap_or(0)).max().unwrap_or(0);
    println!("  the upstream served each blob of the image at most {most} time(s) for the whole cluster");
    if most > 1 {
        return Err(demo_failed(format!("the upstream served a blob of {} {most} times", short(image.digest()))));
    }
    Ok(())
}

fn demo_failed(what: String) -> Error {
    Error::Io { what, source: std::io::ErrorKind::Other.into() }
}

/// Node `n` pulls `reference` through CRI; fails unless it got `digest`.
async fn pull(cluster: &Cluster, n: usize, reference: &str, digest: &str) -> Result<Duration, Error> {
    let started = Instant::now();
    let pulled = cluster.nodes[n].containerd.cri_pull(reference).await?;
    let took = started.elapsed();
    let got = pulled.manifest_digest().unwrap_or("none");
    if got != digest {
        return Err(demo_failed(format!("node {} pulled {got}, not the pushed {digest}", n + 1)));
    }
    println!("  node {} pulled {} in {:.2?} (matches the pushed digest)", n + 1, short(got), took);
    Ok(took)
}

fn mib(bytes: f64) -> f64 {
    bytes / MIB as f64
}

fn keep_instructions(cluster: &Cluster, reference: &str) -> Result<String, Error> {
    let mut pids = Vec::new();
    let mut dirs = vec![cluster.upstream.dir().display().to_string()];
    let mut out = String::from("\n== KEEP=1: the cluster keeps running (the upstream stays down)\n");
    for (n, node) in cluster.nodes.iter().enumerate() {
        pids.extend(node.peerpull.pid());
        pids.extend(node.containerd.pid());
        dirs.push(node.peerpull.data_dir().display().to_string());
        dirs.push(node.containerd.dir().display().to_string());
        let sock = node.containerd.socket().display();
        let _ = writeln!(out, "  node {}: ctr --address {sock} -n k8s.io images ls", n + 1);
        let hosts = node.containerd.config_path().display();
        let _ = writeln!(out, "          ctr --address {sock} -n k8s.io images pull --hosts-dir {hosts} {reference}");
        let _ = writeln!(out, "          curl -s {}/metrics | grep ^peerpull_", node.peerpull.metrics_url());
    }
    let _ = writeln!(out, "  a mirror by hand: curl -sI '{}'", cluster.mirror_url(2, "demo/app", "manifests", "v1"));
    let script = cluster.upstream.dir().parent().unwrap_or(cluster.upstream.dir()).join("peerpull-demo-teardown.sh");
    let body = format!(
        "#!/bin/sh\n# Stops the demo cluster and removes its files.\nkill {} 2>/dev/null\nsleep 2\nfor d in {}; do\n  grep -o \" $d[^ ]*\" /proc/self/mounts | sort -r | xargs -r -n1 umount -l\n  rm -rf \"$d\"\ndone\n",
        pids.iter().map(u32::to_string).collect::<Vec<_>>().join(" "),
        dirs.join(" ")
    );
    std::fs::write(&script, body).map_err(|source| Error::Io { what: "writing the teardown script".into(), source })?;
    let _ = write!(out, "  tear it down: sh {}", script.display());
    Ok(out)
}

fn step(text: &str) {
    println!("\n==> {text}");
}

fn short(digest: &str) -> &str {
    &digest[..digest.len().min(19)]
}
