//! An upstream with Docker Hub's token auth (a real `docker-registry` that
//! checks every token): public images come through the mirrors with
//! anonymous tokens, once for the cluster; a private image the nodes have no
//! credentials for gets the mirror's 404 and containerd pulls it with the
//! kubelet's credentials; nodes given credentials in a k3s `registries.yaml`
//! pull the private image through for everyone.

#![allow(clippy::unwrap_used)]

use futures::future::join_all;
use peerpull_e2e::{start_nodes, Node, Setup};
use peerpull_testbed::{ImageBuilder, TokenServer, Upstream, UpstreamOptions};

const PUSHER: (&str, &str) = ("pusher", "push-secret");
const READER: (&str, &str) = ("reader", "read-secret");

async fn sum(nodes: &[Node], metric: &str) -> f64 {
    peerpull_e2e::metric_sum(nodes, metric).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_auth_public_through_the_mirrors_private_through_credentials() {
    let tokens = TokenServer::start(&[PUSHER, READER], true).await.unwrap();
    let upstream = Upstream::start_with(UpstreamOptions { token: Some(&tokens), ..Default::default() }).await.unwrap();
    let public = ImageBuilder::new("e2e-token-public").layers(&[2 << 20]).build().unwrap();
    let private = ImageBuilder::new("e2e-token-private").layers(&[1 << 20]).build().unwrap();
    let public_ref = public.push_as(&upstream, "team/public:v1", Some(PUSHER)).await.unwrap();
    let private_ref = private.push_as(&upstream, "private/app:v1", Some(PUSHER)).await.unwrap();
    let nodes = start_nodes(2, &upstream.url(), Setup::default()).await.unwrap();

    // Public: the mirrors get anonymous tokens and the registry serves the layer once.
    let issued = tokens.issued();
    let pulls = nodes.iter().map(|node| node.containerd.cri_pull(&public_ref));
    for pulled in join_all(pulls).await {
        assert_eq!(pulled.unwrap().manifest_digest(), Some(public.digest()));
    }
    let layer = &public.platforms()[0].layers[0];
    assert_eq!(upstream.blob_downloads().unwrap().get(&layer.digest), Some(&1));
    assert!(sum(&nodes, "peerpull_upstream_bytes_total").await >= layer.size as f64, "the mirrors fetched it");
    assert!(tokens.issued() > issued, "the mirrors asked for tokens");

    // Private, no credentials on the nodes: the mirror is refused and answers 404,
    // and containerd pulls with the credentials kubelet gives it.
    let pulled = nodes[0].containerd.cri_pull_as(&private_ref, Some(READER)).await.unwrap();
    assert_eq!(pulled.manifest_digest(), Some(private.digest()));
    assert!(sum(&nodes, r#"peerpull_upstream_requests_total{outcome="denied"}"#).await >= 1.0);
    let anonymous = format!("{}/v2/private/app/manifests/v1", upstream.url());
    assert_eq!(peerpull_testbed::http::get(&anonymous).await.unwrap().status, 401, "the registry checks credentials");

    // Nodes with the reader's credentials in registries.yaml pull it through themselves.
    let dir = tempfile::tempdir().unwrap();
    let yaml = dir.path().join("registries.yaml");
    let host = upstream.host();
    let text = format!(
        "mirrors:\n  \"{host}\":\n    endpoint: [\"http://{host}\"]\nconfigs:\n  \"{host}\":\n    auth:\n      username: {}\n      password: {}\n",
        READER.0, READER.1
    );
    std::fs::write(&yaml, text).unwrap();
    let with_credentials =
        start_nodes(2, &upstream.url(), Setup { registries_yaml: Some(yaml), ..Setup::default() }).await.unwrap();
    let pulled = with_credentials[0].containerd.cri_pull(&private_ref).await.unwrap();
    assert_eq!(pulled.manifest_digest(), Some(private.digest()));
    let layer = &private.platforms()[0].layers[0];
    assert!(sum(&with_credentials, "peerpull_upstream_bytes_total").await >= layer.size as f64);
}
