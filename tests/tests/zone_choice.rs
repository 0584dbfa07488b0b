//! Same-zone holders first, on one host (no latencies: only the zones
//! decide): two nodes of zone a and b hold an image, a third node of zone
//! a pulls it and gets every byte from zone a; `peerpull locate` shows each
//! holder's zone. With zone a's holders stopped, zone b's serves it.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use peerpull_e2e::{start_nodes_as, Setup};
use peerpull_testbed::{eventually, loopback_subnet, ImageBuilder, PeerpullOptions, Upstream};

const SAME: &str = r#"peerpull_peer_bytes_received_total{zone="same"}"#;
const OTHER: &str = r#"peerpull_peer_bytes_received_total{zone="other"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_takes_its_bytes_from_its_own_zone_while_it_can() {
    let mut upstream = Upstream::start().await.unwrap();
    let image = ImageBuilder::new("e2e-zone-choice").layers(&[8 << 20]).build().unwrap();
    let reference = image.push(&upstream, "zones/choice:v1").await.unwrap();
    let subnet = loopback_subnet();
    let zones = ["a", "b", "a", "a"];
    let options = zones
        .iter()
        .enumerate()
        .map(|(i, zone)| {
            let mut options = PeerpullOptions::on(subnet.node(i as u8));
            options.extra = vec!["--zone".into(), (*zone).into()];
            options
        })
        .collect();
    // No node fetches for the others (it would keep what it fetched in its spool and serve it from
    // there): the holders are the nodes that pulled.
    let setup = Setup { upstream_fallback: false, ..Setup::default() };
    let mut nodes = start_nodes_as(options, &upstream.url(), setup).await.unwrap();
    for n in [0, 1] {
        let pulled = nodes[n].containerd.cri_pull(&reference).await.unwrap();
        assert_eq!(pulled.manifest_digest(), Some(image.digest()));
    }
    upstream.stop();

    // Node 2 waits until it finds both holders, each with its zone.
    let holders: Vec<String> = [0, 1].iter().map(|&n| nodes[n].peerpull.options().router_addr().to_string()).collect();
    assert_eq!(holders.len(), 2);
    let located = eventually("node 2 to find the layer at both holders", Duration::from_secs(60), || async {
        let located = nodes[2].peerpull.locate(&reference).await.ok()?;
        let layer = located.blobs.iter().find(|b| b.role == "layer")?;
        (layer.providers.len() >= 2).then_some(layer.providers.clone())
    })
    .await
    .unwrap();
    let mut zones_found: Vec<&str> = located.iter().map(|p| p.zone.as_str()).collect();
    zones_found.sort_unstable();
    assert_eq!(zones_found, ["a", "b"], "locate shows each holder's zone");

    let pulled = nodes[2].containerd.cri_pull(&reference).await.unwrap();
    assert_eq!(pulled.manifest_digest(), Some(image.digest()));
    let (same, other) = (nodes[2].peerpull.metric(SAME).await.unwrap(), nodes[2].peerpull.metric(OTHER).await.unwrap());
    let layer = image.platforms()[0].layers[0].size as f64;
    assert!(same >= layer && other == 0.0, "from zone a: {same} bytes, from zone b: {other}");

    // Zone a's holders go (node 2 holds it now too): zone b's serves the next pull in zone a.
    nodes[0].peerpull.stop();
    nodes[2].peerpull.stop();
    let pulled = nodes[3].containerd.cri_pull(&reference).await.unwrap();
    assert_eq!(pulled.manifest_digest(), Some(image.digest()));
    let other = nodes[3].peerpull.metric(OTHER).await.unwrap();
    assert!(other >= layer, "from zone b: {other} bytes");
}
