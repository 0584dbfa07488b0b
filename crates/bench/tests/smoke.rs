//! Smoke test: every scenario of the benchmark at tiny sizes with one
//! repeat, so the harness cannot rot. Asserts the report is written and
//! every figure in it is a finite number; the timings themselves are not
//! judged here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The whole run must finish well within this.
const TIMEOUT: Duration = Duration::from_secs(300);

/// `peerpull` built for the same profile as this test (cargo builds only
/// this package's binary for its tests).
fn peerpull_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("PEERPULL_BIN") {
        return PathBuf::from(path);
    }
    let bench = Path::new(env!("CARGO_BIN_EXE_peerpull-bench"));
    let profile_dir = bench.parent().unwrap();
    let mut build = Command::new(env!("CARGO"));
    build.args(["build", "-p", "peerpull"]);
    if profile_dir.ends_with("release") {
        build.arg("--release");
    }
    let status = build.current_dir(env!("CARGO_MANIFEST_DIR")).status().expect("running cargo build -p peerpull");
    assert!(status.success(), "cargo build -p peerpull failed");
    profile_dir.join("peerpull")
}

#[test]
fn every_scenario_at_tiny_sizes_writes_finite_figures() {
    let out = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_peerpull-bench"))
        .env("PEERPULL_BIN", peerpull_binary())
        .args(["--repeats", "1", "--serve-blob-mib", "4", "--manifest-requests", "20"])
        .args(["--peer-layers-mib", "1,1", "--rollout-nodes", "2", "--rollout-sizes-mib", "2"])
        .args(["--rollout-layers", "1", "--miss-layer-kib", "64", "--memory-keys", "100"])
        .args(["--dht-routers", "6", "--dht-lookups", "10", "--soak-blob-mib", "4", "--soak-clients", "3"])
        .args(["--soak-stalled", "5", "--soak-nodes", "2", "--soak-image-mib", "4", "--soak-kill-every-ms", "100"])
        .args(["--scale-routers", "6,8", "--scale-keys", "2", "--scale-lookups", "10", "--scale-rest-secs", "1"])
        .args(["--relay-nodes", "3", "--relay-blob-mib", "4"])
        .args(["--content-keys", "12", "--content-rest-secs", "1", "--content-measure-secs", "2"])
        .args(["--zones-nodes-per-zone", "1", "--zones-image-mib", "2"])
        .args(["--out"])
        .arg(out.path())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            // SIGKILL would skip the benchmark's clean-up; SIGINT lets it drop everything.
            let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
            let _ = child.wait();
            panic!("the benchmark did not finish within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(status.success(), "peerpull-bench failed: {status}");

    let markdown = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("report.json")).unwrap()).unwrap();
    let sections = json["sections"].as_array().unwrap();
    let keys: Vec<&str> = sections.iter().map(|s| s["key"].as_str().unwrap()).collect();
    for want in [
        "serve",
        "peer",
        "miss",
        "memory-routers",
        "memory-peerpull",
        "dht",
        "rollout-2m-rolling",
        "rollout-2m-all-at-once",
        "relay",
        "content",
        "zones",
    ] {
        assert!(keys.contains(&want), "no section {want} in {keys:?}");
    }
    for section in sections {
        let rows = section["rows"].as_array().unwrap();
        assert!(!rows.is_empty(), "section {} has no figures", section["key"]);
        for row in rows {
            for field in ["median", "min", "max"] {
                let value = row[field].as_f64();
                assert!(
                    value.is_some_and(f64::is_finite),
                    "{} {}: {field} is {}",
                    section["key"],
                    row["label"],
                    row[field]
                );
            }
            for ratio in row["ratios"].as_array().unwrap() {
                // A ratio against a zero baseline is infinite or NaN: both would be a bug.
                assert!(ratio["ratio"].as_f64().is_some_and(f64::is_finite), "{}: ratio {ratio}", row["label"]);
            }
            assert!(markdown.contains(row["label"].as_str().unwrap()));
        }
    }
    let charts =
        std::fs::read_dir(out.path()).unwrap().flatten().filter(|e| e.path().extension().is_some_and(|x| x == "png"));
    assert!(charts.count() >= sections.len(), "a chart per section at least");
}
