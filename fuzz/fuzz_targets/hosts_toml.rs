//! An existing `hosts.toml` kept behind ours (`--prepend-existing`): any
//! file that reads as TOML gives a file that reads as TOML again.

#![no_main]

use libfuzzer_sys::fuzz_target;
use peerpull_hosts::{parse_existing, render, Dialect, HostsOptions, Target};

fuzz_target!(|input: &str| {
    let Ok(existing) = parse_existing(input) else { return };
    for (mirror, dialect) in [
        ("http://10.0.0.7:5000", Dialect::Containerd1),
        ("http://[fd00::7]:5000", Dialect::Containerd1),
        ("http://[fd00::7]:5000", Dialect::Containerd2),
    ] {
        let options = HostsOptions {
            mirrors: vec![mirror.parse().expect("a mirror")],
            resolve_tags: true,
            dial_timeout: "200ms".parse().expect("a duration"),
            dialect,
        };
        for target in [Target::All, Target::Registry("docker.io".parse().expect("a registry"))] {
            let written = render(&target, &options, Some(&existing));
            assert!(parse_existing(&written).is_ok(), "{input:?} gave {written:?}");
        }
    }
});
