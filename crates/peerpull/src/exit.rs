//! Turning errors into one line on stderr and an exit code.
//!
//! Operators and tests read the last line of stderr and the exit code, so
//! every failure is exactly one line, `peerpull: error: <what>`, and bad
//! usage or configuration (clap's errors included) exits 64 (`EX_USAGE`
//! from sysexits.h) rather than clap's default 2.

use std::io::Write;
use std::process::ExitCode;

use clap::error::ErrorKind;

/// Exit code for bad usage or configuration.
pub(crate) const USAGE: u8 = 64;
/// Exit code for a failure while working.
pub(crate) const FAILURE: u8 = 1;

/// Why a command failed, which decides the exit code.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The input was wrong; nothing was changed.
    Usage(anyhow::Error),
    /// Something failed while working.
    Runtime(anyhow::Error),
}

impl Failure {
    /// Prints the one-line message and gives the exit code.
    pub(crate) fn report(self) -> ExitCode {
        let (error, code) = match self {
            Failure::Usage(e) => (e, USAGE),
            Failure::Runtime(e) => (e, FAILURE),
        };
        // Our library errors already name their cause; `{:#}` would repeat it.
        print_error(&error.to_string());
        ExitCode::from(code)
    }

    /// A usage failure from any displayable error.
    pub(crate) fn usage(error: impl Into<anyhow::Error>) -> Self {
        Failure::Usage(error.into())
    }
}

impl From<peerpull_hosts::Error> for Failure {
    fn from(error: peerpull_hosts::Error) -> Self {
        if error.is_usage() {
            Failure::Usage(error.into())
        } else {
            Failure::Runtime(error.into())
        }
    }
}

/// Help and version go to stdout with 0; any other clap error is one line and 64.
pub(crate) fn clap_error(error: clap::Error) -> ExitCode {
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = error.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = error.print();
            ExitCode::from(USAGE)
        }
        _ => {
            // Clap's message is a paragraph and then tips and usage; keep the paragraph.
            let rendered = error.render().to_string();
            let paragraph: Vec<&str> = rendered.lines().map(str::trim).take_while(|line| !line.is_empty()).collect();
            let message = paragraph.join(" ");
            print_error(message.strip_prefix("error: ").unwrap_or(&message));
            ExitCode::from(USAGE)
        }
    }
}

fn print_error(message: &str) {
    let line = message.split_whitespace().collect::<Vec<_>>().join(" ");
    let _ = writeln!(std::io::stderr(), "peerpull: error: {line}");
}
