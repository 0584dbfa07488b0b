//! Proves the testbed on real services: a generated image pushed to a real
//! registry, pulled into a real containerd through CRI and with `ctr`, and
//! the digests containerd then holds.

#![allow(clippy::unwrap_used)]

use peerpull_testbed::{Containerd, ImageBuilder, Platform, Upstream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cri_pull_of_a_pushed_image_holds_its_digests() {
    let upstream = Upstream::start().await.unwrap();
    let image = ImageBuilder::new("testbed-cri").layers(&[2 << 20, 300_000, 10]).build().unwrap();
    let reference = image.push(&upstream, "testbed/cri:v1").await.unwrap();

    let node = Containerd::start().await.unwrap();
    node.trust_registry(&upstream).unwrap();
    let pulled = node.cri_pull(&reference).await.unwrap();

    let platform = &image.platforms()[0];
    assert_eq!(pulled.id, platform.config.digest, "CRI's image id is the config digest");
    assert_eq!(pulled.manifest_digest(), Some(image.digest()));
    assert_eq!(pulled.repo_tags, vec![reference.clone()]);
    let record = node.image(&reference).await.unwrap().expect("image record");
    assert_eq!(record.digest, image.digest());
    for blob in image.blobs() {
        assert!(node.has_content(&blob.digest).await.unwrap(), "{} missing", blob.digest);
    }
    assert!(!node.has_content(&format!("sha256:{}", "0".repeat(64))).await.unwrap());

    // The registry served every blob exactly once.
    let downloads = upstream.blob_downloads().unwrap();
    for blob in &platform.layers {
        assert_eq!(downloads.get(&blob.digest), Some(&1), "{}", blob.digest);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_platform_index_pulls_only_the_host_platform() {
    let upstream = Upstream::start().await.unwrap();
    let other = if Platform::host().architecture == "arm64" { "amd64" } else { "arm64" };
    let image = ImageBuilder::new("testbed-multi")
        .layers(&[100_000, 5_000])
        .platforms(&[Platform::host(), Platform::linux(other)])
        .build()
        .unwrap();
    let reference = image.push(&upstream, "testbed/multi:v1").await.unwrap();

    let node = Containerd::start().await.unwrap();
    node.trust_registry(&upstream).unwrap();
    let pulled = node.cri_pull(&reference).await.unwrap();
    assert_eq!(pulled.manifest_digest(), Some(image.digest()));
    assert_eq!(Some(image.digest()), image.index().map(|i| i.digest.as_str()));

    for blob in image.blobs_for(&Platform::host()) {
        assert!(node.has_content(&blob.digest).await.unwrap(), "{} missing", blob.digest);
    }
    let foreign = image.platform(&Platform::linux(other)).unwrap();
    for blob in &foreign.layers {
        assert!(!node.has_content(&blob.digest).await.unwrap(), "{} of {other} present", blob.digest);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctr_pull_outage_and_restart() {
    let mut upstream = Upstream::start().await.unwrap();
    let image = ImageBuilder::new("testbed-ctr").layers(&[50_000]).build().unwrap();
    let reference = image.push(&upstream, "testbed/ctr:v1").await.unwrap();

    let mut node = Containerd::start().await.unwrap();
    node.trust_registry(&upstream).unwrap();

    upstream.stop();
    assert!(node.ctr_pull(&reference).await.is_err(), "pull during the outage must fail");
    upstream.restart().await.unwrap();
    node.ctr_pull(&reference).await.unwrap();
    assert_eq!(node.image(&reference).await.unwrap().map(|r| r.digest).as_deref(), Some(image.digest()));

    // containerd keeps its content across a restart.
    node.restart().await.unwrap();
    assert!(node.has_content(image.digest()).await.unwrap());

    node.delete_image(&reference).await.unwrap();
    assert_eq!(node.image(&reference).await.unwrap(), None);
    let layer = &image.platforms()[0].layers[0].digest;
    node.delete_content(layer).await.unwrap();
    assert!(!node.has_content(layer).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_services_leaves_no_process_or_dir() {
    let node = Containerd::start().await.unwrap();
    let upstream = Upstream::start().await.unwrap();
    let pid = node.pid().unwrap();
    let dir = node.dir().to_owned();
    let storage = upstream.storage();
    drop(node);
    drop(upstream);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "containerd {pid} still runs");
    assert!(!dir.exists());
    assert!(!storage.exists());
}

#[test]
fn the_browser_runs_a_page_and_takes_its_picture() {
    let mut browser = peerpull_testbed::Browser::start().unwrap();
    let tab = browser.open("data:text/html,<p id=x>static</p><script>x.textContent='ran'</script>").unwrap();
    assert_eq!(browser.evaluate(&tab, "document.getElementById('x').textContent").unwrap(), "ran");
    assert!(browser.html(&tab).unwrap().contains("<p id=\"x\">ran</p>"));
    let dir = tempfile::tempdir().unwrap();
    let shot = dir.path().join("page.png");
    browser.screenshot(&tab, &shot).unwrap();
    assert!(std::fs::read(&shot).unwrap().starts_with(b"\x89PNG\r\n"));
}
