//! Scenario 12, zones: a new image on every node at once, the nodes in two
//! zones with a delay between them (`peerpull_testbed::zones`), behind an
//! upstream whose link into each zone is shaped; once with `--zone` on
//! every node (zones on) and once without (zones off), each on fresh nodes.
//!
//! Reported: the time until every node has the image, the blob bytes the
//! upstream served, and the bytes that crossed between zones, against the
//! image size (the goal: the upstream sends 1× the image, and about one copy
//! crosses into the other zone). Bytes crossing zones are counted where they
//! arrive: a counting rule per node of another zone in each node's
//! namespace (`iptables` byte counters), so they are measured the same way
//! whether the nodes know their zones or not.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use peerpull_testbed::zones::Network;
use peerpull_testbed::{Containerd, ImageBuilder, Platform, Upstream};

use crate::cli::Args;
use crate::report::{Row, Section};
use crate::scenario::{secs, settle, MIB};
use crate::Progress;

/// The set-ups, in the order they run: the baseline first.
const SETUPS: [&str; 2] = ["zones off", "zones on"];
/// The counting chain in each node's namespace.
const CHAIN: &str = "ppzones";

/// Runs the scenario.
pub(crate) async fn run(args: &Args, progress: &Progress) -> anyhow::Result<Section> {
    let per_zone = args.zones_nodes_per_zone.max(1);
    let rate = args.zones_rate_mbps * 1_000_000;
    let network = Network::builder()
        .zone("a", per_zone)
        .zone("b", per_zone)
        .delay(Duration::from_millis(args.zones_delay_ms))
        .upstream_rate(rate)
        .create()
        .context("creating the zones network (needs root, ip, iptables and perl)")?;
    let upstream = Upstream::start_on(network.upstream_ip()).await?;
    let nodes = network.members().len();
    let counters = Counters::install(&network)?;
    let mut results: Vec<(Vec<f64>, Vec<f64>, Vec<f64>)> = Vec::new();
    let mut image_mib = 0.0;
    for setup in SETUPS {
        progress.say(format!("zones: starting {nodes} nodes in 2 zones ({setup})"));
        let options = (0..nodes)
            .map(|n| {
                let mut options = network.peerpull_options(n);
                if setup == "zones on" {
                    options.extra.extend(["--zone".to_owned(), network.member(n).zone.clone()]);
                }
                options
            })
            .collect();
        let cluster = peerpull_e2e::start_nodes_as(options, &upstream.url(), peerpull_e2e::Setup::default())
            .await
            .context("starting peerpull nodes")?;
        let (mut times, mut served, mut crossed) = (vec![], vec![], vec![]);
        for rep in 0..args.repeats {
            let name = format!("bench/zones-{}-{rep}:v1", setup.replace(' ', "-"));
            let image = ImageBuilder::new(&name).layers(&[args.zones_image_mib << 20]).build()?;
            let reference = image.push(&upstream, &name).await?;
            image_mib = image.pull_size(&Platform::host()) as f64 / MIB;
            settle().await?;
            let (before_served, before_crossed) = (upstream.blob_bytes_served()?, counters.read()?);
            let start = Instant::now();
            let containerds: Vec<&Containerd> = cluster.iter().map(|n| &n.containerd).collect();
            futures::future::try_join_all(containerds.iter().map(|c| c.cri_pull(&reference))).await?;
            times.push(secs(start.elapsed()));
            served.push((upstream.blob_bytes_served()? - before_served) as f64 / MIB);
            crossed.push((counters.read()? - before_crossed) as f64 / MIB);
            progress.say(format!(
                "zones: {setup}: repeat {}/{}: {:.2} s, upstream served {:.1} MiB, {:.1} MiB crossed zones",
                rep + 1,
                args.repeats,
                times[rep],
                served[rep],
                crossed[rep]
            ));
        }
        results.push((times, served, crossed));
    }
    Ok(section(args, nodes, image_mib, &results))
}

fn section(args: &Args, nodes: usize, image_mib: f64, results: &[(Vec<f64>, Vec<f64>, Vec<f64>)]) -> Section {
    let mut section = Section::new(
        "zones",
        format!(
            "12. Zones: {} MiB on {nodes} nodes at once, 2 zones {} ms apart, upstream {} MB/s into each zone",
            args.zones_image_mib, args.zones_delay_ms, args.zones_rate_mbps
        ),
    );
    section.note("Time: from the first CRI PullImage until every node has the image. Upstream: blob bytes the upstream served (its access log). Crossed zones: bytes every node received from nodes of the other zone (iptables counters where they arrive), the same whether the nodes know their zones or not.");
    section.note("Zones on: every node runs with --zone (same-zone holders first; a follower of the fetch from the other zone streams from one of its own zone). Zones off: no --zone. Fresh nodes per set-up, an image per repeat, the chart's settings otherwise.");
    let n = results.first().map_or(0, |r| r.0.len());
    let size = "image size";
    section.rows.push(Row::new(size, "MiB", vec![image_mib; n]));
    for (setup, (times, served, crossed)) in SETUPS.iter().zip(results) {
        let mut time = Row::new(format!("{setup}: time to all nodes"), "s", times.clone());
        if *setup != SETUPS[0] {
            time = time.vs(format!("{}: time to all nodes", SETUPS[0]));
        }
        section.rows.push(time);
        section.rows.push(Row::new(format!("{setup}: upstream bytes"), "MiB", served.clone()).vs(size));
        section.rows.push(Row::new(format!("{setup}: bytes crossing zones"), "MiB", crossed.clone()).vs(size));
    }
    section
}

/// Byte counters of what each node receives from nodes of the other zone.
struct Counters {
    namespaces: Vec<String>,
}

impl Counters {
    fn install(network: &Network) -> anyhow::Result<Self> {
        let members = network.members();
        for member in members {
            iptables(&member.netns, &["-N", CHAIN])?;
            iptables(&member.netns, &["-I", "INPUT", "1", "-j", CHAIN])?;
            for other in members.iter().filter(|o| o.zone != member.zone) {
                iptables(&member.netns, &["-A", CHAIN, "-s", &format!("{}/32", other.ip)])?;
            }
        }
        Ok(Self { namespaces: members.iter().map(|m| m.netns.clone()).collect() })
    }

    /// Bytes received from the other zone so far, by every node.
    fn read(&self) -> anyhow::Result<u64> {
        let mut total = 0;
        for ns in &self.namespaces {
            let listed = iptables(ns, &["-L", CHAIN, "-v", "-x", "-n"])?;
            total += listed
                .lines()
                .skip(2)
                .filter_map(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
        }
        Ok(total)
    }
}

/// Runs `iptables args…` in namespace `ns`; its standard output.
fn iptables(ns: &str, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("ip")
        .args(["netns", "exec", ns, "iptables"])
        .args(args)
        .output()
        .with_context(|| format!("running iptables {} in {ns}", args.join(" ")))?;
    if !output.status.success() {
        bail!("iptables {} in {ns} failed: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
