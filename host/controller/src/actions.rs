//! The vocabulary of a plan: the API actions a reconcile asks for, the
//! events it queues, and the metric bumps it owes. Plain data.

use std::time::Duration;

use jobset_api::Embedded;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service};

use crate::conditions::EventType;

/// One API action, carried out by `apply` in plan order.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Delete these Jobs with foreground propagation (NotFound is fine).
    DeleteJobs(Vec<String>),
    /// Create the headless Service.
    CreateService(Box<Service>),
    /// Create these PVCs (AlreadyExists is fine).
    CreatePvcs(Vec<PersistentVolumeClaim>),
    /// Create these Jobs (AlreadyExists is fine: a Job name is only ever
    /// built for one attempt). Each carries the fields of its template that
    /// the compiled Kubernetes types do not know (e.g. a newer pod field).
    CreateJobs(Vec<Embedded<Job>>),
    /// Set `spec.suspend=true` on these Jobs.
    SuspendJobs(Vec<String>),
    /// Resume one Job: clear `status.startTime` first when it is set, then
    /// replace the Job with `job` (merged pod template, `suspend=false`).
    ResumeJob {
        job: Box<Job>,
        clear_start_time: bool,
    },
    /// Set `parallelism` and `completions` of these Jobs (elastic JobSets).
    ResizeJobs(Vec<Resize>),
    /// Delete the JobSet itself (TTL), foreground.
    DeleteJobSet,
}

/// The size one Job is brought to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resize {
    pub job: String,
    pub parallelism: Option<i32>,
    pub completions: Option<i32>,
}

/// An event queued by the plan; emitted after the status write succeeds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventSpec {
    pub type_: EventType,
    pub reason: String,
    pub message: String,
}

impl EventSpec {
    pub fn warning(reason: impl Into<String>, message: impl Into<String>) -> Self {
        EventSpec {
            type_: EventType::Warning,
            reason: reason.into(),
            message: message.into(),
        }
    }

    pub fn normal(reason: impl Into<String>, message: impl Into<String>) -> Self {
        EventSpec {
            type_: EventType::Normal,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// A terminal transition the metrics count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Terminal {
    Completed,
    Failed,
}

/// Why the controller is waiting on something it cannot do yet; shown by
/// `jobset run` when a JobSet is stuck.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    pub job: String,
    pub reason: String,
}

/// A requeue request with the time to wait.
pub type Requeue = Option<Duration>;
