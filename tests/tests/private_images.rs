//! Private images stay private (`--private-images verify`): an upstream with
//! Docker Hub's token auth where `team-a` may read `private/app` only and
//! `team-b` `private/other` only; three nodes in verify mode and one
//! cluster member in public mode (it has the key, and asks its peers for
//! what its own pulls could not read).
//!
//! A pull with team A's credentials on a node that does not hold the image
//! is served by the node that does, and the upstream sees only the check;
//! a pull without credentials, or with team B's, is refused though a peer
//! holds it, and no byte of the private layer leaves a node for it; the
//! member that asks without a verified pull gets nothing; a public image
//! needs no credentials; in an outage, credentials verified on a node
//! within the grace keep working there, and unverified ones do not.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tokio::time::Instant;

use base64::Engine as _;
use peerpull_e2e::{start_nodes_as, Node, Setup};
use peerpull_testbed::{
    eventually, http, loopback_subnet, ImageBuilder, PeerpullOptions, TokenServer, Upstream, UpstreamOptions,
};

const PUSHER: (&str, &str) = ("pusher", "push-secret");
const TEAM_A: (&str, &str) = ("team-a", "a-secret");
const TEAM_B: (&str, &str) = ("team-b", "b-secret");

fn basic((user, password): (&str, &str)) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

async fn sum(nodes: &[Node], metric: &str) -> f64 {
    peerpull_e2e::metric_sum(nodes, metric).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_content_goes_only_to_pulls_the_upstream_accepts_for_it() {
    let limits = [("team-a", "private/app"), ("team-b", "private/other")];
    let tokens = TokenServer::start_limited(&[PUSHER, TEAM_A, TEAM_B], true, &limits).await.unwrap();
    let mut upstream =
        Upstream::start_with(UpstreamOptions { token: Some(&tokens), ..Default::default() }).await.unwrap();
    let private = ImageBuilder::new("e2e-private-app").layers(&[3 << 20]).build().unwrap();
    let other = ImageBuilder::new("e2e-private-other").layers(&[1 << 20]).build().unwrap();
    let public = ImageBuilder::new("e2e-private-public").layers(&[1 << 20]).build().unwrap();
    let private_ref = private.push_as(&upstream, "private/app:v1", Some(PUSHER)).await.unwrap();
    other.push_as(&upstream, "private/other:v1", Some(PUSHER)).await.unwrap();
    let public_ref = public.push_as(&upstream, "team/public:v1", Some(PUSHER)).await.unwrap();
    let layer = private.platforms()[0].layers[0].clone();
    let host = upstream.host();

    let subnet = loopback_subnet();
    let options: Vec<PeerpullOptions> = (0..4)
        .map(|i| {
            let mode = if i == 3 { "public" } else { "verify" };
            let mut options = PeerpullOptions::on(subnet.node(i));
            options.extra = vec!["--private-images".into(), mode.into()];
            options
        })
        .collect();
    let nodes = start_nodes_as(options, &upstream.url(), Setup::default()).await.unwrap();
    let (verify, member) = (&nodes[..3], &nodes[3]);

    // Node 0 pulls with team A's credentials: its mirror challenges, checks them, and (no
    // node holding the image) containerd fetches it from the upstream itself.
    let pulled = nodes[0].containerd.cri_pull_as(&private_ref, Some(TEAM_A)).await.unwrap();
    assert_eq!(pulled.manifest_digest(), Some(private.digest()));
    assert!(nodes[0].peerpull.metric(r#"peerpull_private_checks_total{outcome="challenged"}"#).await.unwrap() >= 1.0);
    assert!(nodes[0].peerpull.metric(r#"peerpull_private_checks_total{outcome="verified"}"#).await.unwrap() >= 1.0);
    assert_eq!(upstream.blob_downloads().unwrap().get(&layer.digest), Some(&1));

    // Node 1 finds node 0's layer for team A (the check asks the upstream for a HEAD only).
    let blob = format!("{}/v2/private/app/blobs/{}?ns={host}", nodes[1].peerpull.mirror_url(), layer.digest);
    let team_a = basic(TEAM_A);
    eventually("node 1 to find the private layer for team A", Duration::from_secs(60), || async {
        let reply = http::request("HEAD", &blob, &[("authorization", &team_a)]).await.ok()?;
        (reply.status == 200).then_some(())
    })
    .await
    .unwrap();
    let before = upstream.access_log().unwrap().len();
    let pulled = nodes[1].containerd.cri_pull_as(&private_ref, Some(TEAM_A)).await.unwrap();
    assert_eq!(pulled.manifest_digest(), Some(private.digest()));
    assert_eq!(upstream.blob_downloads().unwrap().get(&layer.digest), Some(&1), "served by node 0, not the upstream");
    assert!(
        nodes[1].peerpull.metric(r#"peerpull_mirror_bytes_served_total{source="peer"}"#).await.unwrap()
            >= layer.size as f64
    );
    let asked: Vec<_> = upstream.access_log().unwrap().into_iter().skip(before).filter(|e| e.status < 400).collect();
    assert!(asked.iter().all(|e| e.method == "HEAD"), "the upstream served only checks: {asked:?}");
    assert!(!asked.is_empty(), "the tag was checked with team A's credentials");

    // Without credentials, with team B's, by digest, or through a public repository's path:
    // refused, though two nodes hold it, and no byte of the layer leaves a node.
    let uploaded = sum(&nodes, "peerpull_peer_upload_bytes_total").await;
    let by_digest = format!("{host}/private/app@{}", private.digest());
    assert!(nodes[2].containerd.cri_pull_as(&private_ref, None).await.is_err(), "no credentials");
    assert!(nodes[2].containerd.cri_pull_as(&private_ref, Some(TEAM_B)).await.is_err(), "team B's");
    assert!(nodes[2].containerd.cri_pull_as(&by_digest, None).await.is_err(), "by digest");
    let mirror = nodes[2].peerpull.mirror_url();
    let through_public = format!("{mirror}/v2/team/public/blobs/{}?ns={host}", layer.digest);
    assert_eq!(http::get(&through_public).await.unwrap().status, 404, "a public path to a private blob");
    let team_b = basic(TEAM_B);
    let reply =
        http::request("GET", &blob.replace(&nodes[1].peerpull.mirror_url(), &mirror), &[("authorization", &team_b)])
            .await
            .unwrap();
    assert_eq!(reply.status, 403, "team B's credentials for team A's blob");
    let reply = http::request("GET", &blob.replace(&nodes[1].peerpull.mirror_url(), &mirror), &[]).await.unwrap();
    assert_eq!(reply.status, 401, "no credentials: a challenge");
    assert_eq!(sum(&nodes, "peerpull_peer_upload_bytes_total").await, uploaded, "no byte left a node");
    assert_eq!(upstream.blob_downloads().unwrap().get(&layer.digest), Some(&1));

    // The member in public mode asks its peers for the image by digest without a verified
    // pull: refused by them.
    let refused = sum(verify, r#"peerpull_private_checks_total{outcome="peer_refused"}"#).await;
    assert!(member.containerd.cri_pull_as(&by_digest, None).await.is_err());
    assert!(sum(verify, r#"peerpull_private_checks_total{outcome="peer_refused"}"#).await > refused);
    assert_eq!(sum(&nodes, "peerpull_peer_upload_bytes_total").await, uploaded, "no byte left a node");

    // A public image needs no credentials.
    let pulled = nodes[2].containerd.cri_pull_as(&public_ref, None).await.unwrap();
    assert_eq!(pulled.manifest_digest(), Some(public.digest()));

    // Node 2 checks team A's credentials for the tag (no pull), then the upstream goes down.
    // The first check of these credentials on node 2 gets a token for them; the next is
    // one HEAD, as a public tag's freshness check is.
    let tag = format!("{mirror}/v2/private/app/manifests/v1?ns={host}");
    let mut cost = Vec::new();
    for _ in 0..2 {
        let (issued, asked, started) = (tokens.issued(), upstream.access_log().unwrap().len(), Instant::now());
        assert_eq!(http::request("HEAD", &tag, &[("authorization", &team_a)]).await.unwrap().status, 200);
        cost.push((started.elapsed(), tokens.issued() - issued, upstream.access_log().unwrap().len() - asked));
    }
    eprintln!("checks of team A's credentials on node 2 (time, tokens, upstream requests): {cost:?}");
    assert_eq!((cost[0].1, cost[0].2), (1, 2), "a 401, a token, the HEAD");
    assert_eq!((cost[1].1, cost[1].2), (0, 1), "the HEAD alone");
    upstream.stop();
    // Team A pulls on node 2 within the grace, from its peers; team B cannot.
    let pulled = nodes[2].containerd.cri_pull_as(&private_ref, Some(TEAM_A)).await.unwrap();
    assert_eq!(pulled.manifest_digest(), Some(private.digest()));
    assert!(nodes[2].peerpull.metric(r#"peerpull_private_checks_total{outcome="grace"}"#).await.unwrap() >= 1.0);
    let other_node = nodes[0].peerpull.mirror_url();
    let reply = http::request("HEAD", &tag.replace(&mirror, &other_node), &[("authorization", &team_b)]).await.unwrap();
    assert_eq!(reply.status, 403, "unverified credentials in an outage");
    assert!(nodes[0].peerpull.metric(r#"peerpull_private_checks_total{outcome="unverifiable"}"#).await.unwrap() >= 1.0);

    // `peerpull status` lists the private repository and fingerprints, never a secret.
    let status = nodes[2].peerpull.status().await.unwrap().private_images.unwrap();
    assert_eq!(status.mode, "verify");
    assert!(status.repositories.contains(&format!("{host}/private/app")), "{status:?}");
    assert!(status.verifications.iter().any(|v| v.repository == "private/app" && v.fingerprint.len() == 32));
    let printed = nodes[2].peerpull.cli(&["status"]).await.unwrap();
    let printed = String::from_utf8_lossy(&printed.stdout);
    assert!(printed.contains("PRIVATE REPOSITORIES (1)") && printed.contains("private/app"), "{printed}");
    assert!(!printed.contains(TEAM_A.1) && !printed.contains(&team_a), "no secret in the status");

    // What a node learnt survives its restart, the upstream still down.
    let kept = std::fs::read_to_string(nodes[0].peerpull.data_dir().join("private-repositories")).unwrap();
    assert!(kept.lines().any(|l| l == format!("private {host} private/app")), "{kept}");
    assert!(!kept.contains(TEAM_A.1));
    let mut nodes = nodes;
    nodes[0].peerpull.restart().await.unwrap();
    nodes[0].peerpull.wait_ready(peerpull_e2e::READY_TIMEOUT).await.unwrap();
    let status = nodes[0].peerpull.status().await.unwrap().private_images.unwrap();
    assert_eq!(status.repositories, vec![format!("{host}/private/app")]);
}
