//! Announcing many keys: by keyspace region, in batches, on real routers
//! over TCP on loopback.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use futures::StreamExt as _;

use peerpull_routing::Key;
use prometheus_client::registry::Registry;
use support::{cluster, eventually, key, SLACK};

/// A metric's value in a node's registry (0 when absent).
fn metric(registry: &Registry, series: &str) -> f64 {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap_or_default();
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok()).unwrap_or(0.0)
}

const ADD_PROVIDER_SENT: &str = "peerpull_routing_requests_total{direction=\"sent\",kind=\"add_provider\"}";
const BATCHES_SENT: &str = "peerpull_routing_requests_total{direction=\"sent\",kind=\"provide_batch\"}";
const STORED_FROM_BATCHES: &str = "peerpull_routing_records_stored_total{origin=\"batch\"}";

/// A node holding thousands of keys tells each other node of all of them in
/// one message (5 nodes: one region), sends no `ADD_PROVIDER`, every key is
/// found from another node, and a key advertised later is found there
/// within 5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_keys_go_out_in_one_batch_per_node_and_are_all_found() {
    let nodes = cluster(4).await;
    let (holder, asker) = (&nodes[1], &nodes[3]);
    let (mut holder_metrics, mut asker_metrics) = (Registry::default(), Registry::default());
    holder.router.register_metrics(&mut holder_metrics);
    asker.router.register_metrics(&mut asker_metrics);
    eventually("the holder knows the 4 others", holder.discovery_bound(), holder.command_bound(), || async {
        (holder.router.peer_count().await.unwrap_or(0) == 4).then_some(())
    })
    .await;

    let keys: Vec<Key> = (0..2000).map(|i| key(&format!("sha256:content-{i}"))).collect();
    holder.router.advertise(keys.clone()).await.unwrap();
    let batches = metric(&holder_metrics, BATCHES_SENT);
    assert!(
        (4.0..=8.0).contains(&batches),
        "one batch to each of the 4 others (a round more if one joined late): {batches}"
    );
    assert_eq!(metric(&holder_metrics, ADD_PROVIDER_SENT), 0.0, "no key went out on its own");
    assert!(metric(&asker_metrics, STORED_FROM_BATCHES) >= 2000.0, "the asker stored every record");

    for k in keys.iter().step_by(20) {
        let held = asker.router.held_providers(k).await.unwrap();
        assert_eq!(held, vec![holder.router.local_peer_id()], "{k}");
        let found: Vec<_> = asker.router.lookup(k, 3).await.unwrap().collect().await;
        assert_eq!(found.len(), 1, "{k} found from another node");
    }

    let fresh = key("sha256:just-received");
    let advertised = tokio::time::Instant::now();
    holder.router.advertise(vec![fresh.clone()]).await.unwrap();
    eventually("a key the holder just received is found from another node", Duration::from_secs(5), SLACK, || async {
        let found: Vec<_> = asker.router.lookup(&fresh, 3).await.ok()?.collect().await;
        (!found.is_empty()).then_some(())
    })
    .await;
    println!("a fresh key was found from another node {:?} after it was advertised", advertised.elapsed());
}

/// The nodes holding a provider's records drop them as soon as it is gone
/// (its connections end and a dial to it fails), instead of handing
/// lookups a dead holder until the records expire (`provider_ttl`, 5 min).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_records_of_a_killed_holder_are_dropped_at_once() {
    let mut nodes = cluster(3).await;
    let shared = key("sha256:shared");
    nodes[1].router.advertise(vec![shared.clone()]).await.unwrap();
    nodes[2].router.advertise(vec![shared.clone()]).await.unwrap();
    let dead = nodes.remove(1);
    let (dead_id, kept_id) = (dead.router.local_peer_id(), nodes[1].router.local_peer_id());
    let watcher = &nodes[2];
    let mut held = watcher.router.held_providers(&shared).await.unwrap();
    held.sort();
    let mut both = vec![dead_id, kept_id];
    both.sort();
    assert_eq!(held, both, "the watcher holds both holders' records");

    dead.kill().await;
    let killed_at = tokio::time::Instant::now();
    let bound = watcher.config.dial_timeout + SLACK;
    eventually("the killed holder's record is dropped", bound, watcher.command_bound(), || async {
        let held = watcher.router.held_providers(&shared).await.ok()?;
        (held == vec![kept_id]).then_some(())
    })
    .await;
    println!("the killed holder's record was dropped {:?} after the kill", killed_at.elapsed());
}

/// A key a node withdraws (its image was deleted) is removed at once from
/// the nodes storing its record, not when that record expires (5 min).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawn_key_is_removed_from_the_other_nodes_at_once() {
    let nodes = cluster(3).await;
    let (holder, watcher) = (&nodes[1], &nodes[3]);
    let (kept, gone) = (key("sha256:kept"), key("sha256:deleted"));
    holder.router.advertise(vec![kept.clone(), gone.clone()]).await.unwrap();
    assert_eq!(watcher.router.held_providers(&gone).await.unwrap(), vec![holder.router.local_peer_id()]);

    holder.router.withdraw(vec![gone.clone()]).await.unwrap();
    let withdrawn_at = tokio::time::Instant::now();
    eventually("the watcher drops the withdrawn key's record", SLACK, watcher.command_bound(), || async {
        watcher.router.held_providers(&gone).await.ok()?.is_empty().then_some(())
    })
    .await;
    println!("the withdrawn key's record was removed {:?} after the withdrawal", withdrawn_at.elapsed());
    assert!(watcher.lookup("sha256:deleted", 5).await.is_empty(), "no lookup finds it");
    assert_eq!(watcher.lookup("sha256:kept", 5).await.len(), 1, "the other key stays");
}

/// In a cluster of k nodes or fewer the routing table never fills; once a
/// walk has found everyone, a node stops walking to fill it every
/// `bootstrap_interval` (each such walk asks every node).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_cluster_at_rest_stops_walking_its_routing_table() {
    let nodes = cluster(4).await;
    let node = &nodes[2];
    eventually("the node knows the 4 others", node.discovery_bound(), node.command_bound(), || async {
        (node.router.peer_count().await.unwrap_or(0) == 4).then_some(())
    })
    .await;
    // One more round for walks under way to end.
    tokio::time::sleep(node.config.bootstrap_interval + SLACK).await;
    let before = node.router.counters().bootstraps;
    tokio::time::sleep(node.config.bootstrap_interval * 3).await;
    let walks = node.router.counters().bootstraps - before;
    assert_eq!(walks, 0, "{walks} routing-table walks in three bootstrap intervals at rest");
}
