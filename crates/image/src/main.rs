//! `peerpull-image`: writes the peerpull container image as an OCI archive
//! (`make image` runs it on the release build).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Assemble the peerpull container image as an OCI archive.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The built `peerpull` binary.
    #[arg(long, value_name = "PATH", default_value = "target/release/peerpull")]
    binary: PathBuf,
    /// The image tag (the chart's appVersion by default).
    #[arg(long, default_value = env!("CARGO_PKG_VERSION"))]
    tag: String,
    /// Where to write the archive.
    #[arg(long, value_name = "PATH", default_value = "target/image/peerpull.oci.tar")]
    out: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match peerpull_image::build(&args.binary, &args.tag, &args.out) {
        Ok(built) => {
            println!("{} {}", built.reference, built.digest);
            println!(
                "  {}: layer {:.1} MiB compressed, {:.1} MiB unpacked",
                args.out.display(),
                built.layer_size as f64 / 1048576.0,
                built.unpacked_size as f64 / 1048576.0
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("peerpull-image: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
