//! JobSet status conditions: the update rules every condition write follows
//! (spec 4.10) and the condition kinds the controller sets. This module only
//! edits a condition list in memory; it never talks to the API.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// Condition types of a JobSet.
pub mod types {
    pub const COMPLETED: &str = "Completed";
    pub const FAILED: &str = "Failed";
    pub const SUSPENDED: &str = "Suspended";
    pub const RESTARTING: &str = "RestartingJobSet";
    pub const STARTUP_IN_PROGRESS: &str = "StartupPolicyInProgress";
    pub const STARTUP_COMPLETED: &str = "StartupPolicyCompleted";
    /// Ours: a policy plugin failed; the decision it owned was not taken.
    pub const POLICY_FAILED: &str = "PolicyFailed";
}

/// Whether a condition change is reported as a Normal or a Warning event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    /// The string the events API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// A condition the controller wants in place, with the type of the event
/// that announces it when it changes something.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredCondition {
    pub type_: String,
    pub status: bool,
    pub reason: String,
    pub message: String,
    pub event: EventType,
}

impl DesiredCondition {
    /// A condition with status True.
    pub fn true_(
        type_: &str,
        reason: impl Into<String>,
        message: impl Into<String>,
        event: EventType,
    ) -> Self {
        DesiredCondition {
            type_: type_.to_string(),
            status: true,
            reason: reason.into(),
            message: message.into(),
            event,
        }
    }

    /// A condition with status False (only written over an existing one).
    pub fn false_(type_: &str, reason: impl Into<String>, message: impl Into<String>) -> Self {
        DesiredCondition {
            type_: type_.to_string(),
            status: false,
            reason: reason.into(),
            message: message.into(),
            event: EventType::Normal,
        }
    }
}

fn status_str(status: bool) -> &'static str {
    if status { "True" } else { "False" }
}

/// The type that is switched off when `type_` is set True: the two startup
/// conditions exclude each other.
fn exclusive_partner(type_: &str) -> Option<&'static str> {
    match type_ {
        types::STARTUP_IN_PROGRESS => Some(types::STARTUP_COMPLETED),
        types::STARTUP_COMPLETED => Some(types::STARTUP_IN_PROGRESS),
        _ => None,
    }
}

/// Applies `desired` to `conditions` with upstream's rules and says whether
/// anything changed (and so whether an event is owed):
/// - a different status replaces the condition and stamps `now`;
/// - the same status with another reason or message keeps the transition time;
/// - a missing condition is added only when it is True;
/// - StartupPolicyInProgress and StartupPolicyCompleted exclude each other.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    desired: &DesiredCondition,
    now: Timestamp,
) -> bool {
    let status = status_str(desired.status);
    let changed = match conditions.iter_mut().find(|c| c.type_ == desired.type_) {
        Some(existing) if existing.status != status => {
            existing.status = status.to_string();
            existing.reason = desired.reason.clone();
            existing.message = desired.message.clone();
            existing.last_transition_time = Time(now);
            existing.observed_generation = None;
            true
        }
        Some(existing)
            if existing.reason != desired.reason || existing.message != desired.message =>
        {
            existing.reason = desired.reason.clone();
            existing.message = desired.message.clone();
            existing.observed_generation = None;
            true
        }
        Some(_) => false,
        None if desired.status => {
            conditions.push(Condition {
                type_: desired.type_.clone(),
                status: status.to_string(),
                reason: desired.reason.clone(),
                message: desired.message.clone(),
                last_transition_time: Time(now),
                observed_generation: None,
            });
            true
        }
        None => false,
    };
    if changed
        && desired.status
        && let Some(partner) = exclusive_partner(&desired.type_)
        && let Some(other) = conditions
            .iter_mut()
            .find(|c| c.type_ == partner && c.status == "True")
    {
        other.status = "False".to_string();
        other.last_transition_time = Time(now);
    }
    changed
}

/// Whether the condition `type_` is present with status True.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

/// The True condition of `type_`, if any.
pub fn find_true<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    fn restarting(status: bool, reason: &str) -> DesiredCondition {
        if status {
            DesiredCondition::true_(types::RESTARTING, reason, "m", EventType::Warning)
        } else {
            DesiredCondition::false_(types::RESTARTING, reason, "m")
        }
    }

    #[test]
    fn a_false_condition_is_never_created_from_scratch() {
        let mut conds = vec![];
        assert!(!set_condition(
            &mut conds,
            &restarting(false, "JobsReady"),
            t(1)
        ));
        assert!(conds.is_empty());
    }

    #[test]
    fn a_true_condition_is_appended_with_the_current_time() {
        let mut conds = vec![];
        assert!(set_condition(
            &mut conds,
            &restarting(true, "DefaultFailurePolicy"),
            t(5)
        ));
        assert_eq!(conds.len(), 1);
        assert_eq!(conds[0].status, "True");
        assert_eq!(conds[0].last_transition_time, Time(t(5)));
        // As upstream, which never sets it.
        assert_eq!(conds[0].observed_generation, None);
    }

    #[test]
    fn a_status_flip_stamps_a_new_transition_time() {
        let mut conds = vec![];
        set_condition(&mut conds, &restarting(true, "DefaultFailurePolicy"), t(5));
        assert!(set_condition(
            &mut conds,
            &restarting(false, "JobsReady"),
            t(9)
        ));
        assert_eq!(conds[0].status, "False");
        assert_eq!(conds[0].reason, "JobsReady");
        assert_eq!(conds[0].last_transition_time, Time(t(9)));
    }

    #[test]
    fn a_reason_change_keeps_the_transition_time() {
        let mut conds = vec![];
        set_condition(&mut conds, &restarting(true, "FailurePolicy_a"), t(5));
        assert!(set_condition(
            &mut conds,
            &restarting(true, "FailurePolicy_b"),
            t(9)
        ));
        assert_eq!(conds[0].reason, "FailurePolicy_b");
        assert_eq!(conds[0].last_transition_time, Time(t(5)));
    }

    #[test]
    fn an_identical_condition_changes_nothing() {
        let mut conds = vec![];
        set_condition(&mut conds, &restarting(true, "DefaultFailurePolicy"), t(5));
        assert!(!set_condition(
            &mut conds,
            &restarting(true, "DefaultFailurePolicy"),
            t(9)
        ));
        assert_eq!(conds[0].last_transition_time, Time(t(5)));
    }

    #[test]
    fn startup_completed_switches_in_progress_off() {
        let mut conds = vec![];
        let progress = DesiredCondition::true_(
            types::STARTUP_IN_PROGRESS,
            "InOrderStartupPolicyInProgress",
            "in order startup policy is in progress",
            EventType::Normal,
        );
        let done = DesiredCondition::true_(
            types::STARTUP_COMPLETED,
            "InOrderStartupPolicyCompleted",
            "in order startup policy has completed",
            EventType::Normal,
        );
        set_condition(&mut conds, &progress, t(1));
        assert!(set_condition(&mut conds, &done, t(2)));
        assert!(is_true(&conds, types::STARTUP_COMPLETED));
        assert!(!is_true(&conds, types::STARTUP_IN_PROGRESS));
        let in_progress = conds.iter().find(|c| c.type_ == types::STARTUP_IN_PROGRESS);
        assert_eq!(in_progress.map(|c| c.status.as_str()), Some("False"));
    }
}
