//! Validation errors as the API server returns them: a `422 Invalid`
//! `Status` with one cause per field error, for the webhook and the
//! simulated API server to send back unchanged.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, StatusCause, StatusDetails};

use super::{ErrorKind, FieldError, ValidationErrors};

impl ErrorKind {
    /// The wording Kubernetes puts between a field path and the detail,
    /// e.g. `Invalid value`.
    pub fn phrase(self) -> &'static str {
        match self {
            Self::Required => "Required value",
            Self::Invalid => "Invalid value",
            Self::Duplicate => "Duplicate value",
            Self::NotSupported => "Unsupported value",
            Self::Forbidden => "Forbidden",
            Self::TooLong => "Too long",
            Self::TooMany => "Too many",
        }
    }
}

impl FieldError {
    /// The error as Kubernetes words it: `path: Invalid value: message`.
    pub fn kubernetes_message(&self) -> String {
        format!("{}: {}: {}", self.path, self.kind.phrase(), self.message)
    }
}

impl ValidationErrors {
    /// The `422 Invalid` Status for JobSet `name`, with a cause per error
    /// and the message kubectl prints.
    pub fn to_status(&self, name: &str) -> Status {
        let lines: Vec<String> = self.0.iter().map(FieldError::kubernetes_message).collect();
        let list = match lines.as_slice() {
            [one] => one.clone(),
            many => format!("[{}]", many.join(", ")),
        };
        Status {
            code: Some(422),
            status: Some("Failure".into()),
            reason: Some("Invalid".into()),
            message: Some(format!(
                "JobSet.jobset.x-k8s.io {name:?} is invalid: {list}"
            )),
            details: Some(StatusDetails {
                name: Some(name.into()),
                group: Some("jobset.x-k8s.io".into()),
                kind: Some("JobSet".into()),
                causes: Some(
                    self.0
                        .iter()
                        .map(|e| StatusCause {
                            reason: Some(e.kind.as_str().into()),
                            message: Some(format!("{}: {}", e.kind.phrase(), e.message)),
                            field: Some(e.path.clone()),
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_become_a_422_status_with_one_cause_each() {
        let mut errs = ValidationErrors::default();
        errs.push("spec.a", ErrorKind::Invalid, "bad");
        errs.push("spec.b", ErrorKind::Required, "missing");
        let s = errs.to_status("js");
        assert_eq!(s.code, Some(422));
        assert_eq!(s.reason.as_deref(), Some("Invalid"));
        assert_eq!(
            s.message.as_deref(),
            Some(
                "JobSet.jobset.x-k8s.io \"js\" is invalid: [spec.a: Invalid value: bad, spec.b: Required value: missing]"
            )
        );
        let causes = s.details.unwrap().causes.unwrap();
        assert_eq!(causes.len(), 2);
        assert_eq!(causes[1].field.as_deref(), Some("spec.b"));
        assert_eq!(causes[1].reason.as_deref(), Some("FieldValueRequired"));
    }

    #[test]
    fn a_single_error_is_not_bracketed() {
        let mut errs = ValidationErrors::default();
        errs.push("spec.managedBy", ErrorKind::Forbidden, "field is immutable");
        assert_eq!(
            errs.to_status("x").message.as_deref(),
            Some(
                "JobSet.jobset.x-k8s.io \"x\" is invalid: spec.managedBy: Forbidden: field is immutable"
            )
        );
    }
}
