//! An existing `hosts.toml` kept behind ours (`--prepend-existing`): any
//! file that reads as TOML gives a file that reads as TOML again.

#![no_main]

use libfuzzer_sys::fuzz_target;
use peerpull_hosts::{parse_existing, render, HostsOptions, Target};

fuzz_target!(|input: &str| {
    let Ok(existing) = parse_existing(input) else { return };
    let options = HostsOptions {
        mirrors: vec!["http://10.0.0.7:5000".parse().expect("a mirror")],
        resolve_tags: true,
        dial_timeout: "200ms".parse().expect("a duration"),
    };
    for target in [Target::All, Target::Registry("docker.io".parse().expect("a registry"))] {
        let written = render(&target, &options, Some(&existing));
        assert!(parse_existing(&written).is_ok(), "{input:?} gave {written:?}");
    }
});
