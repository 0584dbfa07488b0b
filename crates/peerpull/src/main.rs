//! The `peerpull` binary: command line, configuration, wiring, signals, logs.
//!
//! All behaviour lives in the library crates; this crate parses the command
//! line, sets up logging, starts the subsystems and turns errors into exit
//! codes.

use clap::Parser;

/// Peer-to-peer container image distribution for Kubernetes nodes.
#[derive(Debug, Parser)]
#[command(name = "peerpull", version, about)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
}
