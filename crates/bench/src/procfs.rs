//! Figures of a process from `/proc`: its resident set now (`VmRSS`) and at
//! its peak (`VmHWM`), and the CPU time all its threads have used.

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

/// CPU seconds `pid` has used so far, user and system, all its threads
/// (`utime` + `stime` of `/proc/<pid>/stat`).
pub(crate) fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // The command name (field 2) may hold spaces and parentheses: fields are counted after its last `)`.
    let (_, rest) = stat.rsplit_once(')').ok_or_else(|| anyhow!("bad {path}: {stat:?}"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the file; `rest` starts at field 3.
    let tick = |n: usize| -> anyhow::Result<u64> {
        fields.get(n - 3).and_then(|v| v.parse().ok()).ok_or_else(|| anyhow!("no field {n} in {path}"))
    };
    let ticks = tick(14)? + tick(15)?;
    Ok(ticks as f64 / rustix::param::clock_ticks_per_second() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_memory() {
        let (rss, hwm) = memory(std::process::id()).unwrap_or_default();
        assert!(rss > 0 && hwm >= rss);
    }

    #[test]
    fn cpu_time_grows_with_work() {
        let before = cpu_seconds(std::process::id()).unwrap_or(f64::NAN);
        let started = std::time::Instant::now();
        let mut x = 1u64;
        while started.elapsed() < std::time::Duration::from_millis(300) {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let after = cpu_seconds(std::process::id()).unwrap_or(f64::NAN);
        assert!(after - before >= 0.1, "{before} -> {after}");
    }
}
