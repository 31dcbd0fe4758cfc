//! The manifests given to `jobset run`: read from files (an Argo
//! Workflow's step manifests expanded), JobSets defaulted and validated as
//! admission would, other objects created when the simulator serves them.

use std::path::PathBuf;

use jobset_api::{FeatureGates, JobSet, ValidationContext};
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use kube::{Client, discovery};

use crate::outcome::{Failure, bad_input};
use crate::output::Output;

/// Manifests a workflow object creates in its steps (an Argo Workflow's
/// `spec.templates[].resource.manifest`), so a JobSet launched from a
/// workflow can be run on its own.
fn embedded_manifests(doc: &serde_json::Value) -> Vec<String> {
    if doc.get("kind").and_then(|k| k.as_str()) != Some("Workflow") {
        return Vec::new();
    }
    doc.pointer("/spec/templates")
        .and_then(|t| t.as_array())
        .into_iter()
        .flatten()
        .filter_map(|t| t.pointer("/resource/manifest").and_then(|m| m.as_str()))
        .map(str::to_string)
        .collect()
}

/// A manifest read from the command line.
pub struct Manifest {
    pub source: String,
    pub value: serde_json::Value,
}

/// The JobSets and the other objects in `files`.
pub fn read_manifests(
    files: &[PathBuf],
    gates: FeatureGates,
    out: &Output,
) -> Result<(Vec<JobSet>, Vec<Manifest>), Failure> {
    let mut jobsets = Vec::new();
    let mut others = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| bad_input(format!("{}: {e}", file.display())))?;
        let docs = jobset_api::split_documents(&text)
            .map_err(|e| bad_input(format!("{}: {e}", file.display())))?;
        let mut expanded = Vec::new();
        for (i, doc) in docs.into_iter().enumerate() {
            let source = format!("{} (document {})", file.display(), i + 1);
            let embedded = embedded_manifests(&doc);
            if embedded.is_empty() {
                expanded.push((source, doc));
            } else {
                out.line(&format!(
                    "note: {source}: running the manifests its workflow steps create"
                ));
                for (j, text) in embedded.iter().enumerate() {
                    let inner = jobset_api::split_documents(text).map_err(|e| {
                        bad_input(format!("{source}, step manifest {}: {e}", j + 1))
                    })?;
                    for d in inner {
                        expanded.push((format!("{source}, step manifest {}", j + 1), d));
                    }
                }
            }
        }
        for (source, doc) in expanded {
            if doc.get("kind").and_then(|k| k.as_str()) == Some("JobSet") {
                let text =
                    serde_json::to_string(&doc).map_err(|e| bad_input(format!("{source}: {e}")))?;
                let mut js = jobset_api::parse_jobset_json(&text)
                    .map_err(|e| bad_input(format!("{source}: {e}")))?;
                if js.metadata.namespace.is_none() {
                    js.metadata.namespace = Some("default".to_string());
                }
                jobset_api::default_jobset(&mut js);
                let ctx = ValidationContext {
                    gates,
                    ..Default::default()
                };
                jobset_api::validate_create(&js, &ctx).map_err(|e| {
                    bad_input(format!(
                        "{source}: JobSet {} is invalid:\n{e}{}",
                        jobset_api::naming::effective_name(&js),
                        gate_hint(&e.to_string())
                    ))
                })?;
                jobsets.push(js);
            } else {
                others.push(Manifest { source, value: doc });
            }
        }
    }
    if jobsets.is_empty() {
        return Err(bad_input("no JobSet in the given files".to_string()));
    }
    Ok((jobsets, others))
}

/// How to turn on the alpha gates that `errors` say are off.
fn gate_hint(errors: &str) -> String {
    let off: Vec<&str> = jobset_api::KNOWN_GATES
        .iter()
        .copied()
        .filter(|g| errors.contains(&format!("{g} feature gate is disabled")))
        .collect();
    if off.is_empty() {
        return String::new();
    }
    let flags: Vec<String> = off.iter().map(|g| format!("{g}=true")).collect();
    format!(
        "\nalpha gates are off by default, as upstream; run with `--feature-gates {}`",
        flags.join(",")
    )
}

/// Creates a non-JobSet object; kinds the simulator does not serve are
/// skipped with a note.
pub async fn create_other(client: &Client, m: &Manifest, out: &Output) -> Result<(), Failure> {
    let api_version = m
        .value
        .get("apiVersion")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    let kind = m.value.get("kind").and_then(|v| v.as_str()).unwrap_or("");
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let (ar, caps) = match discovery::pinned_kind(client, &gvk).await {
        Ok(found) => found,
        Err(_) => {
            out.line(&format!(
                "note: {}: {api_version} {kind} is not served by the simulated cluster; skipped",
                m.source
            ));
            return Ok(());
        }
    };
    let obj: DynamicObject = serde_json::from_value(m.value.clone())
        .map_err(|e| bad_input(format!("{}: {e}", m.source)))?;
    let api: Api<DynamicObject> = match caps.scope {
        discovery::Scope::Namespaced => {
            let ns = obj
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".to_string());
            Api::namespaced_with(client.clone(), &ns, &ar)
        }
        discovery::Scope::Cluster => Api::all_with(client.clone(), &ar),
    };
    match api.create(&PostParams::default(), &obj).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(bad_input(format!("{}: {kind} rejected: {e}", m.source))),
    }
}
