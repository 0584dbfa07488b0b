//! Memory figures from `/proc`: a process's resident set now (`VmRSS`) and
//! at its peak (`VmHWM`).

use anyhow::{anyhow, Context as _};

/// `VmRSS` and `VmHWM` of `pid`, in bytes.
pub(crate) fn memory(pid: u32) -> anyhow::Result<(u64, u64)> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        let line = status.lines().find(|l| l.starts_with(name)).ok_or_else(|| anyhow!("no {name} in {path}"))?;
        let kib: u64 =
            line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).ok_or_else(|| anyhow!("bad {line}"))?;
        Ok(kib * 1024)
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// This process's `VmRSS`, in bytes.
pub(crate) fn own_rss() -> anyhow::Result<u64> {
    Ok(memory(std::process::id())?.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_memory() {
        let (rss, hwm) = memory(std::process::id()).unwrap_or_default();
        assert!(rss > 0 && hwm >= rss);
    }
}
