//! Reading k3s `registries.yaml`: good files and malformed ones.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use peerpull_hosts::{RegistriesYaml, RegistriesYamlError, Target};

fn parse(text: &str) -> Result<RegistriesYaml, RegistriesYamlError> {
    RegistriesYaml::parse(text, Path::new("/etc/rancher/k3s/registries.yaml"))
}

fn dirs(yaml: &RegistriesYaml) -> Vec<String> {
    yaml.targets().unwrap().iter().map(|t| t.dir_name().to_owned()).collect()
}

#[test]
fn k3s_example() {
    let yaml = parse(
        r#"
mirrors:
  docker.io:
    endpoint:
      - "https://mirror.example.com:5000"
  "127.0.0.1:5000":
    endpoint: ["http://127.0.0.1:5000"]
  ghcr.io:
  quay.io: {}
configs:
  "mirror.example.com:5000":
    auth:
      username: xxxxxx
      password: xxxxxx
    tls:
      cert_file: /etc/ssl/client.crt
      key_file: /etc/ssl/client.key
      ca_file: /etc/ssl/ca.crt
  ghcr.io:
    auth:
      auth: aGVsbG86d29ybGQ=
  quay.io:
    auth:
      identitytoken: tok
    tls:
      insecure_skip_verify: true
"#,
    )
    .unwrap();
    assert_eq!(dirs(&yaml), ["127.0.0.1:5000", "docker.io", "ghcr.io", "quay.io"]);
    let servers: Vec<Option<String>> = yaml.targets().unwrap().iter().map(Target::server).collect();
    assert_eq!(servers[0].as_deref(), Some("http://127.0.0.1:5000"), "an HTTP endpoint for itself means plain HTTP");
    assert_eq!(servers[1].as_deref(), Some("https://registry-1.docker.io"));

    let mirror = yaml.config_for("mirror.example.com:5000").unwrap();
    assert_eq!(mirror.auth.as_ref().unwrap().credentials(), Some(("xxxxxx".into(), "xxxxxx".into())));
    let tls = mirror.tls.as_ref().unwrap();
    assert_eq!(tls.ca_file.as_deref(), Some(PathBuf::from("/etc/ssl/ca.crt").as_path()));
    assert!(!tls.insecure_skip_verify);
    let ghcr = yaml.config_for("ghcr.io").unwrap();
    assert_eq!(ghcr.auth.as_ref().unwrap().credentials(), Some(("hello".into(), "world".into())));
    let quay = yaml.config_for("quay.io").unwrap();
    assert_eq!(quay.auth.as_ref().unwrap().identitytoken.as_deref(), Some("tok"));
    assert!(quay.tls.as_ref().unwrap().insecure_skip_verify);
    assert!(yaml.config_for("docker.io").is_none());
}

#[test]
fn star_or_nothing_means_default() {
    assert_eq!(dirs(&parse("mirrors:\n  \"*\":\n").unwrap()), ["_default"]);
    assert_eq!(dirs(&parse("").unwrap()), ["_default"]);
    assert_eq!(dirs(&parse("configs:\n  \"*\":\n    tls: {insecure_skip_verify: true}\n").unwrap()), ["_default"]);
    let yaml = parse("configs:\n  \"*\":\n    auth: {username: a, password: b}\n").unwrap();
    assert!(yaml.config_for("anything.io").is_some());
}

#[test]
fn malformed_files_give_one_line_errors() {
    let cases = [
        "mirrors: [docker.io]\n",
        "mirrors:\n  docker.io:\n    endpoint: 5\n",
        "mirrors:\n  docker.io:\n   - a\n  b: [\n",
        "mirrors:\n  \"not a host\":\n",
        "configs:\n  ghcr.io:\n    auth:\n      auth: \"%%%\"\n",
        "configs:\n  ghcr.io:\n    tls:\n      insecure_skip_verify: maybe\n",
    ];
    for case in cases {
        let err = parse(case).unwrap_err().to_string();
        assert!(err.starts_with("/etc/rancher/k3s/registries.yaml: "), "{case:?}: {err}");
        assert!(!err.contains('\n'), "{case:?}: {err}");
    }
    let err = RegistriesYaml::from_path(Path::new("/nonexistent/registries.yaml")).unwrap_err();
    assert!(matches!(err, RegistriesYamlError::Read { .. }));
}
