//! The controller's errors: what went wrong, with the object it concerns.

/// Everything a reconcile can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// A child Job carries a label the controller cannot read.
    #[error("Job {job}: label {label} is {detail}")]
    BadJobLabel {
        job: String,
        label: String,
        detail: String,
    },
    /// A pod of an in-place JobSet carries an annotation the controller
    /// cannot read.
    #[error("Pod {pod}: annotation {annotation} is {detail}")]
    BadPodAnnotation {
        pod: String,
        annotation: String,
        detail: String,
    },
    /// An in-place JobSet's replicated job without equal parallelism and
    /// completions (admission refuses it; an older object may have it).
    #[error(
        "JobSet {jobset}: replicated job {replicated_job}: in-place restart needs its template's completions equal to its parallelism, both set"
    )]
    InPlaceSizes {
        jobset: String,
        replicated_job: String,
    },
    /// The JobSet is finished but its terminal condition has no time.
    #[error("JobSet {0}: the finished condition has no lastTransitionTime")]
    NoFinishTime(String),
    /// An API call failed.
    #[error("{action} {object}: {source}")]
    Api {
        action: String,
        object: String,
        #[source]
        source: Box<kube::Error>,
    },
    /// The controller could not start (a watch, a server, the lease).
    #[error("controller start-up: {0}")]
    Startup(String),
    /// The admission webhook server or its certificates.
    #[error("webhook: {0}")]
    Webhook(String),
    /// Planning a JobSet's reconcile panicked (a bug in the controller, not
    /// in a plugin: a plugin's failure is a `PolicyFailed` condition).
    #[error("JobSet {jobset}: planning failed: {detail}")]
    Planning { jobset: String, detail: String },
    /// This process stopped leading: it must not write any more.
    #[error("Lease {lease}: leadership lost: {detail}")]
    LeadershipLost { lease: String, detail: String },
}

impl ControllerError {
    /// A short, stable label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            ControllerError::BadJobLabel { .. } => "bad_job_label",
            ControllerError::BadPodAnnotation { .. } => "bad_pod_annotation",
            ControllerError::InPlaceSizes { .. } => "in_place_sizes",
            ControllerError::NoFinishTime(_) => "no_finish_time",
            ControllerError::Api { source, .. } => match source.as_ref() {
                kube::Error::Api(s) if s.code == 409 => "conflict",
                kube::Error::Api(_) => "api",
                _ => "transport",
            },
            ControllerError::Startup(_) => "startup",
            ControllerError::Webhook(_) => "webhook",
            ControllerError::LeadershipLost { .. } => "leadership_lost",
            ControllerError::Planning { .. } => "planning",
        }
    }

    /// Whether the error is an optimistic-concurrency conflict (retried at
    /// once: the cache will catch up).
    pub fn is_conflict(&self) -> bool {
        self.metric_label() == "conflict"
    }
}
