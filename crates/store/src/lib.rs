//! What this node holds.
//!
//! The `Store` trait answers, for one containerd namespace, which tags and
//! digests this node can serve and opens their bytes. The containerd
//! implementation talks gRPC to the node's containerd; an in-memory
//! implementation backs the unit tests of other crates. This crate does not
//! know about peers or HTTP.
