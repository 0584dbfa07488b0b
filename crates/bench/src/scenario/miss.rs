//! Scenario 4, miss overhead: a node whose mirror is configured pulls an
//! image no peer holds (its mirror answers 404, containerd falls back to the
//! upstream) and a node without the mirror pulls the same image. Each
//! repeat uses a new image; the order of the two pulls alternates; each pull
//! starts once the disk's dirty pages are written ([`settle`]).

use std::time::Instant;

use anyhow::Context as _;
use peerpull_testbed::{ImageBuilder, Upstream};

use crate::cli::Args;
use crate::cluster::{peer_cluster, plain_node};
use crate::report::{Row, Section};
use crate::scenario::{secs, settle};
use crate::Progress;

const PLAIN: &str = "pull, no mirror configured";
const MIRROR: &str = "pull, mirror configured (miss)";

/// Runs the scenario.
pub(crate) async fn run(args: &Args, progress: &Progress) -> anyhow::Result<Section> {
    let upstream = Upstream::start().await?;
    let nodes = peer_cluster(2, &upstream.url()).await?;
    let plain = plain_node(&upstream.url(), None).await?;
    let (mut with, mut without, mut added) = (vec![], vec![], vec![]);
    for rep in 0..args.repeats {
        let image = ImageBuilder::new(&format!("bench-miss-{rep}")).layers(&[args.miss_layer_kib << 10]).build()?;
        let reference = image.push(&upstream, &format!("bench/miss{rep}:v1")).await?;
        let mirrored = async {
            settle().await?;
            let start = Instant::now();
            nodes[0].containerd.cri_pull(&reference).await.context("pulling through the mirror")?;
            anyhow::Ok(secs(start.elapsed()))
        };
        let direct = async {
            settle().await?;
            let start = Instant::now();
            plain.cri_pull(&reference).await.context("pulling without the mirror")?;
            anyhow::Ok(secs(start.elapsed()))
        };
        let (m, d) = if rep % 2 == 0 {
            let m = mirrored.await?;
            (m, direct.await?)
        } else {
            let d = direct.await?;
            (mirrored.await?, d)
        };
        with.push(m);
        without.push(d);
        added.push((m - d) * 1e3);
        progress.say(format!(
            "miss: repeat {}/{}: {:.0} ms with the mirror, {:.0} ms without",
            rep + 1,
            args.repeats,
            m * 1e3,
            d * 1e3
        ));
    }
    let mut section =
        Section::new("miss", format!("4. Miss overhead ({} KiB image no peer holds)", args.miss_layer_kib));
    section.note("CRI PullImage of a new image on a peerpull node (2-node cluster, nobody holds it) and on a node without the mirror; `added time` is the per-repeat difference.");
    section.rows.push(Row::new(PLAIN, "s", without));
    section.rows.push(Row::new(MIRROR, "s", with).vs(PLAIN));
    section.rows.push(Row::new("added time", "ms", added));
    Ok(section)
}
