//! The task that plays a scenario's timed changes to JobSets on virtual
//! time, through the API as a user's `kubectl` would (admission included),
//! and records what each did or why it was refused.

use serde_json::{Value, json};

use crate::client::{PatchKind, Resource, SimClient};

use super::recorder::Recorder;
use super::scenario::{ChangeAction, TimedChange};

/// The component the recorder names for these changes.
pub const COMPONENT: &str = "user";

/// The JSON patch that resizes replicated job `rjob` of `jobset`, or why
/// there is none. The patch first tests the replicated job's name, so a
/// JobSet changed in between is refused rather than resized wrongly.
pub fn resize_patch(
    jobset: &Value,
    rjob: &str,
    parallelism: i32,
    completions: i32,
) -> Result<Value, String> {
    let index = jobset
        .pointer("/spec/replicatedJobs")
        .and_then(Value::as_array)
        .and_then(|rjobs| rjobs.iter().position(|r| r["name"] == rjob))
        .ok_or_else(|| format!("the JobSet has no replicated job {rjob:?}"))?;
    let at = format!("/spec/replicatedJobs/{index}");
    Ok(json!([
        {"op": "test", "path": format!("{at}/name"), "value": rjob},
        {"op": "add", "path": format!("{at}/template/spec/parallelism"), "value": parallelism},
        {"op": "add", "path": format!("{at}/template/spec/completions"), "value": completions},
    ]))
}

async fn apply(client: &SimClient, rec: &Recorder, action: &ChangeAction) {
    match action {
        ChangeAction::Resize {
            namespace,
            job_set,
            replicated_job,
            parallelism,
            completions,
        } => {
            let object = format!("{namespace}/{job_set}");
            let completions = completions.unwrap_or(*parallelism);
            let detail =
                format!("{replicated_job} parallelism={parallelism} completions={completions}");
            let outcome = match client
                .get(&Resource::jobsets(), Some(namespace), job_set)
                .await
            {
                Err(e) => Err(e.message),
                Ok(js) => match resize_patch(&js, replicated_job, *parallelism, completions) {
                    Err(why) => Err(why),
                    Ok(patch) => client
                        .patch(
                            &Resource::jobsets(),
                            Some(namespace),
                            job_set,
                            PatchKind::Json,
                            &patch,
                        )
                        .await
                        .map(|_| ())
                        .map_err(|e| e.message),
                },
            };
            match outcome {
                Ok(()) => rec.record(COMPONENT, "Resized", &object, detail),
                Err(why) => rec.record(
                    COMPONENT,
                    "ResizeRefused",
                    &object,
                    format!("{detail}: {why}"),
                ),
            }
        }
    }
}

/// Plays timed changes in order of time (stable for equal times).
pub async fn run_changes(client: SimClient, rec: Recorder, mut changes: Vec<TimedChange>) {
    changes.sort_by_key(|c| c.at.0);
    let start = tokio::time::Instant::now() - rec.elapsed();
    for c in changes {
        tokio::time::sleep_until(start + c.at.0).await;
        apply(&client, &rec, &c.action).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_patch_names_the_replicated_job_by_index_and_tests_it() {
        let js = json!({"spec": {"replicatedJobs": [{"name": "driver"}, {"name": "workers"}]}});
        let patch = resize_patch(&js, "workers", 4, 4).unwrap();
        assert_eq!(
            patch[0],
            json!({"op": "test", "path": "/spec/replicatedJobs/1/name", "value": "workers"})
        );
        assert_eq!(
            patch[1]["path"],
            "/spec/replicatedJobs/1/template/spec/parallelism"
        );
        assert_eq!(patch[2]["value"], 4);
        let err = resize_patch(&js, "ps", 4, 4).unwrap_err();
        assert_eq!(err, "the JobSet has no replicated job \"ps\"");
    }
}
