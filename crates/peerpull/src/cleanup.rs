//! `peerpull cleanup`: undo `configure`, byte for byte.

use crate::cli::CleanupArgs;
use crate::exit::Failure;

/// Runs `cleanup`.
pub(crate) fn run(args: CleanupArgs) -> Result<(), Failure> {
    let path = crate::config_path::resolve(&args.config.config_path);
    let report = peerpull_hosts::cleanup(&path)?;
    if report.changes.is_empty() {
        println!("nothing to clean up in {}", path.display());
    }
    for change in &report.changes {
        println!("{change}");
    }
    Ok(())
}
