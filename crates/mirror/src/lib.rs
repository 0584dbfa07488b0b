//! The `/v2` mirror.
//!
//! An HTTP server (hyper) speaking the read side of the OCI distribution API.
//! It serves content from this node's store, fetches it from peers found
//! through the router (hedged, resumable, verified), and otherwise answers a
//! fast 404 so containerd goes to its next host. It also serves metrics and
//! health endpoints. It owns no containerd or DHT state of its own.
