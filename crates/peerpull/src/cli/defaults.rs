//! The flags' defaults, taken from the config types so that each lives in one place.
//!
//! A flag that sets a field of a library's configuration takes its default
//! from that type: `peerpull_mirror::Config::default()` (with
//! `UpstreamFallback::new` for the spool and `Limits::default()` for
//! connections), `peerpull_routing::Config::default()`, and the constants
//! the store, hosts and admin crates export. Flags whose setting no config
//! type holds (the containerd socket, the metrics address, the debug page,
//! logging, output, doctor's containerd config file) keep a literal default
//! in `cli`. The Helm chart's `values.yaml`, its README and the top-level
//! README repeat the defaults; `tests` checks that all of them agree.
//!
//! clap takes a default as text and parses it like a user's value; sizes
//! and durations are written in the flags' own syntax (`4Gi`, `2s`) so
//! that `--help` shows them as a user would write them.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use peerpull_mirror::UpstreamFallback;

use super::{PrivateImagesArg, TagResolutionArg};

#[cfg(test)]
mod tests;

/// The mirror's defaults.
pub(super) fn mirror() -> peerpull_mirror::Config {
    peerpull_mirror::Config::default()
}

/// The router's defaults.
pub(super) fn routing() -> peerpull_routing::Config {
    peerpull_routing::Config::default()
}

/// The listeners' connection limits.
pub(super) fn limits() -> peerpull_mirror::Limits {
    peerpull_mirror::Limits::default()
}

/// A count as the `u32` its flag takes (no default comes near the limit).
pub(super) fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The preheater's defaults.
pub(super) fn preheat() -> peerpull_node::preheat::Config {
    peerpull_node::preheat::Config::default()
}

/// `--preheat-interval`.
pub(super) fn preheat_interval() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| duration(preheat().interval))
}

/// `--tag-resolution`.
pub(super) fn tag_resolution() -> TagResolutionArg {
    mirror().tag_resolution.into()
}

/// `--tag-timeout`.
pub(super) fn tag_timeout() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| duration(mirror().tag_timeout))
}

/// `--private-images`.
pub(super) fn private_images() -> PrivateImagesArg {
    mirror().private_images.mode.into()
}

/// `--private-grace`.
pub(super) fn private_grace() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| duration(mirror().private_images.grace))
}

/// `--spool-max-bytes`.
pub(super) fn spool_max_bytes() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| bytes(UpstreamFallback::new(PathBuf::new()).spool_max_bytes))
}

/// `--max-upload-rate`.
pub(super) fn max_upload_rate() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| bytes(mirror().max_upload_rate))
}

/// `--multi-source-min-bytes`.
pub(super) fn multi_source_min_bytes() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| bytes(mirror().multi_source_min_bytes))
}

/// `n` bytes as the byte-count flags take them: in the largest binary unit
/// that divides `n` exactly (`4Gi`, `32Mi`), else plain.
fn bytes(n: u64) -> String {
    let unit = [(40, "Ti"), (30, "Gi"), (20, "Mi"), (10, "Ki")]
        .into_iter()
        .find(|(shift, _)| n != 0 && n.trailing_zeros() >= *shift);
    match unit {
        Some((shift, suffix)) => format!("{}{suffix}", n >> shift),
        None => n.to_string(),
    }
}

/// `d` in Go syntax, as the duration flags take it: whole seconds,
/// milliseconds or nanoseconds.
fn duration(d: Duration) -> String {
    match (d.subsec_nanos(), d.subsec_nanos() % 1_000_000) {
        (0, _) => format!("{}s", d.as_secs()),
        (_, 0) => format!("{}ms", d.as_millis()),
        _ => format!("{}ns", d.as_nanos()),
    }
}
