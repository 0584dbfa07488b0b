//! End-to-end scenarios for peerpull.
//!
//! Several nodes, each its own containerd and `peerpull run` process, a real
//! upstream registry, and faults injected between them. The scenarios live in
//! this package's `tests/` folder; this library holds what they share.
