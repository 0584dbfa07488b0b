//! Holding rendered documents against the Kubernetes API types of
//! `k8s-openapi`.
//!
//! Deserializing alone proves little: the generated types skip fields they do
//! not know. So a document is deserialized into its type and serialized back,
//! and the result must equal the document: a misspelt or misplaced field, or a
//! value of the wrong type, shows up as a difference at its path.

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value as Json;

use crate::{Doc, Error};

/// Round-trips `doc` through its `k8s-openapi` type. Returns `false` for a
/// kind with no type here (a custom resource such as `ServiceMonitor`), which
/// the caller checks another way.
pub fn typed_round_trip(doc: &Doc) -> Result<bool, Error> {
    let json = doc.json()?;
    let checked = match (api_version(&json), doc.kind()) {
        ("apps/v1", "DaemonSet") => round_trip::<DaemonSet>(&json),
        ("batch/v1", "Job") => round_trip::<Job>(&json),
        ("v1", "ConfigMap") => round_trip::<ConfigMap>(&json),
        ("v1", "Secret") => round_trip::<Secret>(&json),
        ("v1", "Service") => round_trip::<Service>(&json),
        ("v1", "ServiceAccount") => round_trip::<ServiceAccount>(&json),
        ("networking.k8s.io/v1", "NetworkPolicy") => round_trip::<NetworkPolicy>(&json),
        ("rbac.authorization.k8s.io/v1", "Role") => round_trip::<Role>(&json),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => round_trip::<RoleBinding>(&json),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => round_trip::<ClusterRole>(&json),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => round_trip::<ClusterRoleBinding>(&json),
        _ => return Ok(false),
    };
    checked.map_err(|e| Error::Invalid(format!("{} {} ({}): {e}", doc.kind(), doc.name(), doc.source)))?;
    Ok(true)
}

fn api_version(json: &Json) -> &str {
    json.get("apiVersion").and_then(Json::as_str).unwrap_or("")
}

fn round_trip<T: DeserializeOwned + Serialize>(json: &Json) -> Result<(), String> {
    let typed: T = serde_json::from_value(json.clone()).map_err(|e| format!("does not deserialize: {e}"))?;
    let back = serde_json::to_value(&typed).map_err(|e| format!("does not serialize back: {e}"))?;
    let mut differences = Vec::new();
    diff("", &without_nulls(json), &back, &mut differences);
    if differences.is_empty() {
        Ok(())
    } else {
        Err(format!("fields the API type does not hold as written:\n  {}", differences.join("\n  ")))
    }
}

/// The API server drops explicit nulls; so do we before comparing.
fn without_nulls(json: &Json) -> Json {
    match json {
        Json::Object(map) => {
            Json::Object(map.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), without_nulls(v))).collect())
        }
        Json::Array(items) => Json::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

fn diff(path: &str, written: &Json, typed: &Json, out: &mut Vec<String>) {
    match (written, typed) {
        (Json::Object(a), Json::Object(b)) => {
            for (key, value) in a {
                let here = format!("{path}/{key}");
                match b.get(key) {
                    Some(other) => diff(&here, value, other, out),
                    None => out.push(format!("{here}: unknown field (written {value})")),
                }
            }
            for key in b.keys().filter(|k| !a.contains_key(*k)) {
                out.push(format!("{path}/{key}: added by the type"));
            }
        }
        (Json::Array(a), Json::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff(&format!("{path}/{i}"), x, y, out);
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(format!("{path}: written {a}, typed {b}")),
    }
}

#[cfg(test)]
mod tests {
    use super::typed_round_trip;
    use crate::Manifest;

    fn doc(yaml: &str) -> crate::Doc {
        let text = format!("---\n# Source: peerpull/templates/test.yaml\n{yaml}");
        Manifest::parse(&text).map(|m| m.docs[0].clone()).expect("test document parses")
    }

    const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  clusterIP: None\n";

    #[test]
    fn a_well_formed_object_round_trips() {
        assert!(typed_round_trip(&doc(SERVICE)).expect("round trip"));
    }

    #[test]
    fn a_misspelt_field_is_caught() {
        let error = typed_round_trip(&doc(&SERVICE.replace("clusterIP", "clusterIp"))).expect_err("typo passed");
        assert!(error.to_string().contains("/spec/clusterIp: unknown field"), "{error}");
    }

    #[test]
    fn a_value_of_the_wrong_type_is_caught() {
        let yaml = format!("{SERVICE}  publishNotReadyAddresses: \"yes\"\n");
        assert!(typed_round_trip(&doc(&yaml)).is_err());
    }

    #[test]
    fn custom_resources_are_left_to_the_caller() {
        let yaml = "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata:\n  name: m\n";
        assert!(!typed_round_trip(&doc(yaml)).expect("no error"));
    }
}
