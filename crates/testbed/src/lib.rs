//! Test support for peerpull: real services in temporary directories.
//!
//! Starts real containerd instances (one per test node) and a real upstream
//! registry, generates deterministic OCI images and pushes them with
//! `skopeo`, pulls into a node like kubelet does (CRI `PullImage`), and
//! inspects what a node holds. Every service is stopped and every temporary
//! directory removed when its handle is dropped, also when a test panics.
//! Nothing outside tests and benchmarks depends on this crate.
