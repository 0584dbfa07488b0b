//! Scenario 8, several holders: a big blob fetched through node A's mirror
//! from 1 or 3 holders, each holder's `peerpull run` inside its own network
//! namespace behind a shaped link (`--holders-rate-mbps` each), against the
//! same blob from an upstream registry behind a link of the same rate.
//!
//! The holders' containerds hold the image (pulled from an unshaped seed
//! registry that is then stopped: the outage). For each repeat a fresh node
//! A joins only the holders measured and waits until its mirror locates the
//! blob at each of them; then the blob is fetched through its mirror as
//! containerd fetches it (a GET, read to the end, digest checked). Only the
//! transfer is timed: containerd's unpacking, the same for every source, is
//! not. The mirrors run as the chart configures them (direct read, a key).
//! Last, every holder restarts with `--max-upload-rate` below its link's
//! rate, and each holder's upload rate over a 3-holder fetch is reported
//! against that limit.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use peerpull_testbed::{
    loopback_subnet, new_psk, Containerd, ImageBuilder, Peerpull, PeerpullOptions, Platform, Upstream,
};

use crate::cli::Args;
use crate::cluster::plain_node;
use crate::http::Client;
use crate::registry::{Mode, Registry};
use crate::report::{Row, Section};
use crate::scenario::{check_blob, secs, MIB};
use crate::shaped::Link;
use crate::Progress;

const UPSTREAM: &str = "upstream behind one shaped link";
const ONE: &str = "1 holder behind a shaped link";
const THREE: &str = "3 holders, each behind a shaped link";
const LIMITED: &str = "3 holders, each with --max-upload-rate";
const LIMIT: &str = "--max-upload-rate of each holder";
const RATE: &str = "upload rate of each holder, over the transfer";
/// The bytes a holder's mirror served from its own store.
const SERVED: &str = "peerpull_mirror_bytes_served_total{source=\"local\"}";

/// A holder: its containerd, its peerpull (in the link's namespace) and the link.
struct Holder {
    _containerd: Containerd,
    peerpull: Peerpull,
    _link: Link,
}

/// Runs the scenario.
pub(crate) async fn run(args: &Args, progress: &Progress) -> anyhow::Result<Section> {
    let rate = args.holders_rate_mbps * 1_000_000;
    let mut seed = Upstream::start().await?;
    progress.say(format!("holders: building a {} MiB image", args.holders_blob_mib));
    let image = ImageBuilder::new("bench-holders").layers(&[args.holders_blob_mib << 20]).build()?;
    let name = "bench/holders:v1";
    let reference = image.push(&seed, name).await?;
    let layer = image.platforms()[0].layers[0].clone();
    let upstream_link = Link::create_nth(rate, 3).context("creating the shaped links (needs root, ip and tc)")?;
    let upstream =
        Registry::start(Some(upstream_link.ns()), upstream_link.ns_ip, 5000, Mode::Storage(&seed.storage())).await?;

    let psk = new_psk();
    let mut holders = Vec::new();
    for n in 0..3u8 {
        let link = Link::create_nth(rate, n)?;
        let containerd = plain_node(&seed.url(), None).await?;
        containerd.cri_pull(&reference).await.with_context(|| format!("holder {n} pulling from the seed"))?;
        let options = PeerpullOptions {
            mirrored: vec![seed.url()],
            direct_read: true,
            psk: Some(psk.clone()),
            netns: Some(link.ns().to_owned()),
            ..PeerpullOptions::on(link.ns_ip)
        };
        let peerpull = Peerpull::start(&containerd, options).await?;
        holders.push(Holder { _containerd: containerd, peerpull, _link: link });
        progress.say(format!("holders: holder {n} holds the image"));
    }
    // The outage: from here on the blob comes from the holders, or the shaped upstream.
    seed.stop();

    let client = Client::new();
    let upstream_url = format!("{}/v2/bench/holders/blobs/{}", upstream.url(), layer.digest);
    let (mut from_upstream, mut one, mut three) = (vec![], vec![], vec![]);
    let subnet = loopback_subnet();
    for rep in 0..args.repeats {
        let start = Instant::now();
        let (size, digest) = client.digest(&upstream_url).await?;
        from_upstream.push(secs(start.elapsed()));
        check_blob(size, &digest, &layer)?;
        for (count, samples) in [(1, &mut one), (3, &mut three)] {
            let node = Containerd::start().await?;
            let options = PeerpullOptions {
                bootstrap: holders[..count].iter().map(|h| h.peerpull.options().router_addr().to_string()).collect(),
                mirrored: vec![seed.url()],
                direct_read: true,
                psk: Some(psk.clone()),
                ..PeerpullOptions::on(subnet.node((rep * 4 + count) as u8))
            };
            let asker = Peerpull::start(&node, options).await?;
            located(&asker, &reference, count).await?;
            let url = format!("{}/v2/bench/holders/blobs/{}?ns={}", asker.mirror_url(), layer.digest, seed.host());
            let start = Instant::now();
            let (size, digest) = client.digest(&url).await?;
            samples.push(secs(start.elapsed()));
            check_blob(size, &digest, &layer)?;
        }
        progress.say(format!(
            "holders: repeat {}/{}: upstream {:.2}s, 1 holder {:.2}s, 3 holders {:.2}s",
            rep + 1,
            args.repeats,
            from_upstream[rep],
            one[rep],
            three[rep]
        ));
    }
    // Then every holder limits its uploads below its link's rate: each must keep to it.
    let limit = args.holders_limit_mbps * 1_000_000;
    for holder in &mut holders {
        let mut options = holder.peerpull.options().clone();
        options.extra = vec!["--max-upload-rate".into(), limit.to_string()];
        holder.peerpull.restart_with(options).await?;
    }
    let (mut limited, mut rates) = (vec![], vec![]);
    for rep in 0..args.repeats {
        let node = Containerd::start().await?;
        let options = PeerpullOptions {
            bootstrap: holders.iter().map(|h| h.peerpull.options().router_addr().to_string()).collect(),
            mirrored: vec![seed.url()],
            direct_read: true,
            psk: Some(psk.clone()),
            ..PeerpullOptions::on(subnet.node((rep * 4 + 4) as u8))
        };
        let asker = Peerpull::start(&node, options).await?;
        located(&asker, &reference, 3).await?;
        let mut before = Vec::new();
        for holder in &holders {
            before.push(holder.peerpull.metric(SERVED).await?);
        }
        let url = format!("{}/v2/bench/holders/blobs/{}?ns={}", asker.mirror_url(), layer.digest, seed.host());
        let start = Instant::now();
        let (size, digest) = client.digest(&url).await?;
        let took = start.elapsed();
        check_blob(size, &digest, &layer)?;
        limited.push(secs(took));
        for (holder, before) in holders.iter().zip(before) {
            let sent = holder.peerpull.metric(SERVED).await? - before;
            rates.push(sent / took.as_secs_f64() / 1e6);
        }
        progress.say(format!("holders: limited repeat {}/{}: {:.2}s", rep + 1, args.repeats, secs(took)));
    }

    let mut section = Section::new(
        "holders",
        format!(
            "8. One blob from several holders ({} MiB, {} MB/s per link)",
            args.holders_blob_mib, args.holders_rate_mbps
        ),
    );
    section.note(format!(
        "Each holder's peerpull in its own network namespace behind a veth shaped with tc tbf to {} MB/s; the \
         upstream registry behind a link of the same rate; a fresh node A per repeat joins only the holders \
         measured and fetches the blob through its mirror (GET, digest checked), as containerd does. \
         Transfer only; unpacking is not timed. Then each holder restarts with --max-upload-rate {} MB/s and the \
         3-holder fetch is repeated; each holder's rate is the bytes it served over the transfer's time. Image {:.0} MiB.",
        args.holders_rate_mbps,
        args.holders_limit_mbps,
        image.pull_size(&Platform::host()) as f64 / MIB
    ));
    section.rows.push(Row::new(UPSTREAM, "s", from_upstream));
    section.rows.push(Row::new(ONE, "s", one).vs(UPSTREAM));
    section.rows.push(Row::new(THREE, "s", three).vs(ONE));
    section.rows.push(Row::new(LIMITED, "s", limited).vs(THREE));
    section.rows.push(Row::new(LIMIT, "MB/s", vec![args.holders_limit_mbps as f64; args.repeats]));
    section.rows.push(Row::new(RATE, "MB/s", rates).vs(LIMIT));
    Ok(section)
}

/// Waits until `asker`'s mirror locates every blob of `reference` at `count` holders.
async fn located(asker: &Peerpull, reference: &str, count: usize) -> anyhow::Result<()> {
    let what = format!("node A to locate {reference} at {count} holder(s)");
    peerpull_testbed::eventually(&what, Duration::from_secs(60), || async {
        let located = asker.locate(reference).await.ok()?;
        let everywhere = located.blobs.iter().all(|b| b.providers.len() >= count);
        (!located.blobs.is_empty() && everywhere).then_some(())
    })
    .await
    .map_err(Into::into)
}
