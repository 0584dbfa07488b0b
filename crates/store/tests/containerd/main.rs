//! The containerd store against real containerd nodes from the testbed:
//! images pulled through CRI, listed, resolved, described and read back
//! byte for byte over both read paths, watched through re-tags, deletions
//! and restarts (behind a gate the test can shut), and the CRI
//! configuration check.

#![allow(clippy::unwrap_used)]

mod config;
mod gate;
mod list;
mod read;
mod support;
mod throughput;
mod watch;
