//! Admission validation of JobSets (spec 5.2 and 5.3), plus the checks the
//! CRD schema makes (5.2 item 10) so that a JobSet applied without a real
//! API server is checked too. Pure: the only outside input, existing PVCs,
//! comes through [`PvcLookup`]. Every error is collected, never just the first.

mod create;
mod failure_policy;
mod status;
mod update;
mod volumes;

use std::fmt;

use k8s_openapi::api::core::v1::PersistentVolumeClaim;

use crate::spec::JobSet;

pub use update::validate_update;

/// The Kubernetes field error types an error can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A required value is missing.
    Required,
    /// A value is malformed or out of range.
    Invalid,
    /// A value that must be unique appears twice.
    Duplicate,
    /// A value is not one of the supported values.
    NotSupported,
    /// A value is not allowed here (immutable field, missing feature gate...).
    Forbidden,
    /// A value is too long.
    TooLong,
    /// A list has too many items.
    TooMany,
}

impl ErrorKind {
    /// The Kubernetes `FieldValueX` type name of the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Required => "FieldValueRequired",
            Self::Invalid => "FieldValueInvalid",
            Self::Duplicate => "FieldValueDuplicate",
            Self::NotSupported => "FieldValueNotSupported",
            Self::Forbidden => "FieldValueForbidden",
            Self::TooLong => "FieldValueTooLong",
            Self::TooMany => "FieldValueTooMany",
        }
    }
}

/// One problem of a JobSet, with the path of the field it concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Field path, e.g. `spec.replicatedJobs[1].dependsOn[0].name`.
    pub path: String,
    /// Kind of problem.
    pub kind: ErrorKind,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found in a JobSet; displayed one per line.
#[derive(Clone, Debug, Default, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl ValidationErrors {
    /// The errors, in the order they were found.
    pub fn errors(&self) -> &[FieldError] {
        &self.0
    }

    /// Whether any error has this path.
    pub fn has_path(&self, path: &str) -> bool {
        self.0.iter().any(|e| e.path == path)
    }

    pub(crate) fn push(
        &mut self,
        path: impl Into<String>,
        kind: ErrorKind,
        message: impl Into<String>,
    ) {
        self.0.push(FieldError {
            path: path.into(),
            kind,
            message: message.into(),
        });
    }

    fn into_result(self) -> Result<(), ValidationErrors> {
        if self.0.is_empty() { Ok(()) } else { Err(self) }
    }
}

/// The alpha feature gates that change what validation admits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeatureGates {
    /// `RestartJob`: the RestartJob and RestartJobAndIgnoreMaxRestarts actions.
    pub restart_job: bool,
    /// `InPlaceRestart`: the InPlaceRestart restart strategy.
    pub in_place_restart: bool,
    /// `ElasticJobSet`: parallelism/completions changes of Indexed templates.
    pub elastic_jobset: bool,
}

impl Default for FeatureGates {
    /// All gates off, as upstream ships them: each is alpha.
    fn default() -> Self {
        Self::none()
    }
}

impl FeatureGates {
    /// Every gate off.
    pub const fn none() -> Self {
        Self {
            restart_job: false,
            in_place_restart: false,
            elastic_jobset: false,
        }
    }

    /// Every gate on, so that every upstream example is admitted.
    pub const fn all() -> Self {
        Self {
            restart_job: true,
            in_place_restart: true,
            elastic_jobset: true,
        }
    }

    /// The gates named in `enabled` (upstream names) on, the others off.
    pub fn from_enabled<S: AsRef<str>>(enabled: &[S]) -> Self {
        let on = |name: &str| enabled.iter().any(|g| g.as_ref() == name);
        Self {
            restart_job: on(RESTART_JOB_GATE),
            in_place_restart: on(IN_PLACE_RESTART_GATE),
            elastic_jobset: on(ELASTIC_JOBSET_GATE),
        }
    }
}

/// Upstream's name of the gate for the RestartJob failure actions.
pub const RESTART_JOB_GATE: &str = "RestartJob";
/// Upstream's name of the gate for the InPlaceRestart restart strategy.
pub const IN_PLACE_RESTART_GATE: &str = "InPlaceRestart";
/// Upstream's name of the gate for resizing Indexed replicated jobs.
pub const ELASTIC_JOBSET_GATE: &str = "ElasticJobSet";
/// Every gate upstream v0.12.0 knows, by name. `TLSOptions` (beta, on)
/// is accepted so that upstream's flags carry over; this controller's TLS
/// settings do not depend on it.
pub const KNOWN_GATES: [&str; 4] = [
    RESTART_JOB_GATE,
    IN_PLACE_RESTART_GATE,
    ELASTIC_JOBSET_GATE,
    "TLSOptions",
];

/// Read access to the PersistentVolumeClaims that already exist.
pub trait PvcLookup {
    /// The claim `name` in `namespace`, if it exists.
    fn existing_pvc(&self, namespace: &str, name: &str) -> Option<PersistentVolumeClaim>;
}

/// A lookup that finds no claims.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoPvcs;

impl PvcLookup for NoPvcs {
    fn existing_pvc(&self, _: &str, _: &str) -> Option<PersistentVolumeClaim> {
        None
    }
}

impl<F: Fn(&str, &str) -> Option<PersistentVolumeClaim>> PvcLookup for F {
    fn existing_pvc(&self, namespace: &str, name: &str) -> Option<PersistentVolumeClaim> {
        self(namespace, name)
    }
}

/// What validation needs from outside the object: feature gates and PVCs.
#[derive(Clone, Copy)]
pub struct ValidationContext<'a> {
    /// Enabled feature gates.
    pub gates: FeatureGates,
    /// Existing claims, for the volume claim policy checks.
    pub pvcs: &'a dyn PvcLookup,
}

impl Default for ValidationContext<'_> {
    fn default() -> Self {
        Self {
            gates: FeatureGates::default(),
            pvcs: &NoPvcs,
        }
    }
}

impl fmt::Debug for ValidationContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValidationContext")
            .field("gates", &self.gates)
            .finish_non_exhaustive()
    }
}

/// Validates a JobSet on CREATE (spec 5.2), plus the CRD schema checks.
/// Run it on the defaulted object, as the API server does.
pub fn validate_create(js: &JobSet, ctx: &ValidationContext<'_>) -> Result<(), ValidationErrors> {
    let mut errs = ValidationErrors::default();
    create::schema_checks(js, &mut errs);
    create::webhook_checks(js, ctx, &mut errs);
    failure_policy::check(js, ctx, &mut errs);
    volumes::check(js, ctx, &mut errs);
    errs.into_result()
}

/// Joins the names for a message: `"a", "b"`, or `none`.
pub(crate) fn quoted_list<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let v: Vec<String> = names.into_iter().map(|n| format!("{n:?}")).collect();
    if v.is_empty() {
        "none".to_string()
    } else {
        v.join(", ")
    }
}
