//! peerpull benchmarks: reproducible scenarios on the testbed.
//!
//! Each scenario runs on real containerd nodes, real `peerpull run`
//! processes and real `docker-registry` instances on this machine, repeats,
//! and reports every figure as its median and spread (min–max), absolute and
//! as a ratio against a baseline measured in the same run. The results are
//! printed as a table and written to `report.md`, `report.json` and PNG
//! charts (see the crate's README for the command and the last results).
//!
//! The parts: [`cli`] (flags), [`scenario`] (the scenarios), [`cluster`]
//! (nodes), [`registry`] and [`shaped`] (upstreams, a pull-through cache and a
//! bandwidth-limited link), [`http`], [`procfs`] and [`prom`] (measuring), [`stats`],
//! [`report`] and [`chart`] (results).

mod chart;
mod cli;
mod cluster;
mod http;
mod procfs;
mod prom;
mod registry;
mod report;
mod scenario;
mod shaped;
mod stats;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context as _};
use clap::Parser as _;

use crate::cli::{Args, Scenario};
use crate::report::{Report, Section};

/// Prints what is running and since when, on stderr.
#[derive(Debug)]
pub(crate) struct Progress {
    start: Instant,
}

impl Progress {
    /// Prints one progress line.
    pub(crate) fn say(&self, message: impl AsRef<str>) {
        eprintln!("[{:>7.1}s] {}", self.start.elapsed().as_secs_f64(), message.as_ref());
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.repeats == 0 {
        bail!("--repeats must be at least 1");
    }
    if args.memory_probe {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting tokio")?;
        return runtime.block_on(scenario::memory::probe(args.memory_keys));
    }
    let exe = std::env::current_exe().context("locating this binary")?;
    let profile_dir = exe.parent().map(PathBuf::from).unwrap_or_default();
    if std::env::var_os("PEERPULL_BIN").is_none() {
        let beside = profile_dir.join("peerpull");
        if !beside.is_file() {
            bail!(
                "no peerpull binary beside {} (build it with `cargo build --release -p peerpull`, or set PEERPULL_BIN)",
                exe.display()
            );
        }
        // Set before the runtime starts any thread.
        std::env::set_var("PEERPULL_BIN", beside);
    }
    let out = args.out.clone().unwrap_or_else(|| profile_dir.parent().map(|t| t.join("bench")).unwrap_or_default());
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting tokio")?;
    runtime.block_on(async {
        tokio::select! {
            result = run(&args, &out) => result,
            _ = tokio::signal::ctrl_c() => bail!("interrupted; everything started was stopped"),
        }
    })
}

async fn run(args: &Args, out: &std::path::Path) -> anyhow::Result<()> {
    let progress = Progress { start: Instant::now() };
    let mut report = Report::default();
    let mut peerpull_memory: Option<Section> = None;
    for scenario in &args.scenarios {
        progress.say(format!("scenario {scenario}"));
        match scenario {
            Scenario::Serve => report.sections.push(scenario::serve::run(args, &progress).await?),
            Scenario::Peer => report.sections.push(scenario::peer::run(args, &progress).await?),
            Scenario::Miss => report.sections.push(scenario::miss::run(args, &progress).await?),
            Scenario::Dht => report.sections.push(scenario::dht::run(args, &progress).await?),
            Scenario::Memory => report.sections.push(scenario::memory::run(args, &progress).await?),
            Scenario::Soak => report.sections.extend(scenario::soak::run(args, &progress).await?),
            Scenario::Holders => report.sections.push(scenario::holders::run(args, &progress).await?),
            Scenario::Scale => report.sections.push(scenario::scale::run(args, &progress).await?),
            Scenario::Relay => report.sections.push(scenario::relay::run(args, &progress).await?),
            Scenario::Content => report.sections.push(scenario::content::run(args, &progress).await?),
            Scenario::Zones => report.sections.push(scenario::zones::run(args, &progress).await?),
            Scenario::Rollout => {
                let (sections, memory) = scenario::rollout::run(args, &progress).await?;
                report.sections.extend(sections);
                peerpull_memory = Some(memory);
            }
        }
    }
    if let Some(memory) = peerpull_memory {
        report.sections.push(memory);
    }
    let header = header(args);
    let charts = chart::write(&report, out)?;
    report.write(out, &header, &charts)?;
    println!("{}", report.table());
    progress.say(format!("report: {}", out.join("report.md").display()));
    Ok(())
}

/// The report's heading: when, on what machine, with which command.
fn header(args: &Args) -> String {
    let command: Vec<String> = std::env::args().collect();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown".to_owned(), |(_, v)| v.trim().to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let ram_kib: u64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "# peerpull benchmark report\n\n- Command: `{}`\n- Machine: {cores} cores (nproc), {cpu}, {:.1} GiB RAM, Linux {}\n- Repeats: {} per figure (median, min–max)\n",
        command.join(" "),
        ram_kib as f64 / (1024.0 * 1024.0),
        kernel.trim(),
        args.repeats
    )
}
