//! Logging set-up: `tracing` to stderr, text or JSON.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;
use crate::exit::Failure;

/// Installs the global subscriber with `level` (a level or filter directive).
pub(crate) fn init(level: &str, format: LogFormat) -> Result<(), Failure> {
    let filter = EnvFilter::try_new(level)
        .map_err(|e| Failure::usage(anyhow::anyhow!("--log-level {level:?} is not a level or filter: {e}")))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    installed.map_err(|e| Failure::Runtime(anyhow::anyhow!("installing the logger: {e}")))
}
