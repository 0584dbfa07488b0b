//! Black-box tests: several routers in one process on loopback.
#![allow(clippy::unwrap_used)]

mod support;

use std::{collections::HashSet, time::Duration};

use support::{always, cluster, eventually, free_port_on, key, NodeBuilder, SLACK};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_returns_each_providers_own_mirror_and_never_self() {
    let nodes = cluster(3).await;
    let (a, b, c) = (&nodes[1], &nodes[2], &nodes[3]);
    a.router.advertise(vec![key("sha256:aaa"), key("docker.io/library/nginx:latest")]).await.unwrap();
    b.router.advertise(vec![key("sha256:aaa")]).await.unwrap();
    c.router.advertise(vec![key("sha256:aaa")]).await.unwrap();

    let found = c.lookup("sha256:aaa", 10).await;
    let got: HashSet<_> = found.iter().map(|p| (p.peer, p.mirror)).collect();
    let want: HashSet<_> = [(a.router.local_peer_id(), a.mirror), (b.router.local_peer_id(), b.mirror)].into();
    assert_eq!(got, want, "c finds a and b, each with its own mirror, and never itself");
    assert_ne!(a.mirror, b.mirror);

    let tag = nodes[0].lookup("docker.io/library/nginx:latest", 10).await;
    assert_eq!(tag.len(), 1);
    assert_eq!((tag[0].peer, tag[0].mirror), (a.router.local_peer_id(), a.mirror));

    assert!(b.lookup("sha256:nobody-has-this", 10).await.is_empty());
    assert_eq!(c.lookup("sha256:aaa", 1).await.len(), 1, "the stream stops at the limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_identical_lookups_all_get_answers() {
    let nodes = cluster(2).await;
    nodes[1].router.advertise(vec![key("sha256:burst")]).await.unwrap();
    let lookups = (0..20).map(|_| nodes[2].lookup("sha256:burst", 4));
    for found in futures::future::join_all(lookups).await {
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].mirror, nodes[1].mirror);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_port_on_distinct_loopback_ips() {
    let ips = ["127.0.0.2", "127.0.0.3", "127.0.0.4"];
    let port = free_port_on(&ips);
    let seed = NodeBuilder::new(&format!("127.0.0.2:{port}")).mirror("127.0.0.2:5000").start().await;
    // This one binds its mirror to 0.0.0.0: peers must fill in the IP they reach it at.
    let b = NodeBuilder::new(&format!("127.0.0.3:{port}"))
        .mirror("0.0.0.0:5000")
        .bootstrap(&format!("127.0.0.2:{port}"))
        .start()
        .await;
    let c = NodeBuilder::new(&format!("127.0.0.4:{port}"))
        .mirror("127.0.0.4:5000")
        .bootstrap(&format!("127.0.0.2:{port}"))
        .start()
        .await;
    b.wait_ready().await;
    c.wait_ready().await;
    seed.router.advertise(vec![key("sha256:one")]).await.unwrap();
    b.router.advertise(vec![key("sha256:one")]).await.unwrap();

    let found = c.lookup("sha256:one", 10).await;
    let got: HashSet<_> = found.iter().map(|p| (p.peer, p.mirror.to_string())).collect();
    let want: HashSet<_> = [
        (seed.router.local_peer_id(), "127.0.0.2:5000".to_owned()),
        (b.router.local_peer_id(), "127.0.0.3:5000".to_owned()),
    ]
    .into();
    assert_eq!(got, want);
    let from_seed = seed.lookup("sha256:one", 10).await;
    assert_eq!(from_seed.len(), 1);
    assert_eq!(from_seed[0].mirror.to_string(), "127.0.0.3:5000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_reprovided_and_withdrawn_keys_expire() {
    let short = |c: &mut peerpull_routing::Config| {
        c.provider_ttl = Duration::from_secs(3);
        c.reprovide_interval = Duration::from_secs(1);
    };
    let seed = NodeBuilder::new("127.0.0.1:0").config(short).start().await;
    let a = NodeBuilder::new("127.0.0.1:0").config(short).bootstrap_to(&seed).start().await;
    let b = NodeBuilder::new("127.0.0.1:0").config(short).bootstrap_to(&seed).start().await;
    a.wait_ready().await;
    b.wait_ready().await;
    a.router.advertise(vec![key("sha256:kept"), key("sha256:gone")]).await.unwrap();
    assert_eq!(b.lookup("sha256:gone", 5).await.len(), 1);

    // An advertised key stays found past provider_ttl (and the cache_ttl an answer
    // is reused for): re-providing renews the copies others hold. (In a cluster this
    // small a also answers for its own record, which never expires, so the copies
    // b stores are checked too.)
    let ttl = a.config.provider_ttl;
    let expired = ttl + b.config.cache_ttl + SLACK;
    let a_id = a.router.local_peer_id();
    always("b finds a for the key a keeps advertising", expired, b.lookup_bound(), || async {
        b.lookup("sha256:kept", 5).await.len() == 1
    })
    .await;
    let held = b.router.held_providers(&key("sha256:kept")).await.unwrap();
    assert_eq!(held, vec![a_id], "b holds a live copy of a's record, past its ttl: re-provided");

    a.router.withdraw(vec![key("sha256:gone")]).await.unwrap();
    let started = tokio::time::Instant::now();
    eventually("b stops finding a for the key a withdrew", expired, b.lookup_bound(), || async {
        b.lookup("sha256:gone", 5).await.is_empty().then_some(())
    })
    .await;
    println!("withdrawn key disappeared after {:?} (ttl {ttl:?})", started.elapsed());
    assert_eq!(b.lookup("sha256:kept", 5).await.len(), 1, "other keys stay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_stops_being_returned_within_the_bound() {
    let mut nodes = cluster(3).await;
    for n in &nodes[1..3] {
        n.router.advertise(vec![key("sha256:shared")]).await.unwrap();
    }
    assert_eq!(nodes[3].lookup("sha256:shared", 10).await.len(), 2);
    let dead = nodes.remove(2);
    let dead_id = dead.router.local_peer_id();
    dead.kill().await;
    let killed_at = tokio::time::Instant::now();
    // The OS closes an exited process's sockets at once, and a lookup that starts
    // after its connections closed never returns it (a fresh dial to it fails). So
    // every lookup started more than SLACK after the kill must leave it out; each
    // lookup takes up to lookup_timeout.
    let asker = &nodes[2];
    let survivors = eventually("lookups stop returning a killed provider", SLACK, asker.lookup_bound(), || async {
        let found = asker.lookup("sha256:shared", 10).await;
        (!found.iter().any(|p| p.peer == dead_id)).then_some(found)
    })
    .await;
    println!("dead peer dropped after {:?}", killed_at.elapsed());
    assert_eq!(survivors.len(), 1);
    assert_eq!(survivors[0].peer, nodes[1].router.local_peer_id());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn penalised_peers_come_last() {
    let nodes = cluster(3).await;
    let (a, b, c) = (&nodes[1], &nodes[2], &nodes[3]);
    for n in [a, b] {
        n.router.advertise(vec![key("sha256:p")]).await.unwrap();
    }
    assert_eq!(c.lookup("sha256:p", 10).await.len(), 2);
    c.router.penalize(a.router.local_peer_id()).await.unwrap();
    for _ in 0..3 {
        let found = c.lookup("sha256:p", 10).await;
        let order: Vec<_> = found.iter().map(|p| p.peer).collect();
        assert_eq!(order, vec![b.router.local_peer_id(), a.router.local_peer_id()]);
        let first = c.lookup("sha256:p", 1).await;
        assert_eq!(first[0].peer, b.router.local_peer_id());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_the_peer_id_and_is_found_again() {
    let seed = NodeBuilder::new("127.0.0.1:0").start().await;
    let dir = tempfile::tempdir().unwrap();
    let a = NodeBuilder::new("127.0.0.1:0").data_dir(dir.path().to_owned()).bootstrap_to(&seed).start().await;
    let id = a.router.local_peer_id();
    a.kill().await;
    let a = NodeBuilder::new("127.0.0.1:0").data_dir(dir.path().to_owned()).bootstrap_to(&seed).start().await;
    assert_eq!(a.router.local_peer_id(), id);
    a.wait_ready().await;
    a.router.advertise(vec![key("sha256:again")]).await.unwrap();
    let found = seed.lookup("sha256:again", 5).await;
    assert_eq!(found.iter().map(|p| p.peer).collect::<Vec<_>>(), vec![id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_through_dns_and_readiness() {
    let port = free_port_on(&["127.0.0.1"]);
    let dns = format!("dns:localhost:{port}");
    // The seed resolves the name to itself and must skip that.
    let seed = NodeBuilder::new(&format!("127.0.0.1:{port}")).bootstrap(&dns).start().await;
    let a = NodeBuilder::new("127.0.0.1:0").bootstrap(&dns).start().await;
    let b = NodeBuilder::new("127.0.0.1:0").bootstrap(&dns).start().await;
    for n in [&seed, &a, &b] {
        n.wait_ready().await;
        assert!(n.router.peer_count().await.unwrap() >= 1);
    }
    b.router.advertise(vec![key("sha256:dns")]).await.unwrap();
    let found = a.lookup("sha256:dns", 5).await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].mirror, b.mirror);

    // A node with nothing to bootstrap from stands alone and is ready at once.
    let alone = NodeBuilder::new("127.0.0.1:0").start().await;
    assert!(*alone.router.ready().borrow());
    assert_eq!(alone.router.peer_count().await.unwrap(), 0);
    assert!(alone.lookup("sha256:dns", 5).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_bootstrap_names_only_itself_is_ready() {
    // A one-node cluster: its headless Service resolves to this node alone.
    let port = free_port_on(&["127.0.0.1"]);
    let only = NodeBuilder::new(&format!("127.0.0.1:{port}")).bootstrap(&format!("dns:127.0.0.1:{port}")).start().await;
    only.wait_ready().await;
    assert_eq!(only.router.peer_count().await.unwrap(), 0);
    // The same with a static bootstrap address that is its own.
    let port = free_port_on(&["127.0.0.1"]);
    let only = NodeBuilder::new(&format!("127.0.0.1:{port}")).bootstrap(&format!("127.0.0.1:{port}")).start().await;
    only.wait_ready().await;
    assert_eq!(only.router.peer_count().await.unwrap(), 0);

    // A name that resolves to an address where nobody answers is not readiness.
    let dead = free_port_on(&["127.0.0.1"]);
    let waiting = NodeBuilder::new("127.0.0.1:0").bootstrap(&format!("dns:127.0.0.1:{dead}")).start().await;
    waiting.stays_unready(waiting.bootstrap_retry(), "no peer while its bootstrap peer is down").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_before_its_seed_joins_when_the_seed_comes_up() {
    let port = free_port_on(&["127.0.0.1"]);
    let a = NodeBuilder::new("127.0.0.1:0").bootstrap(&format!("127.0.0.1:{port}")).start().await;
    a.stays_unready(a.bootstrap_retry(), "no peer while its seed is down").await;
    let seed = NodeBuilder::new(&format!("127.0.0.1:{port}")).start().await;
    // Its next round comes within the longest backoff and joins with one dial.
    a.wait_ready_within(a.bootstrap_retry() + SLACK, "ready once its seed is up").await;
    seed.router.advertise(vec![key("sha256:late")]).await.unwrap();
    assert_eq!(a.lookup("sha256:late", 5).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_publishes_its_peers_and_what_it_advertises() {
    let nodes = cluster(2).await;
    let node = &nodes[1];
    let mut registry = prometheus_client::registry::Registry::default();
    node.router.register_metrics(&mut registry);
    let keys = vec![key("sha256:one"), key("sha256:two"), key("registry.example/app:v1")];
    node.router.advertise(keys.clone()).await.unwrap();
    node.router.advertise(keys).await.unwrap();
    node.router.withdraw(vec![key("sha256:two"), key("sha256:never-advertised")]).await.unwrap();
    let encode = |registry: &prometheus_client::registry::Registry| {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        text
    };
    let text = encode(&registry);
    assert!(text.contains("peerpull_advertised_keys{kind=\"digest\"} 1\n"), "{text}");
    assert!(text.contains("peerpull_advertised_keys{kind=\"tag\"} 1\n"), "{text}");
    // The gauge follows the table on the event loop's tick.
    eventually("the peer gauge counts the two other routers", node.discovery_bound(), SLACK, || {
        let text = encode(&registry);
        async move { text.contains("peerpull_routing_peers 2\n").then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_names_the_same_closest_node_for_a_key() {
    let nodes = cluster(4).await;
    let (by, check_bound) = (nodes[0].discovery_bound(), nodes[0].command_bound());
    eventually("every node knows the 4 others", by, check_bound, || async {
        let mut full = true;
        for n in &nodes {
            full &= n.router.peer_count().await.unwrap() == nodes.len() - 1;
        }
        full.then_some(())
    })
    .await;
    let mut chosen = HashSet::new();
    for i in 0..20 {
        let key = key(&format!("sha256:closest-{i}"));
        let mut answers = HashSet::new();
        for n in &nodes {
            let closest = n.router.closest(&key, &[]).await.unwrap();
            if let Some(p) = closest {
                let owner = nodes.iter().find(|o| o.router.local_peer_id() == p.peer).unwrap();
                assert_eq!(p.mirror, owner.mirror, "the closest peer comes with its own mirror");
            }
            answers.insert(closest.map_or(n.router.local_peer_id(), |p| p.peer));
        }
        assert_eq!(answers.len(), 1, "key {i}: the nodes disagree: {answers:?}");
        chosen.extend(answers);
    }
    assert!(chosen.len() >= 2, "20 keys all landed on one node: {chosen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_key_only_nodes_holding_it_join() {
    use peerpull_routing::Psk;
    let key = |b: u8| Psk::new([b; 32]);
    let seed = NodeBuilder::new("127.0.0.1:0").config(|c| c.psk = Some(key(1))).start().await;
    let member = NodeBuilder::new("127.0.0.1:0").config(|c| c.psk = Some(key(1))).bootstrap_to(&seed).start().await;
    let foreign = NodeBuilder::new("127.0.0.1:0").config(|c| c.psk = Some(key(2))).bootstrap_to(&seed).start().await;
    let keyless = NodeBuilder::new("127.0.0.1:0").bootstrap_to(&seed).start().await;
    member.wait_ready().await;
    member.router.advertise(vec![support::key("sha256:member")]).await.unwrap();
    for outsider in [&foreign, &keyless] {
        // They announce what they claim to hold; nobody with the key hears it.
        let _ = outsider.router.advertise(vec![support::key("sha256:contested")]).await;
    }
    // `advertise` returned once the announcement reached the seed.
    eventually("the seed finds what the member announced", SLACK, seed.lookup_bound(), || async {
        (seed.lookup("sha256:member", 5).await.len() == 1).then_some(())
    })
    .await;
    // While each makes another bootstrap round and fails, they never have a peer.
    let (window, check_bound) = (foreign.bootstrap_retry(), foreign.command_bound());
    tokio::join!(
        always("foreign key: no peer", window, check_bound, || async {
            foreign.router.peer_count().await.unwrap() == 0
        }),
        always("no key: no peer", window, check_bound, || async { keyless.router.peer_count().await.unwrap() == 0 }),
    );
    for (name, outsider) in [("foreign key", &foreign), ("no key", &keyless)] {
        assert!(outsider.lookup("sha256:member", 5).await.is_empty(), "{name}: looked up a member's key");
    }
    assert!(seed.lookup("sha256:contested", 5).await.is_empty(), "an outsider's announcement reached the cluster");
    assert!(member.lookup("sha256:contested", 5).await.is_empty());
    assert_eq!(seed.router.peer_count().await.unwrap(), 1, "the seed knows the member only");
}

/// A node's routing-table walks are counted once they end: the first one,
/// through the seed, ends its start-up (the benchmark waits for it on every
/// router before it measures a cluster at rest).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_routing_table_walk_is_counted_when_it_ends() {
    let seed = NodeBuilder::new("127.0.0.1:0").start().await;
    let a = NodeBuilder::new("127.0.0.1:0").bootstrap_to(&seed).start().await;
    a.wait_ready().await;
    let walked = eventually("a's first walk counted", a.discovery_bound(), a.command_bound(), || async {
        let counters = a.router.counters();
        (counters.bootstraps > 0).then_some(counters)
    })
    .await;
    assert!(walked.messages > walked.pings, "a walk sends Kademlia requests: {walked:?}");
}

/// A lookup uses the mirror address a provider record carries, without a
/// connection to the provider. Here the asker may hold one connection only
/// (to the seed), so it can never reach the provider over libp2p: the
/// provider is still returned, at the mirror address the seed resolved when
/// it stored the record. (Before, the asker had to dial it and Identify it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_is_returned_from_its_record_without_a_connection() {
    let seed = NodeBuilder::new("127.0.0.1:0").start().await;
    let a = NodeBuilder::new("127.0.0.1:0").bootstrap_to(&seed).start().await;
    a.wait_ready().await;
    a.router.advertise(vec![key("sha256:held")]).await.unwrap();
    let a_id = a.router.local_peer_id();
    eventually("the seed holds a's record", a.command_bound(), a.command_bound(), || async {
        seed.router.held_providers(&key("sha256:held")).await.unwrap().contains(&a_id).then_some(())
    })
    .await;

    let asker = NodeBuilder::new("127.0.0.1:0").config(|c| c.max_connections = 1).bootstrap_to(&seed).start().await;
    asker.wait_ready().await;
    let found = asker.lookup("sha256:held", 5).await;
    assert_eq!(found.iter().map(|p| (p.peer, p.mirror)).collect::<Vec<_>>(), vec![(a_id, a.mirror)]);
    let peers = asker.router.peers().await.unwrap();
    assert!(peers.iter().all(|p| p.peer != a_id || p.mirror.is_none()), "the asker never identified a: {peers:?}");
    let counters = asker.router.counters();
    assert_eq!((counters.from_record, counters.dialed), (1, 0), "{counters:?}");
}

/// Records follow the cluster as it grows. With one copy of each record
/// (k = 1), a lookup searches only the node closest to the key; when a node
/// that is closer joins, it must receive the record well before the next
/// re-announcement (here 10 minutes away), or lookups stop finding the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_stays_findable_when_a_closer_node_joins() {
    let one_copy = |c: &mut peerpull_routing::Config| {
        c.replication_factor = 1;
        c.reprovide_interval = Duration::from_secs(600);
        c.provider_ttl = Duration::from_secs(1800);
    };
    let seed = NodeBuilder::new("127.0.0.1:0").config(one_copy).start().await;
    let a = NodeBuilder::new("127.0.0.1:0").config(one_copy).bootstrap_to(&seed).start().await;
    a.wait_ready().await;
    let names: Vec<String> = (0..24).map(|i| format!("sha256:grows-{i}")).collect();
    a.router.advertise(names.iter().map(|n| key(n)).collect()).await.unwrap();

    let joiner = NodeBuilder::new("127.0.0.1:0").config(one_copy).bootstrap_to(&seed).start().await;
    joiner.wait_ready().await;
    let (a_id, seed_id) = (a.router.local_peer_id(), seed.router.local_peer_id());
    // Once the joiner knows both others, `closest` is None for the keys it is closest to.
    eventually("the joiner knows both other nodes", a.discovery_bound(), a.command_bound(), || async {
        let peers = joiner.router.peers().await.unwrap();
        let ids: Vec<_> = peers.iter().map(|p| p.peer).collect();
        (ids.contains(&a_id) && ids.contains(&seed_id)).then_some(())
    })
    .await;
    let mut nearest = vec![];
    for name in &names {
        if joiner.router.closest(&key(name), &[]).await.unwrap().is_none() {
            nearest.push(name.clone());
        }
    }
    assert!(!nearest.is_empty(), "the joiner is closest to none of {} keys", names.len());
    // The joiner holds a's record of each, and a lookup from the seed finds a. A key
    // is re-announced for a joiner at most 10 s after its previous announcement.
    let bound = a.discovery_bound() + a.lookup_bound() + Duration::from_secs(10);
    for name in &nearest {
        eventually(&format!("{name} is found after the joiner came"), bound, a.lookup_bound(), || async {
            let held = joiner.router.held_providers(&key(name)).await.unwrap().contains(&a_id);
            let found = seed.lookup(name, 1).await.iter().any(|p| p.peer == a_id);
            (held && found).then_some(())
        })
        .await;
    }
    println!("{} of {} keys moved to the joiner", nearest.len(), names.len());
}
