//! The chain of sources a request is answered from.
//!
//! Each [`Source`] either answers a request or passes it on; the mirror
//! tries them in order (this node's store, then peers) and answers a 404
//! when none could. Sources to come (transfers already in flight on this
//! node, the upstream registry) slot into the same chain.
//!
//! A source that answers owns its response whole: status, headers and a
//! body that counts its bytes under the source's [`Kind`]. The mirror counts
//! the request itself, once, from which source answered.

use http::Response;

use crate::body::Body;
use crate::request::Wanted;

pub(crate) mod local;
pub(crate) mod peer;

/// Where content came from; the `source` label of the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// This node's containerd.
    Local,
    /// Another node's mirror.
    Peer,
}

/// One place content can come from.
#[async_trait::async_trait]
pub(crate) trait Source: Send + Sync {
    /// Which source this is.
    fn kind(&self) -> Kind;

    /// The response when this source can serve `wanted`, or `None` to try the next.
    async fn answer(&self, wanted: &Wanted) -> Option<Response<Body>>;
}

impl Kind {
    /// The label value: `local` or `peer`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Local => "local",
            Kind::Peer => "peer",
        }
    }
}
