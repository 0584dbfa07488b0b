//! Nodes following one upstream fetch serve each other: the node fetching
//! serves `relay_fanout` followers itself and sends the others to stream
//! from followers while their copies grow; a follower that fails or sends
//! wrong bytes costs a retry, never a wrong response.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use peerpull_mirror::{wire, Config, Static};
use peerpull_store::Memory;
use support::upstream::{blob_path, pulling, upstream_with_blob, Behaviour, FakeUpstream};
use support::{fake_peer, get, Misbehaviour, Node};

/// The value of the unlabelled metric `name` in `text` (0 when absent).
fn metric(text: &str, name: &str) -> u64 {
    text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok()).unwrap_or(0)
}

/// Waits (at most 10 s) until `name` on `node` is at least `at_least`; returns its value.
async fn settled(node: &Node, name: &str, at_least: u64) -> u64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let value = metric(&node.metrics().await, name);
        if value >= at_least || tokio::time::Instant::now() >= deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const UPLOADED: &str = "peerpull_peer_upload_bytes_total";
const RELAYED: &str = "peerpull_followers_relayed_total";

/// Six followers fetch one blob at once through the node the cluster chose,
/// whose fan-out is `fanout`; returns what the chosen node uploaded and
/// what the followers uploaded, in blobs, and how many it relayed.
async fn six_followers_at_once(fanout: usize) -> (f64, f64, u64) {
    let len = 8 << 20;
    // 64 KiB every 5 ms: the copies are still growing while followers stream from them.
    let slow = Behaviour { chunk_delay: Duration::from_millis(5), ..Behaviour::default() };
    let (upstream, blob, digest) = upstream_with_blob(len, slow).await;
    let path = format!("{}{}", blob_path(&digest), upstream.ns());
    let dir = tempfile::tempdir().unwrap();
    let fetcher =
        Node::start(Memory::new(), Static::default(), Config { relay_fanout: fanout, ..pulling(&upstream, &dir) })
            .await;
    let (followers, _dirs) = followers_of(&fetcher, &upstream, 6).await;
    let pulls = followers.iter().map(|f| get_owned(f.url(&path)));
    for (n, result) in futures::future::join_all(pulls).await.into_iter().enumerate() {
        let (response, body) = result.unwrap_or_else(|e| panic!("follower {n}: {e}"));
        assert_eq!(response.status(), 200, "follower {n}");
        assert!(body.as_ref() == blob.as_slice(), "follower {n} got the blob's bytes");
    }
    assert_eq!(upstream.gets(&blob_path(&digest)), 1, "the upstream sent the blob once");
    assert_eq!(metric(&fetcher.metrics().await, "peerpull_upstream_bytes_total"), len as u64);
    let mut by_followers = 0;
    for follower in &followers {
        by_followers += metric(&follower.metrics().await, UPLOADED);
        assert_eq!(metric(&follower.metrics().await, "peerpull_upstream_bytes_total"), 0, "peers are not the upstream");
    }
    let relayed = metric(&fetcher.metrics().await, RELAYED);
    let expected = (6 - relayed) * len as u64;
    let by_fetcher = settled(&fetcher, UPLOADED, expected).await;
    (by_fetcher as f64 / len as f64, by_followers as f64 / len as f64, relayed)
}

/// `n` nodes pulling through from `upstream` that find `chosen` as the node
/// the cluster chose; their spools' directories live as long as the second value.
async fn followers_of(fetcher: &Node, upstream: &FakeUpstream, n: usize) -> (Vec<Node>, Vec<tempfile::TempDir>) {
    let mut nodes = Vec::new();
    let mut dirs = Vec::new();
    for _ in 0..n {
        let dir = tempfile::tempdir().unwrap();
        let peers = Static::default().closest_is(fetcher.provider());
        nodes.push(Node::start(Memory::new(), peers, pulling(upstream, &dir)).await);
        dirs.push(dir);
    }
    (nodes, dirs)
}

/// A follower that has gone: its port refuses connections.
async fn gone() -> peerpull_routing::Provider {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mirror = listener.local_addr().unwrap();
    peerpull_routing::Provider { peer: peerpull_routing::PeerId::random(), mirror, zone: Default::default() }
}

async fn get_owned(url: String) -> Result<(http::Response<()>, bytes::Bytes), String> {
    get(&url, &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_past_the_fanout_stream_from_followers_while_their_copies_grow() {
    let (by_fetcher, by_followers, relayed) = six_followers_at_once(2).await;
    println!(
        "fan-out 2: the fetcher uploaded {by_fetcher:.2} blobs, the followers {by_followers:.2}, {relayed} relayed"
    );
    assert_eq!(relayed, 4, "two served by the fetcher, four sent to followers");
    assert!(by_fetcher <= 2.0, "the fetcher uploaded {by_fetcher:.2} blobs");
    assert!(by_followers >= 4.0, "the followers uploaded {by_followers:.2} blobs");

    let (by_fetcher, by_followers, relayed) = six_followers_at_once(0).await;
    println!(
        "fan-out 0: the fetcher uploaded {by_fetcher:.2} blobs, the followers {by_followers:.2}, {relayed} relayed"
    );
    assert_eq!((relayed, by_followers), (0, 0.0), "without a fan-out the fetcher serves all");
    assert!(by_fetcher >= 6.0, "the fetcher uploaded {by_fetcher:.2} blobs");
}

/// A pull-through request naming a follower at `member`, as a follower sends it, read to the end.
async fn pull_through_as(fetcher: &Node, path: &str, member: peerpull_routing::Provider) -> u16 {
    let follower = format!("{} {}", member.peer, member.mirror);
    let headers = [(wire::PEER, "1"), (wire::PULL_THROUGH, "1"), (wire::FOLLOWER, follower.as_str())];
    get(&fetcher.url(path), &headers).await.unwrap().0.status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_sent_to_a_dead_or_lying_follower_still_gets_the_right_bytes() {
    let len = 2 << 20;
    let (upstream, blob, digest) = upstream_with_blob(len, Behaviour::default()).await;
    let path = format!("{}{}", blob_path(&digest), upstream.ns());
    let dir = tempfile::tempdir().unwrap();
    let fetcher =
        Node::start(Memory::new(), Static::default(), Config { relay_fanout: 1, ..pulling(&upstream, &dir) }).await;

    let dead = gone().await;
    assert_eq!(pull_through_as(&fetcher, &path, dead).await, 200, "the first follower is served by the fetcher");
    let dir_b = tempfile::tempdir().unwrap();
    let b =
        Node::start(Memory::new(), Static::default().closest_is(fetcher.provider()), pulling(&upstream, &dir_b)).await;
    let (response, body) = get(&b.url(&path), &[]).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(body.as_ref() == blob.as_slice(), "sent to the dead follower, then served by the fetcher");
    assert_eq!(metric(&fetcher.metrics().await, RELAYED), 1, "b was sent to the dead follower first");
    assert_eq!(upstream.gets(&blob_path(&digest)), 1, "b did not fetch from the upstream itself");

    // A follower that sends wrong bytes: the response never completes, and it is blamed.
    let (upstream, blob, digest) = upstream_with_blob(len, Behaviour::default()).await;
    let path = format!("{}{}", blob_path(&digest), upstream.ns());
    let dir = tempfile::tempdir().unwrap();
    let fetcher =
        Node::start(Memory::new(), Static::default(), Config { relay_fanout: 1, ..pulling(&upstream, &dir) }).await;
    let liar = fake_peer(blob.clone(), Misbehaviour::Corrupt).await;
    assert_eq!(pull_through_as(&fetcher, &path, liar).await, 200);
    let peers = Static::default().closest_is(fetcher.provider());
    let dir_c = tempfile::tempdir().unwrap();
    let c = Node::start(Memory::new(), peers.clone(), pulling(&upstream, &dir_c)).await;
    let result = get(&c.url(&path), &[]).await;
    assert!(result.is_err(), "a response with a lying follower's bytes completed");
    assert_eq!(peers.penalized(), vec![liar.peer], "the lying follower is blamed");
    // Asked again, c is a follower already placed: the chosen node serves it itself.
    let (response, body) = get(&c.url(&path), &[]).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(body.as_ref() == blob.as_slice());
    assert_eq!(upstream.gets(&blob_path(&digest)), 1, "the upstream sent the blob once");
}

/// How a follower that the chosen node sends another to fails it.
enum Fails {
    /// Its port refuses connections.
    Refusing,
    /// It sends half the blob, then closes: the other resumes from the chosen node.
    BreakingOff,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_one_else_is_sent_to_a_follower_that_failed_one() {
    let len = 2 << 20;
    for fails in [Fails::Refusing, Fails::BreakingOff] {
        let (upstream, blob, digest) = upstream_with_blob(len, Behaviour::default()).await;
        let path = format!("{}{}", blob_path(&digest), upstream.ns());
        let dir = tempfile::tempdir().unwrap();
        let fetcher =
            Node::start(Memory::new(), Static::default(), Config { relay_fanout: 2, ..pulling(&upstream, &dir) }).await;
        let failing = match fails {
            Fails::Refusing => gone().await,
            Fails::BreakingOff => fake_peer(blob.clone(), Misbehaviour::Truncate(len / 2)).await,
        };
        // The first two followers are served by the chosen node: the failing one, then x.
        assert_eq!(pull_through_as(&fetcher, &path, failing).await, 200);
        let (nodes, _dirs) = followers_of(&fetcher, &upstream, 3).await;
        // x, then b (sent to the failing follower, then served by the chosen node), then d.
        for (node, name) in nodes.iter().zip(["x", "b", "d"]) {
            let (response, body) = get(&node.url(&path), &[]).await.unwrap();
            assert_eq!(response.status(), 200, "{name}");
            assert!(body.as_ref() == blob.as_slice(), "{name} got the blob's bytes");
        }
        assert_eq!(metric(&fetcher.metrics().await, RELAYED), 2, "b and d were sent to followers");
        assert_eq!(
            settled(&nodes[0], UPLOADED, len as u64).await,
            len as u64,
            "d streamed from x, not the failing one"
        );
        assert_eq!(metric(&nodes[1].metrics().await, UPLOADED), 0);
        assert_eq!(upstream.gets(&blob_path(&digest)), 1, "the upstream sent the blob once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_whose_spool_has_no_room_streams_through_from_the_chosen_node() {
    let len = 2 << 20;
    let (upstream, blob, digest) = upstream_with_blob(len, Behaviour::default()).await;
    let path = format!("{}{}", blob_path(&digest), upstream.ns());
    let dir = tempfile::tempdir().unwrap();
    let fetcher = Node::start(Memory::new(), Static::default(), pulling(&upstream, &dir)).await;
    let dir_b = tempfile::tempdir().unwrap();
    let mut config = pulling(&upstream, &dir_b);
    config.upstream_fallback.as_mut().unwrap().spool_max_bytes = len as u64 / 2;
    let b = Node::start(Memory::new(), Static::default().closest_is(fetcher.provider()), config).await;

    let (response, body) = get(&b.url(&path), &[]).await.unwrap();
    assert_eq!(response.status(), 200, "a miss would send containerd to the upstream");
    assert!(body.as_ref() == blob.as_slice(), "b got the blob's bytes");
    let (response, body) = get(&b.url(&path), &[("range", "bytes=100-199")]).await.unwrap();
    assert_eq!(response.status(), 206);
    assert!(body.as_ref() == &blob[100..200], "a range is cut from the verified whole");
    assert_eq!(upstream.gets(&blob_path(&digest)), 1, "the upstream sent the blob once");
    assert_eq!(metric(&b.metrics().await, "peerpull_upstream_bytes_total"), 0, "b fetched nothing itself");
}
