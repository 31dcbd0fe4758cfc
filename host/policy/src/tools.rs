//! Library side of `jobset policy inspect|test|pack`: look inside a
//! component, run it against a scenario written in YAML, and wrap it into a
//! plugin ConfigMap. The `jobset` binary prints what these return.

use crate::engine::PolicyEngine;
use crate::error::{LoadError, PolicyError};
use crate::registry::{PLUGIN_LABEL, SHA256_ANNOTATION, WASM_KEY};
use crate::runtime::{Runtime, sha256_hex};
use crate::snapshot::{InPlaceRestart, JobPods, PlacementRequest, Slot, Snapshot};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;

/// What a component is and what it asks for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Inspection {
    /// `meta.info().name`, when the component is a loadable plugin.
    pub name: Option<String>,
    /// `meta.info().version`, likewise.
    pub version: Option<String>,
    /// The `jobset:policy` contract version it speaks, likewise.
    pub contract: Option<String>,
    /// The optional inputs it asks for (`pod-facts`), likewise.
    pub inputs: Vec<String>,
    /// Every interface or function the component exports.
    pub exports: Vec<String>,
    /// Every interface or function it imports.
    pub imports: Vec<String>,
    /// Size in bytes.
    pub size: usize,
    /// Lowercase hex sha256.
    pub sha256: String,
    /// Why it would not load as a plugin, if it would not.
    pub problem: Option<String>,
}

/// A scenario for [`test`]: a slot, a snapshot and (for placement) a
/// request, as YAML.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Scenario {
    /// `startup`, `outcome` or `placement`.
    pub slot: Slot,
    /// The snapshot the plugin sees.
    pub snapshot: Snapshot,
    /// The pending Jobs (placement only).
    #[serde(default)]
    pub request: Option<PlacementRequest>,
    /// The failed pods of failed Jobs (outcome only; given to a plugin
    /// that asks for `pod-facts`).
    #[serde(default)]
    pub pods: Vec<JobPods>,
    /// An in-place restart (outcome only): given, the scenario is the
    /// outcome slot's `decide-in-place` instead of `decide`.
    #[serde(default)]
    pub in_place: Option<InPlaceRestart>,
}

/// Describes a component (`jobset policy inspect`); errors name it by
/// `label` (say, the file it came from).
pub fn inspect(runtime: &Runtime, label: &str, bytes: &[u8]) -> Result<Inspection, LoadError> {
    let sha256 = sha256_hex(bytes);
    let component = runtime.compile(label, &sha256, bytes)?;
    let engine = &runtime.inner.engine;
    let ty = component.component_type();
    let exports = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
    let imports = ty.imports(engine).map(|(n, _)| n.to_string()).collect();
    let (loaded, problem) = match runtime.load(label, bytes) {
        Ok(p) => (Some(p.info().clone()), None),
        Err(e) => (None, Some(e.to_string())),
    };
    Ok(Inspection {
        name: loaded.as_ref().map(|i| i.name.clone()),
        version: loaded.as_ref().map(|i| i.version.clone()),
        contract: loaded.as_ref().map(|i| i.contract.clone()),
        inputs: loaded.map(|i| i.inputs).unwrap_or_default(),
        exports,
        imports,
        size: bytes.len(),
        sha256,
        problem,
    })
}

/// Runs a component against a YAML scenario (`jobset policy test`). The
/// outer error: the scenario or the component cannot be used. The inner
/// one: the plugin ran and its decision failed (trap, timeout, invalid
/// verdict...), named with `label` (say, the file it came from). A verdict
/// comes back as YAML under a `# decided by name@sha256` line.
pub fn test(
    runtime: &Runtime,
    label: &str,
    bytes: &[u8],
    scenario_yaml: &str,
) -> Result<Result<String, PolicyError>, LoadError> {
    let scenario: Scenario = serde_yaml::from_str(scenario_yaml).map_err(|e| {
        LoadError::Scenario(format!(
            "{e} (a policy scenario has `slot`, `snapshot`, for placement `request`, \
             and for outcome `pods` or `in_place`)"
        ))
    })?;
    let plugin = runtime.load(label, bytes)?;
    let yaml = |v: &dyn erased::Yaml| v.to_yaml();
    let text = match scenario.slot {
        Slot::Startup => plugin
            .decide_startup(&scenario.snapshot)
            .map(|d| yaml(&d.verdict)),
        Slot::Outcome => match &scenario.in_place {
            Some(restart) => plugin.decide_in_place(&scenario.snapshot, restart),
            None => plugin.decide_outcome(&scenario.snapshot, &scenario.pods),
        }
        .map(|d| yaml(&d.verdict)),
        Slot::Placement => {
            let request = scenario.request.unwrap_or(PlacementRequest {
                jobs: Vec::new(),
                domains: Vec::new(),
            });
            plugin
                .decide_placement(&scenario.snapshot, &request)
                .map(|d| yaml(&d.verdict))
        }
    };
    Ok(text.map(|t| {
        format!(
            "# decided by {}@{}\n{t}",
            plugin.info().name,
            &plugin.info().sha256[..12]
        )
    }))
}

/// The plugin ConfigMap for a component (`jobset policy pack`), pinned to
/// its sha256.
pub fn pack(bytes: &[u8], name: &str, namespace: &str) -> Result<String, LoadError> {
    pack_signed(bytes, name, namespace, None)
}

/// As [`pack`], with the signature annotation `signature` (see `trust`).
pub fn pack_signed(
    bytes: &[u8],
    name: &str,
    namespace: &str,
    signature: Option<&str>,
) -> Result<String, LoadError> {
    let mut annotations = BTreeMap::from([(SHA256_ANNOTATION.to_string(), sha256_hex(bytes))]);
    if let Some(sig) = signature {
        annotations.insert(
            crate::trust::SIGNATURE_ANNOTATION.to_string(),
            sig.to_string(),
        );
    }
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(format!("jobset-policy-{name}")),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([(
                PLUGIN_LABEL.to_string(),
                name.to_string(),
            )])),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        binary_data: Some(BTreeMap::from([(
            WASM_KEY.to_string(),
            ByteString(bytes.to_vec()),
        )])),
        ..ConfigMap::default()
    };
    let body = serde_yaml::to_string(&cm).map_err(|e| LoadError::Scenario(e.to_string()))?;
    Ok(body)
}

/// Checks a packed plugin ConfigMap (YAML) as a controller with `trust`
/// would before loading it: its bytes, its sha256 pin, and the signature
/// or digest rules. What it found, for a person.
pub fn verify(configmap_yaml: &str, trust: &crate::trust::Trust) -> Result<String, String> {
    let cm: ConfigMap =
        serde_yaml::from_str(configmap_yaml).map_err(|e| format!("not a ConfigMap: {e}"))?;
    let annotations = cm.metadata.annotations.clone().unwrap_or_default();
    let name = cm
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(PLUGIN_LABEL))
        .cloned()
        .ok_or_else(|| format!("metadata.labels[{PLUGIN_LABEL}] is missing"))?;
    let bytes = cm
        .binary_data
        .as_ref()
        .and_then(|b| b.get(WASM_KEY))
        .map(|b| b.0.clone())
        .ok_or_else(|| format!("binaryData[{WASM_KEY}] is missing"))?;
    let digest = sha256_hex(&bytes);
    if let Some(pinned) = annotations.get(SHA256_ANNOTATION)
        && !pinned.trim().eq_ignore_ascii_case(&digest)
    {
        return Err(format!(
            "sha256 {digest} does not match the pinned {pinned}"
        ));
    }
    let signature = annotations.get(crate::trust::SIGNATURE_ANNOTATION);
    trust.check(&digest, signature.map(String::as_str))?;
    let by = match signature {
        Some(sig) => format!(", signed by key {}", sig.split(':').nth(1).unwrap_or("?")),
        None => String::new(),
    };
    Ok(format!("plugin {name}: sha256 {digest}{by}: may run"))
}

/// Serialising verdicts of different types through one closure.
mod erased {
    pub trait Yaml {
        fn to_yaml(&self) -> String;
    }
    impl<T: serde::Serialize> Yaml for T {
        fn to_yaml(&self) -> String {
            serde_yaml::to_string(self).unwrap_or_else(|e| format!("unprintable verdict: {e}"))
        }
    }
}
