//! A hidden validate-only mode for tools that generate peerpull command
//! lines, such as the Helm chart's tests (`crates/chart-tests`).
//!
//! With `PEERPULL_CHECK_ARGS=1` in the environment, `peerpull` parses its
//! command line with the real definitions in [`crate::cli`] (flags, the
//! `PEERPULL_*` variables, every value parser) and then, instead of running
//! the subcommand, prints what it parsed and exits 0. Bad arguments fail as
//! always: one line on stderr and exit 64. Nothing else is checked: no file
//! is read, no socket opened, no address bound.
//!
//! It is an environment variable rather than a flag so the command-line
//! contract stays as documented and the check needs no help text.

use std::process::ExitCode;

use crate::cli::Cli;

/// The variable that turns the mode on.
const VAR: &str = "PEERPULL_CHECK_ARGS";

/// Whether the mode is on (`PEERPULL_CHECK_ARGS=1`).
pub(crate) fn requested() -> bool {
    std::env::var_os(VAR).is_some_and(|value| value == "1")
}

/// Prints the parsed command line after a marker line, and succeeds.
pub(crate) fn report(cli: &Cli) -> ExitCode {
    println!("peerpull: arguments accepted");
    println!("{:#?}", cli.command);
    ExitCode::SUCCESS
}
