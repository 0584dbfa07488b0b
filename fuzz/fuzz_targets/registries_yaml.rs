//! k3s `registries.yaml`: any file either fails with an error or gives
//! registries to mirror.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use peerpull_hosts::RegistriesYaml;

fuzz_target!(|input: &str| {
    if let Ok(yaml) = RegistriesYaml::parse(input, Path::new("registries.yaml")) {
        let _ = yaml.targets();
    }
});
