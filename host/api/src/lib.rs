//! JobSet v1alpha2 API: types, names and labels, the CRD, defaulting and
//! validation. Pure: nothing here talks to a cluster.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod crd;
pub mod defaulting;
pub mod dns;
pub mod embedded;
pub mod in_place;
pub mod labels;
pub mod naming;
pub mod parse;
pub mod spec;
pub mod status;
pub mod validation;

pub use crd::{crd, crd_yaml};
pub use defaulting::default_jobset;
pub use embedded::Embedded;
pub use parse::{
    ParseError, embedded_unknown_fields, is_jobset, parse_jobset_json, parse_jobset_value,
    parse_jobset_yaml, split_documents,
};
pub use spec::{
    ClaimTemplate, Coordinator, DependsOn, DependsOnStatus, FailurePolicy, FailurePolicyAction,
    FailurePolicyRule, JobSet, JobSetSpec, Network, Operator, ReplicatedJob, RestartStrategy,
    StartupPolicy, StartupPolicyOrder, SuccessPolicy, VolumeClaimPolicy, VolumeRetentionPolicy,
    WhenDeleted,
};
pub use status::{JobSetStatus, ReplicatedJobStatus};
pub use validation::{
    ELASTIC_JOBSET_GATE, ErrorKind, FeatureGates, FieldError, IN_PLACE_RESTART_GATE, KNOWN_GATES,
    NoPvcs, PvcLookup, RESTART_JOB_GATE, ValidationContext, ValidationErrors, validate_create,
    validate_update,
};
