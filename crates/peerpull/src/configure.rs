//! `peerpull configure`: write containerd's `hosts.toml` files for the mirrors.
//!
//! Gathers the registries (from `--registry` or `--registries-yaml`),
//! hands everything to [`peerpull_hosts::configure`], and prints one line
//! per file it wrote, backed up or left alone. A `--config-path` list is
//! written into its first directory, with a warning (`config_path`).

use peerpull_hosts::{Config, HostsOptions, RegistriesYaml, Target};
use peerpull_oci::Mirrored;

use crate::cli::ConfigureArgs;
use crate::exit::Failure;

/// Runs `configure`.
pub(crate) fn run(args: ConfigureArgs) -> Result<(), Failure> {
    let targets = match &args.yaml.registries_yaml {
        Some(path) => {
            let yaml = RegistriesYaml::from_path(path).map_err(Failure::usage)?;
            yaml.targets().map_err(Failure::usage)?
        }
        None => Target::of(&Mirrored::from_list(args.registries)),
    };
    let config = Config {
        config_path: crate::config_path::resolve(&args.config.config_path),
        targets,
        hosts: HostsOptions {
            mirrors: args.mirrors,
            resolve_tags: args.tags.resolve_tags,
            dial_timeout: args.dial_timeout,
        },
        prepend_existing: args.prepend_existing,
    };
    let report = peerpull_hosts::configure(&config)?;
    for change in &report.changes {
        println!("{change}");
    }
    Ok(())
}
