//! The debug page in a real browser (headless Chromium) on a 2-node cluster
//! of real containerd: after node 2 pulls an image node 1 holds, its page
//! lists each blob of that image as served by a peer, node 1; the test pull
//! form, filled in and submitted by the browser, finds every blob of another
//! image at node 1. Screenshots of both pages are saved as test artifacts.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use peerpull_e2e::{Cluster, Setup};
use peerpull_testbed::{Browser, ImageBuilder, Platform};
use serde_json::Value;

const SEEN: Duration = Duration::from_secs(30);

/// Where screenshots go: `$PEERPULL_ARTIFACTS`, else `target/tmp/artifacts`.
fn artifacts() -> PathBuf {
    let dir = std::env::var_os("PEERPULL_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("artifacts"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `[data-digest, data-source, data-via]` of each row matching `selector`.
const ROWS: &str = "(selector) => Array.from(document.querySelectorAll(selector)).map(r => [r.dataset.digest, r.dataset.source, r.dataset.via, r.dataset.providers || ''])";

fn rows(value: &Value) -> Vec<[String; 4]> {
    let rows = value.as_array().unwrap();
    rows.iter().map(|r| std::array::from_fn(|i| r[i].as_str().unwrap_or_default().to_owned())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_debug_page_shows_which_peer_served_each_blob() {
    // Peers only: node 1 pulls from the upstream itself, so node 2 holds nothing of the image before its pull.
    let setup =
        Setup { upstream_fallback: false, extra: vec!["--debug-web".into(), "true".into()], ..Setup::default() };
    let cluster = Cluster::start_with(2, setup).await.unwrap();
    let image = ImageBuilder::new("e2e-debug").layers(&[400_000, 30_000]).build().unwrap();
    let reference = image.push(&cluster.upstream, "e2e/debug:v1").await.unwrap();
    let held = ImageBuilder::new("e2e-debug-held").layers(&[200_000]).build().unwrap();
    let held_ref = held.push(&cluster.upstream, "e2e/held:v1").await.unwrap();
    for r in [&reference, &held_ref] {
        cluster.nodes[0].containerd.cri_pull(r).await.unwrap();
        cluster.wait_located(1, r, &[0], SEEN).await.unwrap();
    }
    let pulled = cluster.nodes[1].containerd.cri_pull(&reference).await.unwrap();
    assert_eq!(pulled.manifest_digest(), Some(image.digest()));

    let holder = cluster.nodes[0].peerpull.mirror_url().replace("http://", "");
    let page = format!("{}/debug", cluster.nodes[1].peerpull.metrics_url());
    let (held_for_form, dir) = (held_ref.clone(), artifacts());
    let (shown, probes, pulled_html) = tokio::task::spawn_blocking(move || {
        let mut browser = Browser::start().unwrap();
        let tab = browser.open(&page).unwrap();
        let shown = browser.evaluate(&tab, &format!("({ROWS})('tr.pull')")).unwrap();
        browser.screenshot(&tab, &dir.join("debug-page.png")).unwrap();
        let html = browser.html(&tab).unwrap();
        // The test pull form, as a person would use it.
        let fill = format!(
            "document.querySelector('#test-pull input[name=reference]').value = {}; document.getElementById('test-pull').submit()",
            serde_json::to_string(&held_for_form).unwrap()
        );
        browser.navigate_by(&tab, &fill).unwrap();
        let probes = browser.evaluate(&tab, &format!("({ROWS})('tr.probe')")).unwrap();
        browser.screenshot(&tab, &dir.join("debug-test-pull.png")).unwrap();
        println!("screenshots in {}", dir.display());
        (shown, probes, html)
    })
    .await
    .unwrap();

    // Every blob node 2 pulled, as its page shows it: from a peer, node 1.
    let shown = rows(&shown);
    for blob in image.blobs_for(&Platform::host()) {
        let from_holder =
            shown.iter().any(|[digest, source, via, _]| *digest == blob.digest && source == "peer" && *via == holder);
        assert!(from_holder, "{} is not listed as served by node 1 ({holder}): {shown:?}\n{pulled_html}", blob.digest);
    }

    // The test pull of the image only node 1 holds: every blob is there, and its first MiB came from it.
    let probes = rows(&probes);
    let expected: Vec<&str> = held.blobs_for(&Platform::host()).iter().map(|b| b.digest.as_str()).collect();
    assert_eq!(probes.iter().map(|r| r[0].as_str()).collect::<Vec<_>>(), expected, "{probes:?}");
    for [digest, source, via, providers] in &probes {
        assert_eq!((source.as_str(), via.as_str()), ("peer", holder.as_str()), "{digest}: {probes:?}");
        assert_eq!(providers, &holder, "{digest}");
    }
}
