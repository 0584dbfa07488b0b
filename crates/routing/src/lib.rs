//! Who holds what.
//!
//! A libp2p Kademlia router: advertise and withdraw provider records for
//! digests and tags, look up the peers that hold a key together with each
//! peer's own mirror address, bootstrap from static or DNS peers, and keep a
//! persisted node identity. A cloneable `Router` handle talks over bounded
//! channels to one event loop that owns the `Swarm`. This crate does not
//! serve or fetch content.
