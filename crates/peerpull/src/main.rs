//! The `peerpull` binary: command line, configuration, wiring, signals, logs.
//!
//! All behaviour lives in the library crates; this crate parses the command
//! line, sets up logging, starts the subsystems and turns errors into exit
//! codes. Each subcommand has its own module with a `run(args)` entry point;
//! their flags are declared in [`cli`].
//!
//! Exit codes: 0 on success (and for `--help`/`--version`), 64 (`EX_USAGE`)
//! for bad usage or configuration, with a one-line message on stderr, 1 for
//! a failure while working.

mod admin;
mod check_args;
mod cleanup;
mod cli;
mod config_path;
mod configure;
mod doctor;
mod exit;
mod logging;
mod node_zone;
mod run;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return exit::clap_error(e),
    };
    if check_args::requested() {
        return check_args::report(&cli);
    }
    let result = match cli.command {
        Command::Run(args) => run::run(*args),
        Command::Configure(args) => configure::run(args),
        Command::Cleanup(args) => cleanup::run(args),
        Command::Doctor(args) => doctor::run(*args),
        Command::Status(args) => admin::status(args),
        Command::Locate(args) => admin::locate(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}
