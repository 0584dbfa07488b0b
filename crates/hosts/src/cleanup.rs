//! `cleanup`: undo `configure`, byte for byte.
//!
//! Moves every original in `_backup` back, removes the folders configure
//! wrote that had none, then removes `_backup`. Without a `_backup` there is
//! nothing to undo and nothing is touched. A `_backup` left by Spegel is
//! undone the same way Spegel would.

use std::path::Path;

use crate::configure::{check_config_path, previously_written, restore_entry};
use crate::error::Error;
use crate::report::Report;
use crate::state::Backup;

/// Restores the config path to what it was before the first `configure`.
pub fn cleanup(config_path: &Path) -> Result<Report, Error> {
    check_config_path(config_path)?;
    let backup = Backup::new(config_path);
    let Some(written) = previously_written(config_path, &backup)? else {
        return Ok(Report::default());
    };
    let originals = backup.originals()?;
    let mut report = Report::default();
    for name in written.iter().chain(originals.iter().filter(|o| !written.contains(o))) {
        report.push(restore_entry(config_path, &backup, name)?);
    }
    backup.remove()?;
    Ok(report)
}
