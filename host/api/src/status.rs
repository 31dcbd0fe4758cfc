//! The observed state of a JobSet (spec section 2.5): conditions, restart
//! counters, the terminal state and per-replicated-job counts.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::spec::is_zero;

/// Observed state of a JobSet, written by the controller.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobSetStatus {
    /// Conditions keyed by type (Completed, Failed, Suspended, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Number of JobSet restarts; always serialised.
    #[serde(default)]
    pub restarts: i32,
    /// Restarts done by `RestartJobSet` only.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub restarts_count_towards_max: i32,
    /// `""`, `Completed` or `Failed`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub terminal_state: String,
    /// Per-replicated-job counts of current-attempt Jobs, keyed by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicated_jobs_status: Vec<ReplicatedJobStatus>,
    /// In-place restart barrier: the previous attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_in_place_restart_attempt: Option<i32>,
    /// In-place restart barrier: the current attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_in_place_restart_attempt: Option<i32>,
}

/// Counts of the current-attempt Jobs of one replicated job.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicatedJobStatus {
    /// Replicated job name.
    pub name: String,
    /// Jobs whose pods are ready (or succeeded).
    pub ready: i32,
    /// Jobs with a `Complete=True` condition.
    pub succeeded: i32,
    /// Jobs with a `Failed=True` condition.
    pub failed: i32,
    /// Unfinished Jobs with active pods.
    pub active: i32,
    /// Unfinished suspended Jobs.
    pub suspended: i32,
    /// Individual restarts of each Job index (RestartJob actions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub job_restarts: Vec<i32>,
    /// Individual restarts of each Job index by `RestartJob` only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub job_restarts_count_towards_max: Vec<i32>,
}

/// The `terminalState` of a completed JobSet.
pub const TERMINAL_STATE_COMPLETED: &str = "Completed";
/// The `terminalState` of a failed JobSet.
pub const TERMINAL_STATE_FAILED: &str = "Failed";
