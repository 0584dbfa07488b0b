//! `peerpull configure`: write containerd's `hosts.toml` files for the mirrors.
//!
//! Gathers the registries (from `--registry` or `--registries-yaml`),
//! hands everything to [`peerpull_hosts::configure`], and prints one line
//! per file it wrote, backed up or left alone. A `--config-path` list is
//! written into its first directory, with a warning (`config_path`). When a
//! mirror is an IPv6 address, containerd is asked its version first: 1.x
//! and 2.x need such a host written differently ([`Dialect`]).

use std::path::Path;
use std::time::Duration;

use peerpull_hosts::{Config, Dialect, HostsOptions, RegistriesYaml, Target};
use peerpull_oci::Mirrored;
use peerpull_store::containerd::{Config as StoreConfig, Containerd};

/// How long containerd may take to say its version.
const VERSION_TIMEOUT: Duration = Duration::from_secs(5);

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
    let ipv6 = args.mirrors.iter().any(|m| m.as_str().contains(']'));
    let dialect = if ipv6 { dialect(&args.containerd_socket) } else { Dialect::default() };
    let config = Config {
        config_path: crate::config_path::resolve(&args.config.config_path),
        targets,
        hosts: HostsOptions {
            mirrors: args.mirrors,
            resolve_tags: args.tags.resolve_tags,
            dial_timeout: args.dial_timeout,
            dialect,
        },
        prepend_existing: args.prepend_existing,
    };
    let report = peerpull_hosts::configure(&config)?;
    for change in &report.changes {
        println!("{change}");
    }
    Ok(())
}

/// The dialect of the containerd at `socket`; containerd 1.x's, with a
/// warning, when it does not say.
fn dialect(socket: &Path) -> Dialect {
    let version = async {
        let store = Containerd::new(StoreConfig::new(socket)).map_err(|e| e.to_string())?;
        tokio::time::timeout(VERSION_TIMEOUT, store.version()).await.map_err(|_| "no answer".to_owned())?
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
    match runtime.map_err(|e| e.to_string()).and_then(|r| r.block_on(version)) {
        Ok(version) if version.major >= 2 => Dialect::Containerd2,
        Ok(_) => Dialect::Containerd1,
        Err(e) => {
            eprintln!(
                "peerpull: warning: containerd at {} did not say its version ({e}); IPv6 mirrors are written as \
                 containerd 1.x reads them, which containerd 2 ignores: pass --containerd-socket",
                socket.display()
            );
            Dialect::Containerd1
        }
    }
}
