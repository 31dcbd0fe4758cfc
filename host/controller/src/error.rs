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
    /// The JobSet is finished but its terminal condition has no time.
    #[error("JobSet {0}: the finished condition has no lastTransitionTime")]
    NoFinishTime(String),
}

impl ControllerError {
    /// A short, stable label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            ControllerError::BadJobLabel { .. } => "bad_job_label",
            ControllerError::NoFinishTime(_) => "no_finish_time",
        }
    }
}
