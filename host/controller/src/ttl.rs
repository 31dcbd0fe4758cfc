//! TTL after finished (spec 4.8): a finished JobSet is deleted
//! `ttlSecondsAfterFinished` after its terminal condition's transition.

use std::time::Duration;

use crate::actions::Action;
use crate::conditions::{find_true, types};
use crate::error::ControllerError;
use crate::plan::Planner;

/// Plans the deletion of a finished JobSet, or a requeue for when its TTL
/// runs out.
pub(crate) fn plan_ttl(planner: &mut Planner<'_>) -> Result<(), ControllerError> {
    let js = planner.inputs.jobset;
    let Some(ttl) = js.spec.ttl_seconds_after_finished else {
        return Ok(());
    };
    let conditions = js
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or(&[]);
    let finished =
        find_true(conditions, types::COMPLETED).or_else(|| find_true(conditions, types::FAILED));
    let Some(finished) = finished else {
        return Ok(());
    };
    let at = finished.last_transition_time.0;
    if at.as_second() <= 0 {
        return Err(ControllerError::NoFinishTime(
            js.metadata.name.clone().unwrap_or_default(),
        ));
    }
    let expires_ms = at.as_millisecond() + i64::from(ttl.max(0)) * 1000;
    let now_ms = planner.inputs.now.as_millisecond();
    if now_ms >= expires_ms {
        planner.plan.actions.push(Action::DeleteJobSet);
    } else {
        let wait = u64::try_from(expires_ms - now_ms).unwrap_or(0);
        planner.requeue(Duration::from_millis(wait));
    }
    Ok(())
}
