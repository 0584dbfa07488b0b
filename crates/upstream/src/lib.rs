//! The upstream registry client.
//!
//! [`Client`] makes the read requests a mirror sends to a registry when no
//! node holds what containerd asked for: `GET`/`HEAD` of manifests and blobs,
//! whole or from a byte offset. It speaks HTTPS (rustls, with the system's
//! roots or a registry's own CA) and plain HTTP for `http://` registries,
//! follows redirects (Docker Hub sends blobs to a CDN), and authenticates the
//! way registries ask: the Docker token flow (a `401` with a `Bearer`
//! challenge, answered with an anonymous or credentialed token that is
//! cached until it expires), or Basic. A `429` comes back with its
//! `Retry-After`. Every request is bounded in time. The client remembers how
//! each registry last answered and whether it is paused ([`Client::health`]). It does not cache
//! content or decide what to fetch: that is the mirror's.
//!
//! The parts:
//! - [`config`]: [`Config`], per-registry [`Credentials`] and [`Tls`];
//! - [`error`](mod@error): [`Error`], what a request can come back with;
//! - `auth`: challenges, token requests and the token cache;
//! - `client`: [`Client`] and [`Fetch`], one request through redirects and auth;
//! - `tls`: the rustls settings of each registry.

pub mod config;
pub mod error;

mod auth;
mod client;
mod tls;

pub use client::{Client, Fetch, Health};
pub use config::{Config, Credentials, RegistrySettings, Tls};
pub use error::{Error, Outcome};
